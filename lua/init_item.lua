-- init_item.lua: write a stock item rebuilt from MySQL, if this caller still holds its init lock.
--
-- KEYS[1] item hash   KEYS[2] the item's per-user usage hash (see reserve.lua)   KEYS[3] the item's code set
-- then KEYS[4..3+h] the reserve keys of the last part of the item's live holds as the journal has them (see below)
-- ARGV[1] caller id   ARGV[2] stock_num (db stock − live reserved)   ARGV[3] used_stock_num (live reserved)
-- ARGV[4] is_infinite   ARGV[5] danger_num   ARGV[6] backorder_limit   ARGV[7] item TTL (s), 0 = none
-- ARGV[8] the item's new epoch: events carry the epoch of the item they changed, and the write-back worker drops
--         those of an earlier epoch, which this rebuild did not count (see JournalRepository.apply)
-- ARGV[9] user_limit   ARGV[10] user_window (s)   ARGV[11] the current window
-- ARGV[12] pool_kind ('' none | one_time | reusable | batch)   ARGV[13] pool_status   ARGV[14] pool_expires (ms, 0
-- none)   ARGV[15] pool_batch
-- ARGV[16] the epochs of the item's outbox events the rebuild applied to the journal before reading it, and those the
--         reserve keys of the holds restamp_holds.lua re-stamped named before ('e1,e2')
-- ARGV[17] how many codes fill_part.lua calls of this rebuild put in the code set before (0: none, the set is emptied
-- here)   ARGV[18] how many user counts they put in the usage hash before (likewise)
-- ARGV[19] c = how many codes follow, ARGV[20..19+c] the last part of the pool's usable codes (one-time: those no
-- live or sold journal line holds; reusable: all)
-- ARGV[20+c] h = how many live holds follow (the rebuild's last part of them), then per hold j = 1..h:
-- ARGV[19+c+2j] its quantity, ARGV[20+c+2j] the TTL (s) of its reserve key if it must be written anew (KEYS[4..3+h]
-- their reserve keys)
-- ARGV[21+c+2h] d = how many duplicate holds of ended orders follow (reserve_duplicates RESERVED), then per hold
-- k = 1..d: ARGV[19+c+2h+3k] its quantity, ARGV[20+c+2h+3k] its reserve event, ARGV[21+c+2h+3k] the TTL (s) of its
-- reserve key if it must be written anew (KEYS[4+3h..3+3h+d] their reserve keys, KEYS[4+3h+d..3+3h+2d] their orders'
-- records, on a cluster the order's part on the item's shard)
-- then pairs ARGV[22+c+2h+3d+2j-2] userId, ARGV[23+c+2h+3d+2j-2] that user's units in the current window, as the
-- journal counts them (the last part of them)
-- and last ARGV[#ARGV] the version of MySQL's stock row the rebuild read (kept as `mysql_version`: a stock change whose
-- MySQL half made a later version is not in this item, lua/admin_done.lua)
-- KEYS[4+h..3+2h] the order hashes of those holds (on a cluster the order's part on the item's shard), in the same
-- order; KEYS[4+2h..3+3h] the same orders under their bare orderId, where an order of a business other than
-- `default` made before orders were scoped is still kept (the same key as the first for business `default`)
-- KEYS[4+3h+2d..] the outbox streams the item's events go to (every shard's on one Redis; its shard's on a cluster)
--
-- A rebuild writes in parts of at most INVENTORY_REBUILD_CHUNK records (lib/parts.lua); this call writes the item and
-- the last part of each. The holds the rebuild counts (the journal's RESERVED lines) get both their records written
-- with the new epoch (lib/restamp.lua); the parts before were re-stamped by restamp_holds.lua calls under the same
-- lock, and the epochs their reserve keys named are in ARGV[16]. The code set and the usage hash hold what the
-- fill_part.lua calls before put in them (ARGV[17], ARGV[18]); one that lost some meanwhile fails the rebuild (the
-- lock is dropped, the caller starts over).
-- The item records as `absorbed` (',e1,e2,') the earlier epochs whose outbox events it counts:
-- those it applied from the outbox and those its holds' reserve keys named before the re-stamp (ARGV[16] and its own
-- part's reserve keys). Their events were all in the
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
-- numbers may be stale, so nothing is written), or the code set or usage hash lost a part.

--!include clock
--!include lifetime
--!include parts
--!include restamp

local item = KEYS[1]
if not holdsInitLock(item, ARGV[1]) then
  return {'lost'}
end
if not partsIntact(KEYS[3], 'SCARD', tonumber(ARGV[17])) or not partsIntact(KEYS[2], 'HLEN', tonumber(ARGV[18])) then
  redis.call('DEL', item)
  return {'lost'}
end
local stock = tonumber(ARGV[2])
redis.call('HSET', item, 'stock_num', stock, 'used_stock_num', ARGV[3], 'confirmed_unapplied', 0,
  'refund_unapplied', 0, 'is_sell_out', (ARGV[4] ~= '1' and stock <= 0) and '1' or '0', 'is_infinite', ARGV[4], 'danger_num', ARGV[5],
  'backorder_limit', ARGV[6], 'user_limit', ARGV[9], 'user_window', ARGV[10], 'lock_user_id', '', 'lock_time', 0,
  'epoch', ARGV[8], 'pool_kind', ARGV[12], 'pool_status', ARGV[13], 'pool_expires', ARGV[14], 'pool_batch', ARGV[15])
-- The code set likewise: exactly the codes the journal leaves usable.
local codeCount = tonumber(ARGV[19])
redis.call('HSET', item, 'codes_n', tonumber(ARGV[17]) + codeCount)
fillMembers(KEYS[3], 'codes', '', 20, 19 + codeCount)
local holdCount = tonumber(ARGV[20 + codeCount])
-- Since when every stream of the item's events has kept all it was given (see above).
local intactSince = 0
local dupBase = 21 + codeCount + 2 * holdCount
local dupCount = tonumber(ARGV[dupBase])
local dupKeys = 3 + 3 * holdCount
for k = 4 + 3 * holdCount + 2 * dupCount, #KEYS do
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
-- Whether an epoch began while the streams were intact (epochs start with their birth time, base 36).
local function intactEpoch(epoch)
  local born = epoch and tonumber(string.match(epoch, '^(%w+)%-') or '', 36)
  return born ~= nil and born > intactSince
end
local function absorb(epoch)
  -- only an epoch that began while the streams were intact; bounded: a rebuild normally absorbs one epoch (two
  -- after rebuilds in quick succession)
  if not intactEpoch(epoch) then return end
  if epoch ~= ARGV[8] and not seen[epoch] and #absorbed < 16 then
    seen[epoch] = true
    absorbed[#absorbed + 1] = epoch
  end
end
for epoch in string.gmatch(ARGV[16], '[^,]+') do absorb(epoch) end
restampHolds(item, holdCount, 3, 20 + codeCount, ARGV[8], absorb)
redis.call('HSET', item, 'absorbed', #absorbed > 0 and (',' .. table.concat(absorbed, ',') .. ',') or '')
-- The ended orders' duplicate holds (a retry after retention Redis held anew; reserve_duplicates RESERVED, migrations/0020):
-- each is a hold of its own, counted here and re-stamped like the journal's holds, if its order's record still has it
-- (that reserve's, still held: not taken back, cancelled, expired, sold, nor lost with Redis's data) and it was made in
-- an epoch this rebuild would absorb (its events all in the outbox or the journal); otherwise it is not in the rebuilt
-- item, as any hold of an epoch the item does not count (lib/items.lua), and whatever ends it gives nothing back.
do
  local biz, sku = string.match(item, '[:{]([^:{}]+):(%d+)}?:item$')
  local counted = 0
  for k = 1, dupCount do
    local reserveKey = KEYS[dupKeys + k]
    local record = KEYS[dupKeys + dupCount + k]
    local quantity = tonumber(ARGV[dupBase + 3 * k - 2])
    local held = redis.call('HMGET', record, 'event', 'status', 'lines', 'line_epochs')
    if held[1] == ARGV[dupBase + 3 * k - 1] and held[2] == 'reserved' then
      local value = redis.call('GET', reserveKey)
      local made = value and string.match(value, '@(.*)$') or lineEpochOf(held[3], held[4], sku)
      if intactEpoch(made) then
        counted = counted + quantity
        local stamped = quantity .. '@' .. ARGV[8]
        if value then
          redis.call('SET', reserveKey, stamped, 'XX', 'KEEPTTL')
        else
          redis.call('SET', reserveKey, stamped, 'EX', math.max(tonumber(ARGV[dupBase + 3 * k]), 1))
        end
        restampOrder(record, biz, sku, ARGV[8])
      end
    end
  end
  if counted > 0 then
    redis.call('HINCRBY', item, 'used_stock_num', counted)
    if ARGV[4] ~= '1' then
      local left = redis.call('HINCRBY', item, 'stock_num', -counted)
      redis.call('HSET', item, 'is_sell_out', left <= 0 and '1' or '0')
    end
  end
end
-- The usage hash is rebuilt with the item: it counts what the rebuilt item counts, no more and no less.
fillMembers(KEYS[2], 'users', ARGV[11], 22 + codeCount + 2 * holdCount + 3 * dupCount, #ARGV - 1)
-- (No fence entry of this item has lapsed yet: lib/fence.lua halfLost.)
redis.call('HSET', item, 'mysql_version', ARGV[#ARGV], 'admin_lapsed', '0')
-- the item is whole only with its usage hash while it has counts (lib/items.lua)
redis.call('HSET', item, 'has_users', redis.call('EXISTS', KEYS[2]) == 1 and '1' or '0')
-- The three expire at one instant (lib/lifetime.lua).
expireTogether({KEYS[1], KEYS[2], KEYS[3]}, tonumber(ARGV[7]))
return {'ok'}
