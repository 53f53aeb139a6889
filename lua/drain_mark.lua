#!lua flags=allow-oom
-- drain_mark.lua: a MySQL transaction that records Redis changes of some shards is about to commit. MySQL keeps a mark
-- per shard (migrations/0017): the value Redis handed the last such transaction that committed. Redis's mark of a
-- shard must be at least MySQL's: each such transaction raises it here, before its COMMIT, and records in MySQL the
-- value it got, so a Redis that keeps its data is never behind MySQL. Also the check between batches (nothing raised).
--
-- KEYS the shards' marks (`<prefix>:{sN}:drained`): first the ARGV[1] marks of the transaction's shards (their MySQL
--      rows locked by the caller until its COMMIT), then marks only checked (their values read from MySQL without a
--      lock: a value read before is never above the mark unless Redis went back); on a cluster the keys of one call
--      share a slot; on a single Redis last the drain sequence (ARGV[2] = '1', below)
-- ARGV[1] how many shards' marks to raise   ARGV[2] '1' when the last key is the drain sequence
-- ARGV[3..] MySQL's mark of each shard, in key order
--
-- The drain sequence (`<prefix>:{s0}:drained:seq`, a single Redis only): the raised marks take its next value rather
-- than their own next, and it is kept at or above every mark, so MySQL's highest value of any shard is at most the
-- sequence unless Redis went back: one GET in a script tells it (lua/lib/floor.lua). A missing sequence is 0.
--
-- Returns {'raised', v1, ...}: each of the first ARGV[1] marks raised (by one on a cluster; on a single Redis to the
-- drain sequence's next value), past any value a transaction took and then rolled back (so one that commits later still records a value a Redis sent back to before it lacks), the values
-- in key order; or {'behind', i, ...}: the positions (1-based) of the marks below MySQL's, with nothing
-- written: Redis went back in time there (an older snapshot, a failover to a replica that was behind) and lacks
-- changes MySQL has recorded. A mark never expires and Redis must not evict, so a missing mark went with Redis's data,
-- and counts as 0: behind once MySQL has recorded anything of its shard. So a loss of everything is forgotten too (the
-- worker's check finds it within a second: little to delete), and a copy taken between such a loss and the marks'
-- making again is not taken for the loss it followed (an operator's DEL of a mark costs a forget, not correctness).

local raised = tonumber(ARGV[1])
local sequence = nil
local count = #KEYS
if ARGV[2] == '1' then
  sequence = KEYS[count]
  count = count - 1
end
local behind = {}
local marks = {}
local highest = 0
for i = 1, count do
  marks[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if marks[i] < tonumber(ARGV[i + 2]) then behind[#behind + 1] = i end
  if marks[i] > highest then highest = marks[i] end
end
if #behind > 0 then return {'behind', unpack(behind)} end
local values = {'raised'}
if sequence then
  local next = math.max(tonumber(redis.call('GET', sequence) or '0'), highest) + (raised > 0 and 1 or 0)
  for i = 1, raised do
    redis.call('SET', KEYS[i], string.format('%d', next))
    values[#values + 1] = next
  end
  redis.call('SET', sequence, string.format('%d', next))
  return values
end
for i = 1, raised do
  local value = marks[i] + 1
  redis.call('SET', KEYS[i], string.format('%d', value))
  values[#values + 1] = value
end
return values
