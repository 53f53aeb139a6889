#!lua flags=allow-oom
-- rollback.lua: give an order's held stock back (cancel, or expiry by the sweeper).
--
-- KEYS[1] order hash   KEYS[2] outbox stream   KEYS[3] expiry index
-- then for each item i = 0..n-1: KEYS[4+3i] item hash, KEYS[5+3i] reserve key, KEYS[6+3i] rollback key
-- then for each item i = 0..n-1: KEYS[4+3n+i] the item's per-user usage hash
-- then for each item i = 0..n-1: KEYS[4+4n+i] the item's set of usable codes (code pools)
-- ARGV[1] orderId   ARGV[2] reason: cancelled | expired   ARGV[3] now (ms; '' = Redis TIME, lib/clock.lua)   ARGV[4] retention (s)
-- ARGV[5] failpoint ('' in production; 'after_rollback_key' stops between the two steps)
-- ARGV[6] the order's lines as the caller read them ('' when the caller found no order)
-- ARGV[7] '1' when the expiry was decided already (Redis Cluster: the order's directory decided it against its
-- deadline, and each part follows, whatever its own expires_at says: a part held later, or written by a node whose
-- clock is behind, has a later one); '' to check the deadline here
-- ARGV[8] '1' when the caller knows the order (Redis Cluster: a part its directory names, recorded cancelled to fence
-- a part reserve still on its way): recorded also while Redis is full, bounded by the directory's parts
--
-- Returns one of
--   {'ok', status, lines, eventId}
--                              released now; eventId = the outbox entry (also kept as the order's
--                              `transition_event`, for sync mode's replays)
--   {'replay', status}         already cancelled or expired
--   {'empty', eventId}         the order never reserved (the caller found none either): recorded as cancelled so
--                              a later reserve is refused; its outbox event becomes a tombstone in MySQL, which
--                              keeps refusing after Redis lost the order (reserve.lua, generation marker)
--   {'gone'}                   expiry of an order that no longer exists: nothing to do
--   {'confirmed', status}      confirmed or refunded orders are not rolled back
--   {'notexpired'}             an expiry that arrived before the hold's deadline
--   {'stale'}                  the caller's view of the order is out of date (its lines changed, or it is gone):
--                              read again and retry
--   {'missing', 'i,j'}         items (1-based) not whole in Redis: rebuild them, then run again (lib/items.lua)
--
-- The documented order: for each item, write the rollback key first, then restore the stock and drop the
-- reserve key. Stopping in between leaves the hold in place with the key written: the order can no longer be
-- reserved again (no hanging), and the reconciler or a retry of the rollback restores the stock once, because
-- restoring depends on the reserve key that only the restore deletes.

-- Last key and argument, taken off first: the key of the drain check (its shard's mark; on a single Redis the drain
-- sequence) and this instance's floor of it (lib/floor.lua); below the floor the script answers {'behind'} and changes
-- nothing.
--!include clock
--!include usage
--!include give_back
--!include items
--!include integer
--!include floor
--!include full

local behind = behindFloor()
if behind then return behind end

local order = KEYS[1]
local reason = ARGV[2]
local now = clockNow(ARGV[3])
local retention = tonumber(ARGV[4])
local fields = redis.call('HMGET', order, 'status', 'lines', 'expires_at', 'biz', 'user', 'created_at', 'restored',
  'codes', 'line_epochs')
local status = fields[1]
local user = fields[5] or ''
local createdAt = tonumber(fields[6] or '0') or 0
local restored = fields[7] == '1'


-- An expiry that finds nothing left to expire clears the index entry, so the sweeper does not see it again.
if reason == 'expired' and status ~= 'reserved' then
  redis.call('ZREM', KEYS[3], ARGV[1])
end
if not status then
  if reason == 'expired' then
    return {'gone'}
  end
  if ARGV[6] ~= '' then
    -- The caller read the order with its lines and it is gone now (Redis lost its data in between): not a cancel
    -- before any reserve. Read again: the order comes back from the journal, or is truly unknown.
    return {'stale'}
  end
  -- A record of an order never seen, not a settling of a hold: refused while Redis is full (lib/full.lua).
  if ARGV[8] ~= '1' and redisFull() then return fullError() end
  redis.call('HSET', order, 'status', 'cancelled', 'lines', '', 'empty', '1', 'created_at', now)
  redis.call('EXPIRE', order, retention)
  local id = redis.call('XADD', KEYS[2], '*', 'type', 'cancel', 'order', ARGV[1], 'biz', '', 'items', '', 'at', now)
  return {'empty', id}
end
if status == 'cancelled' or status == 'expired' then
  return {'replay', status}
end
if status ~= 'reserved' then
  return {'confirmed', status}
end
if reason == 'expired' and ARGV[7] ~= '1' and tonumber(fields[3]) > now then
  return {'notexpired'}
end
if fields[2] ~= ARGV[6] then
  return {'stale'}
end

local n = (#KEYS - 3) / 5
local itemKeys = {}
for i = 0, n - 1 do itemKeys[i + 1] = KEYS[4 + 3 * i] end
local codesKeys = {}
for i = 0, n - 1 do codesKeys[i + 1] = KEYS[4 + 4 * n + i] end
local usersKeys = {}
for i = 0, n - 1 do usersKeys[i + 1] = KEYS[4 + 3 * n + i] end
local missing = missingItems(itemKeys, codesKeys, usersKeys)
if missing then
  return missing
end
local heldCodes = splitLines(fields[8])
local reservedLines, lineEpochs = orderLines(fields[2], fields[9])
local events = {}
local epochs = {}
for i = 0, n - 1 do
  local itemKey = KEYS[4 + 3 * i]
  local reserveKey = KEYS[5 + 3 * i]
  local itemEpoch = redis.call('HMGET', itemKey, 'epoch', 'absorbed')
  local epoch = itemEpoch[1] or ''
  epochs[#epochs + 1] = epoch
  -- step 1: the rollback key
  redis.call('SET', KEYS[6 + 3 * i], '1', 'EX', retention)
  if ARGV[5] == 'after_rollback_key' then
    error('failpoint after_rollback_key')
  end
  -- step 2: restore what this item's reserve key says was held, and drop the key. A hold of an earlier epoch of
  -- the item is not counted in it (lib/items.lua): nothing to restore.
  local held, counted = holdIn(reserveKey, epoch, reservedLines[i + 1], lineEpochs and lineEpochs[i + 1], itemEpoch[2])
  if not counted then
    redis.call('DEL', reserveKey)
    held = 0
  end
  if held > 0 then
    if redis.call('HGET', itemKey, 'is_infinite') == '1' then
      redis.call('HINCRBY', itemKey, 'used_stock_num', int(-held))
    else
      local left = redis.call('HINCRBY', itemKey, 'stock_num', held)
      redis.call('HINCRBY', itemKey, 'used_stock_num', int(-held))
      redis.call('HSET', itemKey, 'is_sell_out', left <= 0 and '1' or '0')
    end
    redis.call('DEL', reserveKey)
    giveBackUser(itemKey, KEYS[4 + 3 * n + i], user, createdAt, restored, held, now)
    giveBackCodes(itemKey, KEYS[4 + 4 * n + i], heldCodes[i + 1])
  end
  local sku = string.match(itemKey, ':(%d+)}?:item$')
  events[#events + 1] = (sku or '?') .. ':' .. held
end

redis.call('ZREM', KEYS[3], ARGV[1])
local id = redis.call('XADD', KEYS[2], '*', 'type', reason == 'expired' and 'expire' or 'cancel', 'order', ARGV[1],
  'biz', fields[4] or '', 'items', table.concat(events, ','), 'epochs', table.concat(epochs, ','), 'at', now)
redis.call('HSET', order, 'status', reason, 'transition_event', id)
redis.call('EXPIRE', order, retention)
return {'ok', reason, fields[2], id}
