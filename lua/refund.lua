#!lua flags=allow-oom
-- refund.lua: a confirmed order is refunded before shipment; its stock becomes available again.
--
-- KEYS[1] order hash   KEYS[2] outbox stream   then for each line i = 0..n-1: KEYS[3+i] item hash
-- then for each line i = 0..n-1: KEYS[3+n+i] the item's set of usable codes (a one-time pool gets its codes back)
-- ARGV[1] orderId   ARGV[2] now (ms; '' = Redis TIME, lib/clock.lua)   ARGV[3] the order's lines as the caller read them
--
-- Returns one of
--   {'ok', lines}             refunded now
--   {'replay'}                refunded before
--   {'state', status}         only a confirmed order can be refunded
--   {'stale'}                 the caller's view of the order is out of date (its lines changed, or it is gone)
--   {'missing', 'i,j'}        items (1-based) not whole in Redis: rebuild them, then run again (lib/items.lua)
--
-- stock_num +q, and refund_unapplied +q until the write-back worker has added q to MySQL's stock, so the
-- reconciler can account for the refund while it is in flight.

-- Last key and argument, taken off first: the key of the drain check (its shard's mark; on a single Redis the drain
-- sequence) and this instance's floor of it (lib/floor.lua); below the floor the script answers {'behind'} and changes
-- nothing.
--!include clock
--!include usage
--!include give_back
--!include items
--!include floor

local behind = behindFloor()
if behind then return behind end

local order = KEYS[1]
local now = clockNow(ARGV[2])
local fields = redis.call('HMGET', order, 'status', 'lines', 'biz', 'codes')
local status = fields[1]
if not status then
  -- The caller read the order, and it is gone now (Redis lost its data in between): read again (the order comes
  -- back from the journal), rather than answer that an order that was there does not exist.
  return {'stale'}
end
if status == 'refunded' then
  return {'replay'}
end
if status ~= 'confirmed' then
  return {'state', status}
end
if fields[2] ~= ARGV[3] then
  return {'stale'}
end

local n = (#KEYS - 2) / 2
local itemKeys = {}
for i = 0, n - 1 do itemKeys[i + 1] = KEYS[3 + i] end
local codesKeys = {}
for i = 0, n - 1 do codesKeys[i + 1] = KEYS[3 + n + i] end
local missing = missingItems(itemKeys, codesKeys)
if missing then
  return missing
end
local events = {}
local epochs = {}
local heldCodes = splitLines(fields[4])
local i = 0
for sku, reserved in string.gmatch(fields[2], '(%d+):%d+:(%d+)') do
  local itemKey = KEYS[3 + i]
  local quantity = tonumber(reserved)
  if quantity > 0 then
    -- back on hand (an infinite item's stock_num is its on-hand stock, a finite one's what is left to sell: both grow)
    local left = redis.call('HINCRBY', itemKey, 'stock_num', quantity)
    redis.call('HINCRBY', itemKey, 'refund_unapplied', quantity)
    local infinite = redis.call('HGET', itemKey, 'is_infinite') == '1'
    redis.call('HSET', itemKey, 'is_sell_out', (not infinite and left <= 0) and '1' or '0')
    giveBackCodes(itemKey, KEYS[3 + n + i], heldCodes[i + 1])
    events[#events + 1] = sku .. ':' .. quantity
    epochs[#epochs + 1] = redis.call('HGET', itemKey, 'epoch') or ''
  end
  i = i + 1
end

redis.call('HSET', order, 'status', 'refunded')
redis.call('XADD', KEYS[2], '*', 'type', 'refund', 'order', ARGV[1], 'biz', fields[3] or '',
  'items', table.concat(events, ','), 'epochs', table.concat(epochs, ','), 'at', now)
return {'ok', fields[2]}
