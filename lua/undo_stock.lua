-- undo_stock.lua: reverse a stock change whose MySQL half failed (compensation), exactly once.
--
-- KEYS[1] item hash   KEYS[2] adjustment key of the change being reversed, or the item key again when none
-- KEYS[3] marker key of this reversal (same hash tag)
-- ARGV[1] the delta that was applied   ARGV[2] fingerprint the adjustment key must hold to be deleted
-- ARGV[3] marker TTL (s)   ARGV[4] the item's epoch when the change was made ('' when not known: any epoch)
-- ARGV[5] settings the change made ('field=old>new,...', set_stock.lua; '' none): each goes back to old where it is
--         still new (a later change of the same setting stands)
--
-- The reversal ends the change: the fence its Redis half opened is closed (lib/fence.lua).
--
-- Returns {'ok', available} when reversed now, {'done'} when this reversal ran before (a retry of a durable task
-- whose first attempt did reach Redis), {'rebuilt'} when the item is gone or was rebuilt from MySQL since the change
-- (MySQL never had the change, so the item as it is now does not count it: nothing to reverse). Deleting the
-- adjustment key lets the caller's retry apply the change afresh.

--!include fence

local item = KEYS[1]
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {'done'}
end
local current = redis.call('HMGET', item, 'stock_num', 'epoch')
if not current[1] or ((ARGV[4] or '') ~= '' and current[2] ~= ARGV[4]) then
  -- The change is not in the item any more, but its adjustment key must still go: a retry applies it afresh
  -- (MySQL never had it), instead of being answered as a replay of a change that is nowhere.
  if KEYS[2] ~= item and redis.call('GET', KEYS[2]) == ARGV[2] then
    redis.call('DEL', KEYS[2])
  end
  return {'rebuilt'}
end
redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[3]))
closeFence(item)
local left = redis.call('HINCRBY', item, 'stock_num', -tonumber(ARGV[1]))
redis.call('HSET', item, 'is_sell_out', left <= 0 and '1' or '0')
for field, old, new in string.gmatch(ARGV[5] or '', '([%w_]+)=([^>,]*)>([^,]*)') do
  if redis.call('HGET', item, field) == new then
    redis.call('HSET', item, field, old)
  end
end
if KEYS[2] ~= item and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2])
end
return {'ok', left}
