-- set_stock.lua: set an item's on-hand stock (available + reserved) and its settings.
--
-- KEYS[1] item hash   KEYS[2] its per-user usage hash   KEYS[3] its code set (they live as long as the item: a usage
-- hash that expired while its item lives would reset a lifetime limit, a code set would leave a pool without codes)
-- ARGV[1] on-hand stock   ARGV[2] infinite: '' unchanged | '0' | '1'
-- ARGV[3] danger_num ('' unchanged)   ARGV[4] backorder_limit ('' unchanged)   ARGV[5] key ttl (s), 0 = none
-- ARGV[6] unused (was the epoch of an item this created: a missing item is rebuilt from MySQL instead)
-- ARGV[7] user_limit: units per user, 0 = none ('' unchanged)   ARGV[8] user_window (s), 0 = the item's life
-- ('' unchanged); see reserve.lua
--
-- Returns one of
--   {'missing', '1'}                  the item is not whole in Redis: rebuild it from MySQL (a new item gets its
--                                     row first), then run again (lib/items.lua)
--   {'ok', delta, token, before}      on-hand moved by delta (what MySQL must add too); token = the half's
--                                     ('mark@ms', lib/fence.lua), which an undo of this change and the close of its
--                                     fence name (undo_stock.lua, admin_done.lua); before = the settings this
--                                     changed ('field=old>new,...'), which the undo puts back where they are
--                                     still what this change wrote
--   {'below_reserved', reserved}      on-hand may not go below what live reservations hold
--   {'codes'}                         the item has a one-time code pool: its stock is its codes (upload codes)
--   {'busy'}                          another stock change's half of the item is under way (lib/fence.lua): nothing
--                                     is changed; run again once it is done
--
--   {'stale'}                         the item has a half nobody closed (lib/fence.lua, the stale list): nothing is
--                                     changed; the caller drops the item, rebuilds it from MySQL (which leaves out
--                                     whatever of the half MySQL has not got) and runs this again
--
-- The change's MySQL half follows: the item is fenced from the reconciler's repair until it is done (lib/fence.lua).
--
-- Reservations move stock between stock_num and used_stock_num without changing on-hand, so the change is a
-- delta that commutes with them and with the worker's confirm deductions in MySQL.

-- Last key and argument, taken off first: the key of the drain check (its shard's mark; on a single Redis the drain
-- sequence) and this instance's floor of it (lib/floor.lua); below the floor the script answers {'behind'} and changes
-- nothing.
--!include clock
--!include lifetime
--!include fence
--!include floor

local behind = behindFloor()
if behind then return behind end

local item = KEYS[1]
local onHand = tonumber(ARGV[1])
local ttl = tonumber(ARGV[5])
local current = redis.call('HMGET', item, 'stock_num', 'used_stock_num', 'pool_kind', 'epoch', 'repairs', 'is_infinite')
if current[3] == 'one_time' then
  return {'codes'}
end

-- Writes the settings asked for; returns what it changed ('field=old>new,...').
local function settings()
  local before = {}
  for _, setting in ipairs({{'is_infinite', ARGV[2]}, {'danger_num', ARGV[3]}, {'backorder_limit', ARGV[4]},
      {'user_limit', ARGV[7]}, {'user_window', ARGV[8]}}) do
    if setting[2] ~= '' then
      before[#before + 1] = setting[1] .. '=' .. (redis.call('HGET', item, setting[1]) or '0') .. '>' .. setting[2]
      redis.call('HSET', item, setting[1], setting[2])
    end
  end
  if ttl > 0 then
    expireTogether(KEYS, ttl)
  end
  return table.concat(before, ',')
end

if not current[1] then
  return {'missing', '1'}
end
local now = clockNow('')
-- Another change's half is under way: MySQL may yet refuse it and Redis take it back, and an on-hand read now would
-- count it. The caller runs this again shortly (StockAdministration).
if fenced(item, now) then
  return {'busy'}
end
-- A half nobody closed may be in Redis and not in MySQL (lib/fence.lua, the stale list): a delta from the on-hand
-- read now would leave MySQL short by it, and the reconciler would then bring Redis to MySQL's count, not to this
-- PUT's. The caller drops the item instead, rebuilds it from MySQL, and runs this again.
if hasStaleHalf(item, now) then
  return {'stale'}
end

local used = tonumber(current[2] or '0')
-- An infinite item's stock_num is its on-hand stock (a hold moves only used_stock_num, reserve.lua); a finite item's
-- is what is left to sell. The delta is between on-hand stocks, each read as its item counts it.
local infiniteNow = current[6] == '1'
local infiniteAfter = ARGV[2] == '1' or (ARGV[2] == '' and infiniteNow)
-- (An infinite item sells whatever is held: its on-hand stock may be below it.)
if onHand < used and not infiniteAfter then
  return {'below_reserved', used}
end
local stock = tonumber(current[1])
local onHandNow = infiniteNow and stock or stock + used
local left = infiniteAfter and onHand or onHand - used
redis.call('HSET', item, 'stock_num', left, 'is_sell_out', (not infiniteAfter and left <= 0) and '1' or '0')
local at = openFence(item, now)
local before = settings()
return {'ok', onHand - onHandNow, itemMark(current[4], current[5]) .. '@' .. at, before}
