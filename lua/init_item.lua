-- init_item.lua: write a stock item rebuilt from MySQL, if this caller still holds its init lock.
--
-- KEYS[1] item hash
-- ARGV[1] caller id   ARGV[2] stock_num (db stock − live reserved)   ARGV[3] used_stock_num (live reserved)
-- ARGV[4] is_infinite   ARGV[5] danger_num   ARGV[6] backorder_limit   ARGV[7] item TTL (s), 0 = none
-- ARGV[8] the item's new epoch: events carry the epoch of the item they changed, and the write-back worker drops
--         those of an earlier epoch, which this rebuild did not count (see JournalRepository.apply)
--
-- Returns {'ok'} when written, {'lost'} when the lock was taken over or the item appeared meanwhile (the caller's
-- numbers may be stale, so nothing is written).

local item = KEYS[1]
local fields = redis.call('HMGET', item, 'stock_num', 'lock_user_id')
if fields[1] or fields[2] ~= ARGV[1] then
  return {'lost'}
end
local stock = tonumber(ARGV[2])
redis.call('HSET', item, 'stock_num', stock, 'used_stock_num', ARGV[3], 'confirmed_unapplied', 0,
  'refund_unapplied', 0, 'is_sell_out', stock <= 0 and '1' or '0', 'is_infinite', ARGV[4], 'danger_num', ARGV[5],
  'backorder_limit', ARGV[6], 'lock_user_id', '', 'lock_time', 0, 'epoch', ARGV[8])
if tonumber(ARGV[7]) > 0 then
  redis.call('EXPIRE', item, tonumber(ARGV[7]))
else
  redis.call('PERSIST', item)
end
return {'ok'}
