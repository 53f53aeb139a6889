-- absent.lua: remember for a moment that MySQL has no such item (a negative entry), unless the item was made since.
--
-- KEYS[1] the item's negative entry   KEYS[2] its "made" marker (set by a PUT or a pool that made the item's MySQL row,
-- before it deleted the entry)
-- ARGV[1] how long (ms) the entry lives
--
-- Returns 1 when the entry was written, 0 when the item was made meanwhile: the caller read MySQL before the row
-- existed, and its answer is stale (a later entry would hide the item for its lifetime).
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return 1
