-- ack.lua: the write-back worker has committed these outbox entries; acknowledge and delete them in one step, and
-- raise the stream's drain mark to the highest of them.
--
-- KEYS[1] outbox stream   KEYS[2] its drain mark (`…:drained`)   ARGV[1] consumer group   ARGV[2..] entry ids
--
-- Returns the number of entries deleted. Done in one script so that no crash can leave an entry acknowledged
-- but never deleted (it would stay in the stream for good) or deleted but pending (harmless, but untidy), nor an
-- entry deleted without the mark covering it: MySQL's copy of the mark (outbox_drained) ahead of this one, with its
-- entry gone from the stream, means Redis came back from an older state (InventoryEngine.checkDrainMarks).

local function parse(id)
  local ms, seq = string.match(id or '', '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local ids = {}
local top, topMs, topSeq
for i = 2, #ARGV do
  ids[#ids + 1] = ARGV[i]
  local ms, seq = parse(ARGV[i])
  if ms and (not topMs or ms > topMs or (ms == topMs and seq > topSeq)) then
    top, topMs, topSeq = ARGV[i], ms, seq
  end
end
if top then
  local markMs, markSeq = parse(redis.call('GET', KEYS[2]))
  if not markMs or topMs > markMs or (topMs == markMs and topSeq > markSeq) then
    redis.call('SET', KEYS[2], top)
  end
end
redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
return redis.call('XDEL', KEYS[1], unpack(ids))
