-- undo_stock.lua: reverse a stock change whose MySQL half failed (the first level of compensation).
--
-- KEYS[1] item hash   KEYS[2] adjustment key of the change being reversed, or the item key again when none
-- ARGV[1] the delta that was applied   ARGV[2] fingerprint the adjustment key must hold to be deleted
--
-- Returns {'ok', available}. Deleting the adjustment key lets the caller's retry apply the change afresh.

local item = KEYS[1]
local left = redis.call('HINCRBY', item, 'stock_num', -tonumber(ARGV[1]))
redis.call('HSET', item, 'is_sell_out', left <= 0 and '1' or '0')
if KEYS[2] ~= item and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2])
end
return {'ok', left}
