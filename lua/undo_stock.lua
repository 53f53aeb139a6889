-- undo_stock.lua: reverse a stock change whose MySQL half failed (compensation), exactly once.
--
-- KEYS[1] item hash   KEYS[2] adjustment key of the change being reversed, or the item key again when none
-- KEYS[3] marker key of this reversal (same hash tag)
-- ARGV[1] the delta that was applied   ARGV[2] fingerprint the adjustment key must hold to be deleted
-- ARGV[3] marker TTL (s)
--
-- Returns {'ok', available} when reversed now, {'done'} when this reversal ran before (a retry of a durable task
-- whose first attempt did reach Redis). Deleting the adjustment key lets the caller's retry apply the change
-- afresh.

local item = KEYS[1]
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', tonumber(ARGV[3])) == false then
  return {'done'}
end
local left = redis.call('HINCRBY', item, 'stock_num', -tonumber(ARGV[1]))
redis.call('HSET', item, 'is_sell_out', left <= 0 and '1' or '0')
if KEYS[2] ~= item and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2])
end
return {'ok', left}
