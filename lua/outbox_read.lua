#!lua flags=allow-oom
-- outbox_read.lua: the write-back worker's read of the outbox streams it holds, fenced by their leases: a stream is
-- read only while its lease (lua/lease.lua) names this worker, checked in the same step as the read. A worker that
-- lost a lease (its renewals late, Redis slow, the lease run out and another worker holding it now) reads nothing of
-- that stream, whenever its read reaches Redis: two workers reading one stream would apply its events out of order.
-- Never blocks (scripts cannot); the worker waits for new entries with XREAD BLOCK from the ids this returns. Runs
-- when Redis is full, as XREADGROUP does (a read only adds entries to the consumer's pending list).
--
-- KEYS   a lease and its stream, for each stream: lease1, stream1, lease2, stream2, ... (on a cluster, one stream;
--        a stream's lease shares its slot)
-- ARGV[1] the lease owner   ARGV[2] the group   ARGV[3] the consumer
-- ARGV[4] entries at most, per stream   ARGV[5] '>' for new entries, '0' for the consumer's pending ones
--
-- Returns one element per stream, in KEYS' order:
--   {'read', entries, last}  the lease is the owner's: entries as XREADGROUP gives them for the stream (possibly
--                            none); when none, `last` is the id of the stream's last entry ('0-0' for none), from
--                            which to wait; else ''
--   {'lost'}                 the lease is not the owner's (run out, or another worker's): nothing read
--   {'nogroup'}              the stream or its group is missing (Redis lost it): nothing read

local owner, group, consumer, count, from = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local replies = {}
for index = 1, #KEYS, 2 do
  local stream = KEYS[index + 1]
  -- (A lease key that is not a string, whatever made it so, names no one.)
  if redis.pcall('GET', KEYS[index]) ~= owner then
    replies[#replies + 1] = {'lost'}
  else
    local read = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', stream, from)
    if type(read) == 'table' and read.err then
      if string.find(read.err, 'NOGROUP', 1, true) then
        replies[#replies + 1] = {'nogroup'}
      else
        return redis.error_reply(read.err)
      end
    else
      local entries = read and read[1] and read[1][2] or {}
      local last = ''
      if #entries == 0 then
        local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
        last = newest[1] and newest[1][1] or '0-0'
      end
      replies[#replies + 1] = {'read', entries, last}
    end
  end
end
return replies
