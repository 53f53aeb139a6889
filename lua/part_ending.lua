-- part_ending.lua: where a part of an order Redis no longer has ends in its shard's outbox: the id of the last entry
-- the stream was given, read in one step with the part's absence. Every event of the order's part up to then is of
-- the hold Redis forgot; once the part is restored from the journal, its events come after.
-- (OrderReader.restoreOrder ends a duplicate hold there before it restores the part, JournalBatchPlan+Duplicates.swift.)
--
-- KEYS[1] the part's order hash   KEYS[2] its shard's outbox stream
--
-- Returns {'absent', lastId} ('0-0' for a stream Redis does not have: every entry it had went with it), or
-- {'present'} when the part is in Redis (restore_order.lua would answer 'exists': nothing ends).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'present'}
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {'absent', '0-0'}
end
local info = redis.call('XINFO', 'STREAM', KEYS[2])
for i = 1, #info - 1, 2 do
  if info[i] == 'last-generated-id' then
    return {'absent', info[i + 1]}
  end
end
return redis.error_reply('XINFO STREAM answered without last-generated-id')
