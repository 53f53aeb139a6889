-- set_pool.lua: write an item's code pool settings into its hash (the item must be in Redis: the init path writes
-- them for an item it rebuilds).
--
-- KEYS[1] item hash
-- ARGV[1] pool_kind (one_time | reusable | batch)   ARGV[2] pool_status (online | offline)
-- ARGV[3] pool_expires (Unix ms, 0 = never)   ARGV[4] pool_batch (the batch code, '' for other kinds)
-- ARGV[5] the item's user_limit, the pool's maximum per user ('' unchanged)
--
-- Returns {'ok'} or {'missing'} (the item is not whole in Redis, lib/items.lua: a hash holding only a rebuild's init
-- lock is not written into; the caller waits for the item, which the rebuild writes with the pool MySQL has).

--!include items

if missingItems({KEYS[1]}) then
  return {'missing'}
end
redis.call('HSET', KEYS[1], 'pool_kind', ARGV[1], 'pool_status', ARGV[2], 'pool_expires', ARGV[3],
  'pool_batch', ARGV[4])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'user_limit', ARGV[5])
end
return {'ok'}
