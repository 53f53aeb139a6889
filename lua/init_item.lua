-- init_item.lua: write a stock item rebuilt from MySQL, if this caller still holds its init lock.
--
-- KEYS[1] item hash   KEYS[2] the item's per-user usage hash (see reserve.lua)   KEYS[3] the item's code set
-- then KEYS[4..3+h] the reserve keys of the item's live holds as the journal has them (see below)
-- ARGV[1] caller id   ARGV[2] stock_num (db stock − live reserved)   ARGV[3] used_stock_num (live reserved)
-- ARGV[4] is_infinite   ARGV[5] danger_num   ARGV[6] backorder_limit   ARGV[7] item TTL (s), 0 = none
-- ARGV[8] the item's new epoch: events carry the epoch of the item they changed, and the write-back worker drops
--         those of an earlier epoch, which this rebuild did not count (see JournalRepository.apply)
-- ARGV[9] user_limit   ARGV[10] user_window (s)   ARGV[11] the current window
-- ARGV[12] pool_kind ('' none | one_time | reusable | batch)   ARGV[13] pool_status   ARGV[14] pool_expires (ms, 0
-- none)   ARGV[15] pool_batch
-- ARGV[16] the epochs of the item's outbox events the rebuild applied to the journal before reading it ('e1,e2')
-- ARGV[17] c = how many codes follow, ARGV[18..17+c] the pool's usable codes (one-time: those no live or sold
-- journal line holds; reusable: all)
-- ARGV[18+c] h = how many live holds follow, then per hold j = 1..h: ARGV[17+c+2j] its quantity, ARGV[18+c+2j] the
-- TTL (s) of its reserve key if it must be written anew (KEYS[4..3+h] their reserve keys)
-- then pairs ARGV[19+c+2h+2j] userId, ARGV[20+c+2h+2j] that user's units in the current window, as the journal
-- counts them
-- KEYS[4+h..3+2h] the order hashes of those holds (on a cluster the order's part on the item's shard), in the same
-- order; KEYS[4+2h..3+3h] the same orders under their bare orderId, where an order of a business other than
-- `default` made before orders were scoped is still kept (the same key as the first for business `default`)
-- KEYS[4+3h..] the outbox streams the item's events go to (every shard's on one Redis; its shard's on a cluster)
--
-- The holds the rebuild counts (the journal's RESERVED lines) get both their records written with the new epoch: the
-- reserve key (a key that vanished alone is written anew) and the order's `line_epochs` for its lines of this item
-- (an order hash that is gone is left gone; one of another business is left alone). The order's record is what tells
-- a hold's epoch once its reserve key vanishes (lib/items.lua: holdIn), and the epoch it was made in is absorbed by
-- the next rebuild only: after a second one it is an epoch the item no longer knows, and the hold would be taken for
-- one it does not count.
-- The item records as `absorbed` (',e1,e2,') the earlier epochs whose outbox events it counts:
-- those it applied from the outbox (ARGV[16]) and those its holds' reserve keys named before the re-stamp. Their events were all in the
-- outbox or the journal, since the Redis that kept them did not lose its data: a line of such an epoch is counted
-- (lib/items.lua: holdIn; JournalRepository.apply). A hold of any other epoch is one Redis lost the journal's
-- record of (a whole data loss), and is not counted.
--
-- "Did not lose its data" is checked, not assumed: an outbox stream deleted alone takes its events with it (and an
-- XADD makes it anew), so a hold whose event went with it is in neither the journal nor the outbox. Each stream
-- carries a consumer group `intact-since` that never reads: its last-delivered-id is the Redis time (ms) it was
-- made (at the service's start, or here when missing). An earlier epoch is absorbed only when it began (epochs
-- start with their birth time, base 36) after every stream the item's events go to was last made; a stream without
-- the group gets it now, and this rebuild absorbs nothing.
--
-- Returns {'ok'} when written, {'lost'} when the lock was taken over or the item appeared meanwhile (the caller's
-- numbers may be stale, so nothing is written).

--!include clock

local item = KEYS[1]
local fields = redis.call('HMGET', item, 'stock_num', 'lock_user_id')
if fields[1] or fields[2] ~= ARGV[1] then
  return {'lost'}
end
local stock = tonumber(ARGV[2])
redis.call('HSET', item, 'stock_num', stock, 'used_stock_num', ARGV[3], 'confirmed_unapplied', 0,
  'refund_unapplied', 0, 'is_sell_out', stock <= 0 and '1' or '0', 'is_infinite', ARGV[4], 'danger_num', ARGV[5],
  'backorder_limit', ARGV[6], 'user_limit', ARGV[9], 'user_window', ARGV[10], 'lock_user_id', '', 'lock_time', 0,
  'epoch', ARGV[8], 'pool_kind', ARGV[12], 'pool_status', ARGV[13], 'pool_expires', ARGV[14], 'pool_batch', ARGV[15])
-- The code set likewise: exactly the codes the journal leaves usable.
redis.call('DEL', KEYS[3])
local codeCount = tonumber(ARGV[17])
redis.call('HSET', item, 'codes_n', codeCount)
for first = 18, 17 + codeCount, 500 do
  redis.call('SADD', KEYS[3], unpack(ARGV, first, math.min(first + 499, 17 + codeCount)))
end
local holdCount = tonumber(ARGV[18 + codeCount])
-- Since when every stream of the item's events has kept all it was given (see above).
local intactSince = 0
for k = 4 + 3 * holdCount, #KEYS do
  local since
  local groups = redis.pcall('XINFO', 'GROUPS', KEYS[k])
  if type(groups) == 'table' and not groups.err then
    for _, group in ipairs(groups) do
      local name, last
      for f = 1, #group - 1, 2 do
        if group[f] == 'name' then name = group[f + 1] elseif group[f] == 'last-delivered-id' then last = group[f + 1] end
      end
      if name == 'intact-since' then since = tonumber(string.match(last or '', '^(%d+)')) end
    end
  end
  if not since then
    redis.call('XGROUP', 'CREATE', KEYS[k], 'intact-since', clockNow('') .. '-0', 'MKSTREAM')
    since = math.huge
  end
  if since > intactSince then intactSince = since end
end
local absorbed = {}
local seen = {}
local function absorb(epoch)
  -- only an epoch that began while the streams were intact; bounded: a rebuild normally absorbs one epoch (two
  -- after rebuilds in quick succession)
  local born = epoch and tonumber(string.match(epoch, '^(%w+)%-') or '', 36)
  if not born or born <= intactSince then return end
  if epoch ~= ARGV[8] and not seen[epoch] and #absorbed < 16 then
    seen[epoch] = true
    absorbed[#absorbed + 1] = epoch
  end
end
for epoch in string.gmatch(ARGV[16], '[^,]+') do absorb(epoch) end
-- An order's lines of this item name the new epoch ('sku:requested:reserved,...' and 'e1,e2,...', one per line).
-- The item's business and SKU, from its key ('prefix:{biz:sku}:item', or 'prefix:{sN}:i:biz:sku:item' on a cluster;
-- neither a bizId nor a SKU has ':' or braces).
local biz, sku = string.match(item, '[:{]([^:{}]+):(%d+)}?:item$')
local function restampOrder(orderKey)
  local record = redis.call('HMGET', orderKey, 'lines', 'line_epochs', 'biz')
  if not record[1] or not record[2] or (record[3] and record[3] ~= '' and record[3] ~= biz) then return end
  local epochs = {}
  for part in string.gmatch(record[2] .. ',', '([^,]*),') do epochs[#epochs + 1] = part end
  local k = 0
  local changed = false
  for lineSku, held in string.gmatch(record[1], '(%d+):%d+:(%d+)') do
    k = k + 1
    if lineSku == sku and tonumber(held) > 0 and k <= #epochs and epochs[k] ~= ARGV[8] then
      epochs[k] = ARGV[8]
      changed = true
    end
  end
  if changed then redis.call('HSET', orderKey, 'line_epochs', table.concat(epochs, ',')) end
end
for j = 1, holdCount do
  local value = ARGV[17 + codeCount + 2 * j] .. '@' .. ARGV[8]
  local old = redis.call('SET', KEYS[3 + j], value, 'XX', 'KEEPTTL', 'GET')
  if old then
    absorb(string.match(old, '@(.*)$'))
  else
    redis.call('SET', KEYS[3 + j], value, 'EX', math.max(tonumber(ARGV[18 + codeCount + 2 * j]), 1))
  end
  restampOrder(KEYS[3 + holdCount + j])
  if KEYS[3 + 2 * holdCount + j] ~= KEYS[3 + holdCount + j] then restampOrder(KEYS[3 + 2 * holdCount + j]) end
end
redis.call('HSET', item, 'absorbed', #absorbed > 0 and (',' .. table.concat(absorbed, ',') .. ',') or '')
-- The usage hash is rebuilt with the item: it counts what the rebuilt item counts, no more and no less.
redis.call('DEL', KEYS[2])
local window = ARGV[11]
for first = 19 + codeCount + 2 * holdCount, #ARGV, 400 do
  local chunk = {}
  for j = first, math.min(first + 398, #ARGV - 1), 2 do
    chunk[#chunk + 1] = ARGV[j]
    chunk[#chunk + 1] = window .. ':' .. ARGV[j + 1]
  end
  if #chunk > 0 then redis.call('HSET', KEYS[2], unpack(chunk)) end
end
-- the item is whole only with its usage hash while it has counts (lib/items.lua)
redis.call('HSET', item, 'has_users', redis.call('EXISTS', KEYS[2]) == 1 and '1' or '0')
for k = 1, 3 do
  local key = KEYS[k]
  if tonumber(ARGV[7]) > 0 then
    redis.call('EXPIRE', key, tonumber(ARGV[7]))
  else
    redis.call('PERSIST', key)
  end
end
return {'ok'}
