-- ack.lua: the write-back worker has committed these outbox entries; acknowledge and delete them in one step.
--
-- KEYS[1] outbox stream   ARGV[1] consumer group   ARGV[2..] entry ids
--
-- Returns the number of entries deleted. Done in one script so that no crash can leave an entry acknowledged
-- but never deleted (it would stay in the stream for good) or deleted but pending (harmless, but untidy).

local ids = {}
for i = 2, #ARGV do
  ids[#ids + 1] = ARGV[i]
end
redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
return redis.call('XDEL', KEYS[1], unpack(ids))
