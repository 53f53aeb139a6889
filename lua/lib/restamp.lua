-- restamp.lua: a rebuild's holds keep counting: both records of each hold it counts get the item's new epoch, the
-- reserve key (written anew when it vanished alone) and the order's `line_epochs` for its lines of the item (an order
-- hash that is gone is left gone; one of another business is left alone). The order's record is what tells a hold's
-- epoch once its reserve key vanishes (lib/items.lua: holdIn), and the epoch it was made in is absorbed by the next
-- rebuild only: after a second one it is an epoch the item no longer knows, and the hold would be taken for one it
-- does not count. Used by init_item.lua (the last part of a rebuild's holds) and restamp_holds.lua (the others).
--
-- restampHolds(item, count, keyBase, argBase, epoch, sawOld): the holds j = 1..count have their reserve key at
-- KEYS[keyBase + j], their order hash at KEYS[keyBase + count + j] and the same order under its bare orderId at
-- KEYS[keyBase + 2 * count + j] (where an order of a business other than `default` made before orders were scoped
-- is still kept; the same key as the order for `default`); their quantity at ARGV[argBase + 2j - 1] and the TTL (s)
-- of a reserve key written anew at ARGV[argBase + 2j]. sawOld(epoch) is given the epoch each reserve key named before.

local function restampOrder(orderKey, biz, sku, epoch)
  local record = redis.call('HMGET', orderKey, 'lines', 'line_epochs', 'biz')
  if not record[1] or not record[2] or (record[3] and record[3] ~= '' and record[3] ~= biz) then return end
  local epochs = {}
  for part in string.gmatch(record[2] .. ',', '([^,]*),') do epochs[#epochs + 1] = part end
  local k = 0
  local changed = false
  for lineSku, held in string.gmatch(record[1], '(%d+):%d+:(%d+)') do
    k = k + 1
    if lineSku == sku and tonumber(held) > 0 and k <= #epochs and epochs[k] ~= epoch then
      epochs[k] = epoch
      changed = true
    end
  end
  if changed then redis.call('HSET', orderKey, 'line_epochs', table.concat(epochs, ',')) end
end

-- The epoch an order's record says its line of `sku` was held in (nil when it holds none of it or keeps no epochs).
local function lineEpochOf(lines, lineEpochs, sku)
  if not lines or not lineEpochs then return nil end
  local epochs = {}
  for part in string.gmatch(lineEpochs .. ',', '([^,]*),') do epochs[#epochs + 1] = part end
  local k = 0
  for lineSku, held in string.gmatch(lines, '(%d+):%d+:(%d+)') do
    k = k + 1
    if lineSku == sku and tonumber(held) > 0 and epochs[k] and epochs[k] ~= '' then return epochs[k] end
  end
  return nil
end

local function restampHolds(item, count, keyBase, argBase, epoch, sawOld)
  -- The item's business and SKU, from its key ('prefix:{biz:sku}:item', or 'prefix:{sN}:i:biz:sku:item' on a
  -- cluster; neither a bizId nor a SKU has ':' or braces).
  local biz, sku = string.match(item, '[:{]([^:{}]+):(%d+)}?:item$')
  for j = 1, count do
    local reserveKey = KEYS[keyBase + j]
    local value = ARGV[argBase + 2 * j - 1] .. '@' .. epoch
    local old = redis.call('SET', reserveKey, value, 'XX', 'KEEPTTL', 'GET')
    if old then
      sawOld(string.match(old, '@(.*)$'))
    else
      redis.call('SET', reserveKey, value, 'EX', math.max(tonumber(ARGV[argBase + 2 * j]), 1))
    end
    local order = KEYS[keyBase + count + j]
    restampOrder(order, biz, sku, epoch)
    if KEYS[keyBase + 2 * count + j] ~= order then restampOrder(KEYS[keyBase + 2 * count + j], biz, sku, epoch) end
  end
end
