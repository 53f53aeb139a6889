-- fix_item.lua: the reconciler's repair of one item's counters, only if they are still what it judged.
--
-- KEYS[1] item hash
-- ARGV[1..4] the counters as read: stock_num, used_stock_num, confirmed_unapplied, refund_unapplied
-- ARGV[5..8] the correct values, same order   ARGV[9] the version of MySQL's stock row they were judged from (kept as
-- `mysql_version`: a stock change whose MySQL half made a later version is not in them, lua/admin_done.lua)
--
-- Returns {'ok'} when written, {'moved'} when the item changed since it was read (judge again), {'missing'},
-- {'fenced'} when a stock change's MySQL half is still to come (lib/fence.lua): nothing is written. A repair closes a
-- fence that no longer holds (its caller died between the halves) and changes the item's mark (`repairs`).

--!include clock
--!include fence

local item = KEYS[1]
local f = redis.call('HMGET', item, 'stock_num', 'used_stock_num', 'confirmed_unapplied', 'refund_unapplied')
if not f[1] then
  return {'missing'}
end
if fenced(item, clockNow('')) then
  return {'fenced'}
end
if tonumber(f[1]) ~= tonumber(ARGV[1]) or tonumber(f[2] or '0') ~= tonumber(ARGV[2])
  or tonumber(f[3] or '0') ~= tonumber(ARGV[3]) or tonumber(f[4] or '0') ~= tonumber(ARGV[4]) then
  return {'moved'}
end
local stock = tonumber(ARGV[5])
clearFences(item)
-- The item's counters are MySQL's now: a stock change's Redis half made before is not in them (lib/fence.lua: its
-- mark no longer holds).
redis.call('HINCRBY', item, 'repairs', 1)
redis.call('HSET', item, 'stock_num', stock, 'used_stock_num', ARGV[6], 'confirmed_unapplied', ARGV[7],
  'refund_unapplied', ARGV[8], 'is_sell_out', (redis.call('HGET', item, 'is_infinite') ~= '1' and stock <= 0) and '1' or '0',
  'mysql_version', ARGV[9])
return {'ok'}
