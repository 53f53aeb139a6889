-- epochs.lua: the epoch of each item, for the write-back worker's fence (JournalRepository.apply).
--
-- KEYS the item hashes. Returns, per key, {epoch, absorbed} (epoch '' for an item without one; absorbed: the earlier
-- epochs its rebuild counts the events of, ',e1,e2,' or '', see init_item.lua), or false when the item has no
-- stock_num (missing, or only the init lock of a rebuild that has not written yet).
--
-- Read-only and across items: one call instead of one per item. On a single Redis any keys may be read together;
-- on Redis Cluster the caller must group the keys by slot (issue 8).

local result = {}
for i, key in ipairs(KEYS) do
  local fields = redis.call('HMGET', key, 'stock_num', 'epoch', 'absorbed')
  if fields[1] then
    result[i] = {fields[2] or '', fields[3] or ''}
  else
    result[i] = false
  end
end
return result
