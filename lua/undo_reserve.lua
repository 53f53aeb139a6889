#!lua flags=allow-oom
-- undo_reserve.lua: take back a hold whose journal row must not exist: a sync reserve whose journal commit failed,
-- or a reserve the worker found duplicating a journal row of an earlier reserve of the order (Redis had lost it).
--
-- KEYS[1] order hash   KEYS[2] outbox stream   KEYS[3] expiry index   KEYS[4] undone marker of this reserve event
-- KEYS[5] undone marker of the earlier reserve event whose journal row this one duplicates; KEYS[4] again when there
-- is none (a sync reserve whose commit failed, a cluster part taken back)
-- then for each line i = 0..n-1: KEYS[6+2i] item hash, KEYS[7+2i] reserve key
-- then for each line i = 0..n-1: KEYS[6+2n+i] the item's per-user usage hash
-- then for each line i = 0..n-1: KEYS[6+3n+i] the item's set of usable codes (code pools)
-- ARGV[1] orderId   ARGV[2] the reserve's outbox event id   ARGV[3] now (ms; '' = Redis TIME, lib/clock.lua)
-- ARGV[4] retention (s)
-- then for each line: ARGV[5+i] the quantity the reserve event held
-- then for each line: ARGV[5+n+i] the quantity the earlier reserve event's journal row holds of it (0 for none, or when
-- no earlier event is named)
-- then for each line: ARGV[5+2n+i] the codes that row holds ('c1|c2'; '' for none)
-- then for each line: ARGV[5+3n+i] when that row was reserved (ms; '' when unknown): the per-user window it counted in
-- then for each line: ARGV[5+4n+i] the epoch of its item the reserve event held the line in, as the event records it
-- ('' when the caller does not know it)
-- then ARGV[5+5n] the earlier reserve event ('' for none)
--
-- Returns
--   {'ok'}       the order was still that reservation: its stock is back, the order hash is deleted (so the
--                caller may retry the same orderId), and an undo event tells the worker to remove the journal row
--                that reserve event created, if any
--   {'settled'}  the order went on with that hold (confirmed, cancelled, expired) before it could be taken back: the
--                journal keeps the earlier row and applies the order's later events to it, so the item hands back
--                the one hold too many it counts (used_stock_num −q, stock_num +q): the earlier hold, which a
--                rebuild from the journal counted (the caller names the earlier event only while its journal row is
--                live: an earlier order that ended is counted by no item): as much of each line as its journal row
--                holds (a partial order's lines may differ from this hold's, and a line it held none of has no
--                earlier hold), with the one-time codes it took out of the set; and an 'adopt' event tells the worker
--                that the journal row holds this hold from now on, its quantities and codes (the ones its client was
--                told). Unless the earlier hold was itself taken back in Redis (its
--                marker exists): then this hold is the only one counted, and nothing is handed back. With no earlier
--                event nothing is handed back either: the cancel or expiry that settled the order gave this hold
--                back already, or the confirm sold it. The order stays
--   {'missing', 'i,j'}  items (1-based) not whole in Redis: rebuild them, then run again (lib/items.lua)
--   {'gone'}     the order is another reservation now (or none), or this was done before: nothing is touched
--
-- A hold whose reserve key vanished alone is given back as its order's record says (the event's quantity, the line's
-- epoch: lib/items.lua, holdIn), as a cancel would.
--
-- The marker records that the event was taken back, once: a retry of this script changes nothing, and a sync reserve
-- that meets the event's journal row knows the row is about to be removed (see InventoryEngine.commitJournal). Its
-- value says what became of the hold: '1' taken back (an undo event removes the rows it made), 'handed' its order went
-- on with it and the item handed back the earlier hold in its place (rows of its own stay), 'kept' its order went on
-- with it and nothing was handed back (lua/snapshot.lua and OrderReader.wasTakenBack read it).

