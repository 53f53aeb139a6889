#!lua flags=allow-oom
-- confirm.lua: payment succeeded; the held stock is sold.
--
-- KEYS[1] order hash   KEYS[2] outbox stream   KEYS[3] expiry index
-- then for each item i = 0..n-1: KEYS[4+2i] item hash, KEYS[5+2i] reserve key
-- ARGV[1] orderId   ARGV[2] now (ms; '' = Redis TIME, lib/clock.lua)   ARGV[3] the order's lines as the caller read them
-- ARGV[4] '1' when the caller checked the hold's deadline itself (a cluster part: its directory decided), else ''
--
-- Returns one of
--   {'ok', lines, eventId}     confirmed now; eventId = the outbox entry (also kept as the order's
--                              `transition_event`, for sync mode's replays)
--   {'replay', status}         already confirmed (or refunded since)
--   {'cancelled', status}      cancelled or expired first
--   {'expired'}                the hold's deadline has passed (the sweeper has not got there yet): nothing is sold;
--                              the caller expires it
--   {'stale'}                  the caller's view of the order is out of date (its lines changed, or it is gone)
--   {'missing', 'i,j'}         items (1-based) not whole in Redis: rebuild them, then run again (lib/items.lua)
--   {'lost'}                   a one-time pool's line holding fewer codes than units (below), or
--                              a hold Redis lost with its item (rebuilt without it), and the item cannot sell its
--                              units again: nothing is changed (the caller cancels the order: its hold is gone)
--
-- used_stock_num -q with stock_num unchanged (an infinite item's stock_num, its on-hand stock, -q: the hold took
-- nothing from it); confirmed_unapplied +q counts what MySQL has not deducted yet, so the reconciler can check
-- db_stock == stock_num + used_stock_num + confirmed_unapplied exactly (an infinite item: stock_num +
-- confirmed_unapplied). The reserve
-- key stays (the source design's write-back column) and expires with the order.
--
-- A hold of an earlier epoch (lib/items.lua) is not in its item: the rebuild did not count it and the worker leaves
-- its reserve line out. Its units are sold from the item as it is now (stock_num -q, confirmed_unapplied +q), so
-- MySQL is deducted by this confirm's line like any other; when the item cannot cover them, nothing is sold.

-- Last key and argument, taken off first: the key of the drain check (its shard's mark; on a single Redis the drain
-- sequence) and this instance's floor of it (lib/floor.lua); below the floor the script answers {'behind'} and changes
-- nothing.
--!include clock
--!include items
--!include integer
--!include floor

local behind = behindFloor()
if behind then return behind end

local order = KEYS[1]
local now = clockNow(ARGV[2])
local fields = redis.call('HMGET', order, 'status', 'lines', 'biz', 'expires_at', 'line_epochs', 'codes', 'restored')
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
if ARGV[4] ~= '1' and tonumber(fields[4] or '0') <= now then
  return {'expired'}
end

local n = (#KEYS - 3) / 2
local itemKeys = {}
for i = 0, n - 1 do itemKeys[i + 1] = KEYS[4 + 2 * i] end
local missing = missingItems(itemKeys)
if missing then
  return missing
end

-- Read every line first: a hold the item does not count must be sold from the item now, all lines or none.
local reservedLines, lineEpochs = orderLines(fields[2], fields[5])
local lineCodes = {}
for part in string.gmatch((fields[6] or '') .. ',', '([^,]*),') do lineCodes[#lineCodes + 1] = part end
local plan = {}
local left = {}
for i = 0, n - 1 do
  local itemKey = itemKeys[i + 1]
  local item = redis.call('HMGET', itemKey, 'epoch', 'stock_num', 'is_infinite', 'pool_kind', 'absorbed')
  local held, counted = holdIn(KEYS[5 + 2 * i], item[1], reservedLines[i + 1], lineEpochs and lineEpochs[i + 1],
    item[5])
  -- A one-time pool's hold is its codes: a line of an order restored from the journal holding fewer codes than units
  -- (without a code another order took since: this order gave it back in a step Redis lost,
  -- CodePoolRepository.assignedCodes) cannot be sold, and is lost as below. (Only a restored order's: a hold made
  -- before its item got a one-time pool, a backorder of stock 0, holds no codes and is sold as it is.)
  if item[4] == 'one_time' and held > 0 and fields[7] == '1' then
    local count = 0
    for _ in string.gmatch(lineCodes[i + 1] or '', '[^|]+') do count = count + 1 end
    if count < held then
      return {'lost'}
    end
  end
  if held > 0 and not counted then
    -- a one-time pool's rebuild put the lost hold's codes back in its set: they cannot be sold with the units
    if item[4] == 'one_time' then
      return {'lost'}
    end
    if item[3] ~= '1' then
      left[itemKey] = (left[itemKey] or tonumber(item[2])) - held
      if left[itemKey] < 0 then
        return {'lost'}
      end
    end
  end
  plan[i + 1] = {epoch = item[1] or '', held = held, counted = counted}
end

local events = {}
local epochs = {}
for i = 0, n - 1 do
  local itemKey = itemKeys[i + 1]
  local line = plan[i + 1]
  epochs[#epochs + 1] = line.epoch
  local held = line.held
  if held > 0 then
    -- A finite item's stock_num lost the units when they were held (a hold that vanished was not counted: they go
    -- now); an infinite item's is its on-hand stock, which the sale takes them from (a hold took nothing).
    local infinite = redis.call('HGET', itemKey, 'is_infinite') == '1'
    if line.counted then
      redis.call('HINCRBY', itemKey, 'used_stock_num', int(-held))
    end
    if infinite or not line.counted then
      local stock = redis.call('HINCRBY', itemKey, 'stock_num', int(-held))
      redis.call('HSET', itemKey, 'is_sell_out', (not infinite and stock <= 0) and '1' or '0')
    end
    redis.call('HINCRBY', itemKey, 'confirmed_unapplied', held)
    -- the key stays and expires with the order; one that vanished alone is written anew with the order's time left
    -- (a SET without it would keep the key for good)
    if not redis.call('SET', KEYS[5 + 2 * i], holdValue(held, line.epoch), 'XX', 'KEEPTTL') then
      local orderLeft = redis.call('PTTL', order)
      if orderLeft > 0 then
        redis.call('SET', KEYS[5 + 2 * i], holdValue(held, line.epoch), 'PX', orderLeft)
      else
        -- an order without a TTL (none is written so): the key lives as long as it
        redis.call('SET', KEYS[5 + 2 * i], holdValue(held, line.epoch))
      end
    end
  end
  local sku = string.match(itemKey, ':(%d+)}?:item$')
  events[#events + 1] = (sku or '?') .. ':' .. held
end

redis.call('ZREM', KEYS[3], ARGV[1])
local id = redis.call('XADD', KEYS[2], '*', 'type', 'confirm', 'order', ARGV[1], 'biz', fields[3] or '',
  'items', table.concat(events, ','), 'epochs', table.concat(epochs, ','), 'at', now)
redis.call('HSET', order, 'status', 'confirmed', 'transition_event', id)
return {'ok', fields[2], id}
