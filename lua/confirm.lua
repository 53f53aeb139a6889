-- confirm.lua: payment succeeded; the held stock is sold.
--
-- KEYS[1] order hash   KEYS[2] outbox stream   KEYS[3] expiry index
-- then for each item i = 0..n-1: KEYS[4+2i] item hash, KEYS[5+2i] reserve key
-- ARGV[1] orderId   ARGV[2] now (ms)   ARGV[3] the order's lines as the caller read them
--
-- Returns one of
--   {'ok', lines, eventId}     confirmed now; eventId = the outbox entry (also kept as the order's
--                              `transition_event`, for sync mode's replays)
--   {'replay', status}         already confirmed (or refunded since)
--   {'cancelled', status}      cancelled or expired first
--   {'stale'}                  the caller's view of the order is out of date (its lines changed, or it is gone)
--
-- used_stock_num -q with stock_num unchanged; confirmed_unapplied +q counts what MySQL has not deducted yet,
-- so the reconciler can check db_stock == stock_num + used_stock_num + confirmed_unapplied exactly. The reserve
-- key stays (the source design's write-back column) and expires with the order.

local order = KEYS[1]
local now = tonumber(ARGV[2])
local fields = redis.call('HMGET', order, 'status', 'lines', 'biz')
local status = fields[1]
if not status then
  -- The caller read the order, and it is gone now (Redis lost its data in between): read again (the order comes
  -- back from the journal), rather than answer that an order that was there does not exist.
  return {'stale'}
end
if status == 'cancelled' or status == 'expired' then
  return {'cancelled', status}
end
if status ~= 'reserved' then
  return {'replay', status}
end
if fields[2] ~= ARGV[3] then
  return {'stale'}
end

local n = (#KEYS - 3) / 2
local events = {}
local epochs = {}
for i = 0, n - 1 do
  local itemKey = KEYS[4 + 2 * i]
  epochs[#epochs + 1] = redis.call('HGET', itemKey, 'epoch') or ''
  local held = tonumber(redis.call('GET', KEYS[5 + 2 * i]) or '0')
  if held > 0 then
    redis.call('HINCRBY', itemKey, 'used_stock_num', -held)
    redis.call('HINCRBY', itemKey, 'confirmed_unapplied', held)
  end
  local sku = string.match(itemKey, ':(%d+)}?:item$')
  events[#events + 1] = (sku or '?') .. ':' .. held
end

redis.call('ZREM', KEYS[3], ARGV[1])
local id = redis.call('XADD', KEYS[2], '*', 'type', 'confirm', 'order', ARGV[1], 'biz', fields[3] or '',
  'items', table.concat(events, ','), 'epochs', table.concat(epochs, ','), 'at', now)
redis.call('HSET', order, 'status', 'confirmed', 'updated_at', now, 'transition_event', id)
return {'ok', fields[2], id}