-- Last key and argument, taken off first: the key of the drain check (its shard's mark; on a single Redis the drain
-- sequence) and this instance's floor of it (lib/floor.lua); below the floor the script answers {'behind'} and changes
-- nothing.
--!include clock
--!include usage
--!include give_back
--!include items
--!include integer
--!include floor

local behind = behindFloor()
if behind then return behind end

local order = KEYS[1]
local fields = redis.call('HMGET', order, 'status', 'event', 'biz', 'user', 'created_at', 'restored', 'codes',
  'line_epochs')
if fields[2] ~= ARGV[2] then
  return {'gone'}
end
local n = (#KEYS - 5) / 4
if redis.call('EXISTS', KEYS[4]) == 1 then
  return {'gone'}
end
local itemKeys = {}
for i = 0, n - 1 do itemKeys[i + 1] = KEYS[6 + 2 * i] end
local codesKeys = {}
for i = 0, n - 1 do codesKeys[i + 1] = KEYS[6 + 3 * n + i] end
local usersKeys = {}
for i = 0, n - 1 do usersKeys[i + 1] = KEYS[6 + 2 * n + i] end
local missing = missingItems(itemKeys, codesKeys, usersKeys)
if missing then
  return missing
end
redis.call('SET', KEYS[4], '1', 'EX', tonumber(ARGV[4]))
local now = clockNow(ARGV[3])
local user = fields[4] or ''
local createdAt = tonumber(fields[5] or '0') or 0
local restored = fields[6] == '1'
-- The order's codes and line epochs are per line of the order; the lines here are the reserve event's (held lines
-- only), so they are matched by skuId through the order's lines. The epoch a line was held in is the hold's account
-- when its reserve key vanished alone (lib/items.lua: holdIn); nil for an order written before orders kept them.
local heldCodes = {}
local heldEpochs = {}
local recorded = {}
do
  local codesBySku = {}
  local epochsBySku = {}
  local lineBySku = {}
  local lines = redis.call('HGET', order, 'lines') or ''
  local codeList = splitLines(fields[7])
  local epochList = fields[8] and splitLines(fields[8])
  local k = 0
  for sku in string.gmatch(lines, '(%d+):%d+:%d+') do
    k = k + 1
    lineBySku[sku] = true
    codesBySku[sku] = codeList[k]
    if epochList then epochsBySku[sku] = epochList[k] end
  end
  for i = 0, n - 1 do
    local sku = string.match(KEYS[6 + 2 * i], ':(%d+)}?:item$') or ''
    heldCodes[i + 1] = codesBySku[sku]
    heldEpochs[i + 1] = epochsBySku[sku]
    recorded[i + 1] = lineBySku[sku] == true
  end
end


local function giveBack(itemKey, quantity)
  if redis.call('HGET', itemKey, 'is_infinite') == '1' then
    redis.call('HINCRBY', itemKey, 'used_stock_num', int(-quantity))
  else
    local left = redis.call('HINCRBY', itemKey, 'stock_num', quantity)
    redis.call('HINCRBY', itemKey, 'used_stock_num', int(-quantity))
    redis.call('HSET', itemKey, 'is_sell_out', left <= 0 and '1' or '0')
  end
end

if fields[1] ~= 'reserved' then
  if KEYS[5] == KEYS[4] or redis.call('EXISTS', KEYS[5]) == 1 then
    -- Nothing handed back: the item counts this hold until its order's events release it (the reconciler counts it
    -- in flight while its reserve entry is there: the marker says so, lua/snapshot.lua).
    redis.call('SET', KEYS[4], 'kept', 'EX', tonumber(ARGV[4]))
  else
    local lines = {}
    local codes = {}
    local epochs = {}
    -- The item counts the earlier hold beside this one only while it was not rebuilt since this hold was made (a
    -- rebuild counts the journal's RESERVED rows once, and re-stamps the order's holds into its new epoch, so the
    -- order's own record of its epochs cannot tell): the epoch the reserve event says, or nothing is handed back
    -- (erring toward selling less, never more).
    redis.call('SET', KEYS[4], 'handed', 'EX', tonumber(ARGV[4]))
    for i = 0, n - 1 do
      local itemKey = KEYS[6 + 2 * i]
      local earlier = tonumber(ARGV[5 + n + i] or '0') or 0
      if (ARGV[5 + 4 * n + i] or '') ~= (redis.call('HGET', itemKey, 'epoch') or '') then
        earlier = 0
      end
      if earlier > 0 then
        giveBack(itemKey, earlier)
        local earlierAt = tonumber(ARGV[5 + 3 * n + i] or '')
        giveBackUser(itemKey, KEYS[6 + 2 * n + i], user, earlierAt or 0, earlierAt == nil, earlier, now)
        giveBackCodes(itemKey, KEYS[6 + 3 * n + i], ARGV[5 + 2 * n + i] or '')
      end
      lines[#lines + 1] = (string.match(itemKey, ':(%d+)}?:item$') or '?') .. ':' .. (ARGV[5 + i] or '0')
      codes[#codes + 1] = heldCodes[i + 1] or ''
      epochs[#epochs + 1] = redis.call('HGET', itemKey, 'epoch') or ''
    end
    redis.call('XADD', KEYS[2], '*', 'type', 'adopt', 'order', ARGV[1], 'biz', fields[3] or '',
      'items', table.concat(lines, ','), 'epochs', table.concat(epochs, ','), 'codes', table.concat(codes, ','),
      'reserve_event', ARGV[5 + 5 * n] or '', 'at', now)
  end
  return {'settled'}
end

local events = {}
local epochs = {}
for i = 0, n - 1 do
  local itemKey = KEYS[6 + 2 * i]
  local reserveKey = KEYS[7 + 2 * i]
  local itemEpoch = redis.call('HMGET', itemKey, 'epoch', 'absorbed')
  local epoch = itemEpoch[1] or ''
  epochs[#epochs + 1] = epoch
  -- The reserve key is the order's on the item, shared with the earlier reserve this one duplicates: a rebuild since
  -- this hold (the item is no longer in the epoch the event held the line in) counted the earlier reserve's live
  -- journal row and re-stamped the key as that hold, which is not this one's to give back: the key stays. (Only on a
  -- line the earlier row holds: a line it held none of has a row of this reserve's own, which the rebuild counted.)
  local eventEpoch = ARGV[5 + 4 * n + i] or ''
  local sharedWithEarlier = KEYS[5] ~= KEYS[4] and (tonumber(ARGV[5 + n + i] or '0') or 0) > 0
  local held, counted = 0, true
  if not sharedWithEarlier or eventEpoch == '' or eventEpoch == epoch then
    -- a hold of an earlier epoch is not in the item (lib/items.lua): nothing to give back. Without its reserve key
    -- the event's quantity and the order's record of the line stand for it.
    held, counted = holdIn(reserveKey, epoch, recorded[i + 1] and tonumber(ARGV[5 + i] or '0') or nil,
      heldEpochs[i + 1], itemEpoch[2])
  end
  if not counted then
    redis.call('DEL', reserveKey)
    held = 0
  end
  if held > 0 then
    giveBack(itemKey, held)
    redis.call('DEL', reserveKey)
    giveBackUser(itemKey, KEYS[6 + 2 * n + i], user, createdAt, restored, held, now)
    giveBackCodes(itemKey, KEYS[6 + 3 * n + i], heldCodes[i + 1])
  end
  local sku = string.match(itemKey, ':(%d+)}?:item$')
  events[#events + 1] = (sku or '?') .. ':' .. held
end
redis.call('DEL', order)
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('XADD', KEYS[2], '*', 'type', 'undo', 'order', ARGV[1], 'biz', fields[3] or '',
  'items', table.concat(events, ','), 'epochs', table.concat(epochs, ','), 'reserve_event', ARGV[2],
  'at', now)
return {'ok'}
