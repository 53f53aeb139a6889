-- undo_reserve.lua: take back a reservation whose synchronous journal write failed, as if it never happened.
--
-- KEYS[1] order hash   KEYS[2] outbox stream   KEYS[3] expiry index
-- then for each line i = 0..n-1: KEYS[4+2i] item hash, KEYS[5+2i] reserve key
-- ARGV[1] orderId   ARGV[2] the reserve's outbox event id   ARGV[3] now (ms)
--
-- Returns {'ok'} when undone, {'gone'} when the order is no longer the reservation of that event (cancelled,
-- confirmed or replaced meanwhile: nothing is touched).
--
-- Unlike a rollback no rollback key is written and the order hash is deleted, so the caller may retry the same
-- orderId. The undo event tells the worker to remove the journal row that reserve event created, if any.

local order = KEYS[1]
local fields = redis.call('HMGET', order, 'status', 'event', 'biz')
if fields[1] ~= 'reserved' or fields[2] ~= ARGV[2] then
  return {'gone'}
end
local n = (#KEYS - 3) / 2
local events = {}
local epochs = {}
for i = 0, n - 1 do
  local itemKey = KEYS[4 + 2 * i]
  local reserveKey = KEYS[5 + 2 * i]
  epochs[#epochs + 1] = redis.call('HGET', itemKey, 'epoch') or ''
  local held = tonumber(redis.call('GET', reserveKey) or '0')
  if held > 0 then
    if redis.call('HGET', itemKey, 'is_infinite') == '1' then
      redis.call('HINCRBY', itemKey, 'used_stock_num', -held)
    else
      local left = redis.call('HINCRBY', itemKey, 'stock_num', held)
      redis.call('HINCRBY', itemKey, 'used_stock_num', -held)
      redis.call('HSET', itemKey, 'is_sell_out', left <= 0 and '1' or '0')
    end
    redis.call('DEL', reserveKey)
  end
  local sku = string.match(itemKey, ':(%d+)}')
  events[#events + 1] = (sku or '?') .. ':' .. held
end
redis.call('DEL', order)
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('XADD', KEYS[2], '*', 'type', 'undo', 'order', ARGV[1], 'biz', fields[3] or '',
  'items', table.concat(events, ','), 'epochs', table.concat(epochs, ','), 'reserve_event', ARGV[2],
  'at', tonumber(ARGV[3]))
return {'ok'}
