-- reserve.lua: hold stock for one order, every item or none.
--
-- KEYS[1] order hash            KEYS[2] outbox stream        KEYS[3] expiry index (zset of orderIds)
-- then for each item i = 0..n-1:
--   KEYS[4+3i] item hash        KEYS[5+3i] reserve key       KEYS[6+3i] rollback key
-- then for each item i = 0..n-1: KEYS[4+3n+i] the item's per-user usage hash (see below)
-- then for each item i = 0..n-1: KEYS[4+4n+i] the item's set of usable codes (code pools, see below)
-- KEYS[4+5n] the order's shard's generation marker (see below)
-- ARGV[1] orderId   ARGV[2] request fingerprint   ARGV[3] bizId   ARGV[4] userId ('' if none)
-- ARGV[5] shortage mode: reject | partial | backorder | partial_part (partial, in one part of an order of several
--         parts on a cluster: holding nothing here is not refused, since other parts may hold; the caller refuses
--         the order when no part held anything)
-- ARGV[6] now (ms; '' = Redis TIME, lib/clock.lua)  ARGV[7] ttl (s)
-- ARGV[8] retention (s) that order and de-duplication keys outlive the hold
-- ARGV[9] failpoint ('' in production; 'after_deduct' lets tests stop the script between its two steps)
-- ARGV[10] item TTL (s): an item reserved with less than half of it left (or its usage hash or code set) gets it
--          back, the three at one instant (keep-warm, below); 0 = none
-- ARGV[11] '1' to dispense: hold and confirm at once (the order is confirmed; a reserve and a confirm event follow
--          each other in the outbox), '' for a plain hold
-- ARGV[12] '1' when the caller has asked the journal about this order already (see below), '2' when it has also
--          restored the order because its hash had vanished (below), '' otherwise
-- then for each item: ARGV[13+3i] skuId, ARGV[14+3i] quantity, ARGV[15+3i] the codes asked for ('c1|c2', or '')
--
-- Returns one of
--   {'ok', expiresAtMs, lines, eventId, epochs, codes, confirmEventId ('' unless dispensed)}
--                                         held now; lines = 'sku:requested:reserved,...'; eventId = outbox entry;
--                                         epochs = the held items' epochs, in the order of the event's items;
--                                         codes = the codes held, per line ('c1|c2,,c3'; '' when no item has a pool)
--   {'replay', status, expiresAtMs, lines, codes} same orderId and same body as before: what was decided then
--   {'conflict'}                          same orderId, different body
--   {'cancelled', status}                 the order was cancelled or expired first (no hanging reservation)
--   {'missing', 'i,j'}                    items (1-based) that are not in Redis
--   {'short', 'avail1,avail2,...'}        not enough stock; nothing was held
--   {'nouser', 'i,j'}                     items (1-based) with a per-user limit, and the order names no user
--   {'userlimit', 'i:limit:used,...'}     the user would get more than an item's per-user limit; nothing was held
--   {'pool', i, reason}                   item i's code pool is 'offline', 'expired' or (reusable) 'empty'; nothing
--                                         was held
--   {'code', i, code}                     a code asked for is not in item i's pool or not usable; nothing was held
--   {'vanished'}                          the order's hash is gone but a hold of it (its reserve key) is not: the
--                                         hash vanished alone (a DEL); restore the order from the journal and the
--                                         outbox, then run again with ARGV[12] = '2'
--   {'ask', 'marker' | 'journal'}         the order is not in Redis and Redis may have lost it: the shard's generation
--                                         marker is missing (make it), or younger than a retention period (ask the
--                                         journal about the order, then run again with ARGV[12] = '1')
--
-- Generation marker: Redis that lost data (FLUSHALL, a failover to a stale replica) has forgotten orders clients rely
-- on: a confirmed order whose retry must be answered from the journal, a cancel before any reserve that must keep
-- refusing. The marker holds the Redis time until which an order Redis does not know may be one it forgot; the
-- caller makes it (0 on a shard's first start, a retention period from now after a loss; see
-- Reservations.askJournal), and until then asks the journal before holding stock for an unknown order.
--
-- Per-user limits: an item with user_limit > 0 lets one user hold or buy at most that many units per window of
-- user_window seconds (0: over the item's life). Its usage hash maps userId -> 'window:units', window being
-- floor(now / user_window) (0 without a window); units of an earlier window count as 0, and such entries, or
-- entries back at 0 units, are deleted (lib/usage.lua). Checked and counted here, in the same script as the hold,
-- so concurrent requests of one user cannot exceed it; cancel, expiry and a
-- take-back give the units back while the window is the same (rollback.lua, undo_reserve.lua).
--
-- Code pools: an item with pool_kind set hands out codes with its units. one_time: the codes set holds the usable
-- codes and stock_num equals its size; a hold takes codes out of it (SPOP, or the ones asked for), cancel, expiry,
-- take-back and refund put them back, confirm keeps them out (used). reusable: the set holds every code; a hold
-- names distinct ones, one per unit up to the pool's size (SRANDMEMBER), and takes none out; stock is counted as for
-- any item. batch: the hold names the batch code once, whatever its quantity. The codes held are kept in the order hash ('codes', per line) and written into the outbox event.
--
-- The documented order: for each item, deduct first (stock_num -q, used_stock_num +q), then write the
-- reserve key. A script that fails between the two keeps the deduction without the key: stock leaks toward
-- under-selling, which the reconciler repairs, and never toward overselling.

-- Last key and argument, taken off first: the key of the drain check (its shard's mark; on a single Redis the drain
-- sequence) and this instance's floor of it (lib/floor.lua); below the floor the script answers {'behind'} and changes
-- nothing.
--!include clock
--!include items
--!include lifetime
--!include request
--!include usage
--!include integer
--!include floor

local behind = behindFloor()
if behind then return behind end

local order = KEYS[1]
local status = redis.call('HGET', order, 'status')
if status then
  if status == 'cancelled' or status == 'expired' then
    return {'cancelled', status}
  end
  local saved = redis.call('HMGET', order, 'fp', 'expires_at', 'lines', 'codes', 'biz')
  -- Another business's order (one kept under its bare orderId from before orders were scoped) is never this
  -- request's, whatever its fingerprint says.
  if not sameRequest(saved[1], ARGV[2]) or (saved[5] and saved[5] ~= '' and saved[5] ~= ARGV[3]) then
    return {'conflict'}
  end
  return {'replay', status, saved[2], saved[3], saved[4] or ''}
end

local now = clockNow(ARGV[6])
if ARGV[12] == '' then
  local trusted = redis.call('GET', KEYS[#KEYS])
  if not trusted then
    return {'ask', 'marker'}
  end
  if now < tonumber(trusted) then
    return {'ask', 'journal'}
  end
end
local ttl = tonumber(ARGV[7])
local retention = tonumber(ARGV[8])
local mode = ARGV[5]
local partOfSeveral = mode == 'partial_part'
if partOfSeveral then mode = 'partial' end
local n = (#ARGV - 12) / 3
local dispense = ARGV[11] == '1'
local itemTTL = tonumber(ARGV[10])

local user = ARGV[4]
local missing = {}
local nouser = {}
local limited = {}
local short = false
local anyGranted = false
local plan = {}
local askedCodes = {}
local availableList = {}
-- Counters are read once per item and written back once (one HSET of three fields instead of three calls);
-- the table also keeps a repeated item right, should a caller send one twice.
local counters = {}
for i = 0, n - 1 do
  local itemKey = KEYS[4 + 3 * i]
  -- The rollback key (a cancel came first) and, unless the order was restored just now, the reserve key (a hold
  -- whose order hash vanished) are looked for with one call; which of them is there is asked only when one is.
  if ARGV[12] == '2' then
    if redis.call('EXISTS', KEYS[6 + 3 * i]) == 1 then
      return {'cancelled', 'cancelled'}
    end
  elseif redis.call('EXISTS', KEYS[6 + 3 * i], KEYS[5 + 3 * i]) > 0 then
    if redis.call('EXISTS', KEYS[6 + 3 * i]) == 1 then
      return {'cancelled', 'cancelled'}
    end
    return {'vanished'}
  end
  local item = counters[itemKey]
  if not item then
    local fields = redis.call('HMGET', itemKey, 'stock_num', 'used_stock_num', 'is_infinite', 'backorder_limit',
      'epoch', 'user_limit', 'user_window', 'pool_kind', 'pool_status', 'pool_expires', 'pool_batch', 'codes_n',
      'has_users')
    if fields[1] and (codesGone(fields[8], fields[1], fields[12], KEYS[4 + 4 * n + i])
        or usersGone(fields[13], KEYS[4 + 3 * n + i])) then
      -- not whole without its codes or its users' counts (lib/items.lua): dropped, and rebuilt with them by the
      -- init path
      redis.call('DEL', itemKey)
      fields[1] = nil
    end
    if fields[1] then
      item = {stock = tonumber(fields[1]), used = tonumber(fields[2] or '0'), infinite = fields[3] == '1',
        limit = tonumber(fields[4] or '0'), epoch = fields[5] or '', userLimit = tonumber(fields[6] or '0'),
        pool = fields[8] or '', poolStatus = fields[9], poolExpires = tonumber(fields[10] or '0'), batch = fields[11]}
      item.left = item.stock
      if item.pool ~= '' then
        if item.poolStatus == 'offline' then
          return {'pool', i + 1, 'offline'}
        end
        if item.poolExpires > 0 and now >= item.poolExpires then
          return {'pool', i + 1, 'expired'}
        end
        item.codesKey = KEYS[4 + 4 * n + i]
        if item.pool == 'one_time' then
          -- a one-time pool can only hand out codes it has, whatever the counters say
          item.left = math.min(item.left, redis.call('SCARD', item.codesKey))
        elseif item.pool == 'reusable' and redis.call('SCARD', item.codesKey) == 0 then
          return {'pool', i + 1, 'empty'}
        end
      end
      if item.userLimit > 0 and user ~= '' then
        local window = tonumber(fields[7] or '0')
        item.window = window > 0 and math.floor(now / (window * 1000)) or 0
        item.usersKey = KEYS[4 + 3 * n + i]
        item.userUsed = usageUnits(item.usersKey, user, item.window)
        item.userLeft = item.userLimit - item.userUsed
        -- past windows' entries go before any write (lib/usage.lua); an emptied hash took has_users with it
        item.hasUsers = fields[13] == '1' and not pruneUsage(itemKey, item.usersKey, item.window)
      end
      counters[itemKey] = item
    end
  end
  local quantity = tonumber(ARGV[14 + 3 * i])
  local asked = ARGV[15 + 3 * i]
  if not item then
    missing[#missing + 1] = tostring(i + 1)
    availableList[#availableList + 1] = '0'
  else
    local stock = item.left
    local grant = quantity
    if asked ~= '' then
      local codes = {}
      for code in string.gmatch(asked, '[^|]+') do
        codes[#codes + 1] = code
        local usable
        if item.pool == 'batch' then
          usable = code == item.batch
        elseif item.pool ~= '' then
          usable = redis.call('SISMEMBER', item.codesKey, code) == 1
        end
        if not usable then
          return {'code', i + 1, code}
        end
      end
      askedCodes[i + 1] = codes
    end
    if not item.infinite or item.pool == 'one_time' then
      if mode == 'backorder' and item.pool ~= 'one_time' then
        if stock - quantity < -item.limit then
          short = true
        end
      elseif mode == 'partial' and asked == '' then
        if stock < quantity then
          grant = math.max(stock, 0)
        end
      elseif stock < quantity then
        short = true
      end
    end
    if item.userLimit > 0 then
      if user == '' then
        nouser[#nouser + 1] = tostring(i + 1)
      elseif grant > item.userLeft then
        if mode == 'partial' then
          grant = math.max(item.userLeft, 0)
        else
          limited[#limited + 1] = (i + 1) .. ':' .. item.userLimit .. ':' .. item.userUsed
        end
      end
      if item.userLeft then item.userLeft = item.userLeft - grant end
    end
    if not item.infinite then
      -- later lines of the same item see what earlier lines take
      item.left = stock - grant
    end
    if grant > 0 then anyGranted = true end
    plan[i + 1] = grant
    availableList[#availableList + 1] = int(math.max(stock, 0))
  end
end
if #missing > 0 then
  return {'missing', table.concat(missing, ',')}
end
if #nouser > 0 then
  return {'nouser', table.concat(nouser, ',')}
end
if #limited > 0 then
  return {'userlimit', table.concat(limited, ',')}
end
if short then
  return {'short', table.concat(availableList, ',')}
end
if not anyGranted and not partOfSeveral then
  -- partial: nothing left, either in stock or in the user's allowance
  for i = 0, n - 1 do
    local item = counters[KEYS[4 + 3 * i]]
    if item.userLeft and item.userLeft <= 0 then
      limited[#limited + 1] = (i + 1) .. ':' .. item.userLimit .. ':' .. item.userUsed
    end
  end
  if #limited > 0 then
    return {'userlimit', table.concat(limited, ',')}
  end
  return {'short', table.concat(availableList, ',')}
end

-- An item held whose hash, usage hash or code set has less than half the item TTL left (or none) gets it back, the
-- three at one instant (lib/lifetime.lua), once per script (keep-warm). Each key decided on its own would let a
-- companion renewed a moment before its item's turn (or after it) expire half a TTL apart from it: the item would
-- then not be whole, and be rebuilt (lib/items.lua).
local warmed = {}
-- Whether a key has less than half the item TTL left, or none (a key that is not there has nothing to renew).
local function runsLow(key)
  local left = redis.call('PTTL', key)
  return left == -1 or (left >= 0 and left < itemTTL * 500)
end
local function keepWarm(i, item)
  local itemKey = KEYS[4 + 3 * i]
  if itemTTL == 0 or warmed[itemKey] then return end
  warmed[itemKey] = true
  if runsLow(itemKey) or (item.usersKey and runsLow(item.usersKey)) or (item.pool ~= '' and runsLow(item.codesKey)) then
    expireTogether({itemKey, KEYS[4 + 3 * n + i], KEYS[4 + 4 * n + i]}, itemTTL)
  end
end

local keepText = int(ttl + retention)
local lines = {}
local events = {}
local lineCodes = {}
local lineEpochs = {}
local eventCodes = {}
local anyCodes = false
local epochs = {}
local applied = {}
for i = 0, n - 1 do
  local itemKey = KEYS[4 + 3 * i]
  local grant = plan[i + 1]
  local sku = ARGV[13 + 3 * i]
  local held = ''
  if grant > 0 then
    -- step 1: deduct
    local item = counters[itemKey]
    local current = applied[itemKey] or {stock = item.stock, used = item.used}
    if not item.infinite then
      current.stock = current.stock - grant
    end
    current.used = current.used + grant
    applied[itemKey] = current
    redis.call('HSET', itemKey, 'stock_num', int(current.stock), 'used_stock_num', int(current.used),
      'is_sell_out', (not item.infinite and current.stock <= 0) and '1' or '0')
    if ARGV[9] == 'after_deduct' then
      error('failpoint after_deduct')
    end
    -- step 2: the reserve key, with the epoch of the item it holds in (lib/items.lua)
    redis.call('SET', KEYS[5 + 3 * i], holdValue(int(grant), item.epoch), 'EX', keepText)
    if item.usersKey then
      item.userUsed = item.userUsed + grant
      setUsage(itemKey, item.usersKey, user, item.window, item.userUsed)
      if not item.hasUsers then
        -- from now on the item is not whole without its usage hash (lib/items.lua)
        redis.call('HSET', itemKey, 'has_users', '1')
        item.hasUsers = true
      end
    end
    if item.pool ~= '' then
      anyCodes = true
      local codes = askedCodes[i + 1] or {}
      if #codes > 0 then
        -- a hold cut short (a partial hold within the user's allowance) takes the first codes it holds, no more
        if #codes > grant then codes = {unpack(codes, 1, grant)} end
        if item.pool == 'one_time' and #codes > 0 then redis.call('SREM', item.codesKey, unpack(codes)) end
      elseif item.pool == 'one_time' then
        codes = redis.call('SPOP', item.codesKey, grant)
      elseif item.pool == 'reusable' then
        -- a reusable code is never used up: the hold names distinct codes, one per unit up to the pool's size, not
        -- one copy per unit (the work of a hold is bounded by the pool, whatever the quantity)
        codes = redis.call('SRANDMEMBER', item.codesKey, grant)
      else
        -- a batch pool's code is one value, whatever the quantity
        codes = {item.batch or ''}
      end
      held = table.concat(codes, '|')
    end
    keepWarm(i, item)
    events[#events + 1] = sku .. ':' .. int(grant)
    epochs[#epochs + 1] = item.epoch
    eventCodes[#eventCodes + 1] = held
  end
  lineEpochs[#lineEpochs + 1] = grant > 0 and counters[itemKey].epoch or ''
  lineCodes[#lineCodes + 1] = held
  lines[#lines + 1] = sku .. ':' .. ARGV[14 + 3 * i] .. ':' .. int(grant)
end

local expiresAtMs = now + ttl * 1000
local expiresAt = int(expiresAtMs)
local nowText = int(now)
local linesText = table.concat(lines, ',')
local epochsText = table.concat(epochs, ',')
local event = {'type', 'reserve', 'order', ARGV[1], 'biz', ARGV[3], 'user', ARGV[4], 'items',
  table.concat(events, ','), 'epochs', epochsText, 'expires_at', expiresAt, 'at', nowText, 'fp', ARGV[2]}
local codesText = ''
if anyCodes then
  codesText = table.concat(lineCodes, ',')
  event[#event + 1] = 'codes'
  event[#event + 1] = table.concat(eventCodes, ',')
  redis.call('HSET', order, 'codes', codesText)
end
local eventId = redis.call('XADD', KEYS[2], '*', unpack(event))
redis.call('HSET', order, 'status', 'reserved', 'fp', ARGV[2], 'biz', ARGV[3], 'user', ARGV[4],
  'lines', linesText, 'line_epochs', table.concat(lineEpochs, ','), 'expires_at', expiresAt, 'created_at', nowText,
  'event', eventId)
redis.call('EXPIRE', order, keepText)
if not dispense then
  redis.call('ZADD', KEYS[3], expiresAt, ARGV[1])
  return {'ok', expiresAtMs, linesText, eventId, epochsText, codesText, ''}
end
-- Dispense: the hold is sold at once, as confirm.lua would sell it (used_stock_num -q, confirmed_unapplied +q;
-- an infinite item's on-hand stock_num -q, the hold having taken nothing from it; a one-time pool's codes stay out,
-- used).
for itemKey, current in pairs(applied) do
  local sold = current.used - counters[itemKey].used
  if sold > 0 then
    redis.call('HINCRBY', itemKey, 'used_stock_num', int(-sold))
    redis.call('HINCRBY', itemKey, 'confirmed_unapplied', sold)
    if counters[itemKey].infinite then
      redis.call('HINCRBY', itemKey, 'stock_num', int(-sold))
    end
  end
end
local confirmId = redis.call('XADD', KEYS[2], '*', 'type', 'confirm', 'order', ARGV[1], 'biz', ARGV[3],
  'items', table.concat(events, ','), 'epochs', epochsText, 'at', nowText)
redis.call('HSET', order, 'status', 'confirmed', 'transition_event', confirmId)
return {'ok', expiresAtMs, linesText, eventId, epochsText, codesText, confirmId}
