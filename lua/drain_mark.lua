-- drain_mark.lua: a MySQL transaction that records Redis changes of some shards is about to commit. MySQL counts such
-- transactions per shard (migrations/0017); Redis's mark of a shard must be at least MySQL's count: it is raised
-- here, before every such COMMIT, so a Redis that keeps its data is never behind MySQL. Also the check between
-- batches (nothing raised).
--
-- KEYS pairs, one per shard: its mark (`<prefix>:{sN}:drained`) and its generation marker (`<prefix>:{sN}:gen`,
--      reserve.lua); first the ARGV[1] pairs of the transaction's shards (their MySQL rows locked by the caller until
--      its COMMIT), then shards only checked (other shards of the same Redis, their counts read without a lock: a
--      count read before is never above the mark unless Redis went back); on a cluster the keys of one call share a
--      slot
-- ARGV[1] how many shards' marks to raise   ARGV[2..] MySQL's count of each shard, in key order
--
-- Returns {} after raising each of the first ARGV[1] marks to its count + 1 (a higher one is left: a transaction that
-- raised it and then rolled back), or the positions (1-based, by shard) of the marks below MySQL's count, with nothing
-- written: Redis went back in time there (an older snapshot, a failover to a replica that was behind) and lacks
-- changes MySQL has recorded. A mark never expires and Redis must not evict, so a missing mark went with Redis's data:
-- with its shard's generation marker (everything was lost, which the marker tells: a reserve of an order Redis does
-- not know asks the journal first) it is made at MySQL's count; beside the marker, it is behind (a snapshot from
-- before the mark, or an operator's hand: Redis is then forgotten, which costs rebuilds, not correctness).

local raised = tonumber(ARGV[1])
local behind = {}
local marks = {}
for i = 1, #KEYS / 2 do
  local seq = tonumber(ARGV[i + 1])
  marks[i] = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '')
  if not marks[i] and redis.call('EXISTS', KEYS[2 * i]) == 0 then
    marks[i] = seq
    redis.call('SET', KEYS[2 * i - 1], string.format('%d', seq))
  end
  if (marks[i] or 0) < seq then behind[#behind + 1] = i end
end
if #behind > 0 then return behind end
for i = 1, raised do
  local seq = tonumber(ARGV[i + 1])
  if not marks[i] or marks[i] < seq + 1 then
    redis.call('SET', KEYS[2 * i - 1], string.format('%d', seq + 1))
  end
end
return {}
