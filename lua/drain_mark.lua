-- drain_mark.lua: a MySQL transaction that records Redis changes of some shards is about to commit. MySQL keeps a mark
-- per shard (migrations/0017): the value Redis handed the last such transaction that committed. Redis's mark of a
-- shard must be at least MySQL's: each such transaction raises it here, before its COMMIT, and records in MySQL the
-- value it got, so a Redis that keeps its data is never behind MySQL. Also the check between batches (nothing raised).
--
-- KEYS pairs, one per shard: its mark (`<prefix>:{sN}:drained`) and its generation marker (`<prefix>:{sN}:gen`,
--      reserve.lua); first the ARGV[1] pairs of the transaction's shards (their MySQL rows locked by the caller until
--      its COMMIT), then shards only checked (other shards of the same Redis, their marks read from MySQL without a
--      lock: a value read before is never above Redis's unless Redis went back); on a cluster the keys of one call
--      share a slot
-- ARGV[1] how many shards' marks to raise   ARGV[2..] MySQL's mark of each shard, in key order
--
-- Returns {'raised', v1, ...}: each of the first ARGV[1] marks raised by one, past any value a transaction took and
-- then rolled back (so one that commits later still records a value a Redis sent back to before it lacks), the values
-- in key order; or {'behind', i, ...}: the positions (1-based, by shard) of the marks below MySQL's, with nothing
-- written: Redis went back in time there (an older snapshot, a failover to a replica that was behind) and lacks
-- changes MySQL has recorded. A mark never expires and Redis must not evict, so a missing mark went with Redis's data:
-- with its shard's generation marker (everything was lost, which the marker tells: a reserve of an order Redis does
-- not know asks the journal first) it is not behind, and a raise makes it anew from MySQL's; beside the marker, it is
-- behind (a snapshot from before the mark, or an operator's hand: Redis is then forgotten, which costs rebuilds, not
-- correctness).

local raised = tonumber(ARGV[1])
local behind = {}
local marks = {}
for i = 1, #KEYS / 2 do
  local seq = tonumber(ARGV[i + 1])
  marks[i] = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '')
  if not marks[i] and redis.call('EXISTS', KEYS[2 * i]) == 0 then
    -- (Only a raise, whose row is locked, makes it: a checked count may be behind a commit since.)
    if i <= raised then marks[i] = seq end
  elseif (marks[i] or 0) < seq then
    behind[#behind + 1] = i
  end
end
if #behind > 0 then return {'behind', unpack(behind)} end
local values = {'raised'}
for i = 1, raised do
  local value = (marks[i] or 0) + 1
  redis.call('SET', KEYS[2 * i - 1], string.format('%d', value))
  values[#values + 1] = value
end
return values
