-- adjust_stock.lua: add or remove on-hand stock (inbound, damage) once per adjustment id.
--
-- KEYS[1] item hash   KEYS[2] adjustment key
-- ARGV[1] delta   ARGV[2] fingerprint of the request (delta and reason)   ARGV[3] retention (s) of the key
--
-- Returns one of
--   {'ok', available, reserved, token} applied now (token: its half's, 'mark@ms', lib/fence.lua, which an undo
--                                     of it, the close of its fence and unsettle.lua name; also the half's name,
--                                     which its MySQL half records in the ledger)
--   {'replay', available, reserved}   this adjustment id was applied before with the same body
--   {'conflict'}                      this adjustment id was used with another body
--   {'missing'}                       the item is not in Redis
--   {'below_reserved', available, reserved}  removing that much would leave less on hand than is reserved
--   {'codes'}                         the item has a one-time code pool: its stock is its codes (upload codes)
--   {'unsettled', available, reserved, token, half}  an earlier attempt's Redis half is still in the item and
--                                     MySQL's outcome of it is not known (the attempt ended without learning it, or
--                                     died more than a fence's lifetime ago): the caller completes the MySQL half,
--                                     which the ledger makes happen once; the half is this retry's from now on
--                                     (token), and keeps its name (half: 'mark@ms' of its making; '' when its key is
--                                     from before halves had names): MySQL's ledger may have it under that name from
--                                     the earlier attempt, or another half of the adjustment, which makes this one a
--                                     surplus (StockAdministration)
--   {'busy'}                          an earlier attempt's Redis half was made less than a fence's lifetime ago and
--                                     its MySQL half may still be under way: retry later
--
-- The caller asked MySQL's ledger first: it is called only when the ledger has no such adjustment. The adjustment key
-- is written with the change, in one script: a replay can never apply it twice. Until the MySQL half is known done
-- the key also names the mark of the item the half was made in (lib/fence.lua): a retry applies the change afresh
-- when the item no longer has that mark (rebuilt or repaired from MySQL, which did not have it), and completes only
-- the MySQL half when it does. The item is fenced from the reconciler's repair until the MySQL half is done.
--
-- ARGV[4] now (ms; '' = Redis TIME, lib/clock.lua)

-- Last key and argument, taken off first: the key of the drain check (its shard's mark; on a single Redis the drain
-- sequence) and this instance's floor of it (lib/floor.lua); below the floor the script answers {'behind'} and changes
-- nothing.
--!include clock
--!include fence
--!include floor

local behind = behindFloor()
if behind then return behind end

local item = KEYS[1]
local saved = redis.call('GET', KEYS[2])
local current = redis.call('HMGET', item, 'stock_num', 'used_stock_num', 'pool_kind', 'epoch', 'repairs', 'is_infinite')
if current[3] == 'one_time' then
  return {'codes'}
end
local mark = itemMark(current[4], current[5])
local now = clockNow(ARGV[4])
if saved then
  local key = adjustmentState(saved)
  if key.fingerprint ~= ARGV[2] then
    return {'conflict'}
  end
  if not key.mark then
    return {'replay', current[1] or '0', current[2] or '0'}
  end
  if key.mark == '' then
    -- a key from before marks: its half taken to be in the item, as then
    return {'unsettled', current[1] or '0', current[2] or '0', '', ''}
  end
  if current[1] and key.mark == mark then
    if not key.unsettled and now - key.at < FENCE_MS then
      return {'busy'}
    end
    -- Taken over: the key names this retry's time from now on, so the earlier attempt (a reversal of it stored as a
    -- task, a late failure) no longer acts on the half this retry completes; the half is fenced anew for the MySQL
    -- half to come (the earlier attempt's fence lapsed, or was left to lapse).
    -- (Its time is never the earlier owner's nor the half's making: a takeover in the millisecond of either would
    -- leave two attempts one token.)
    local taken = openFence(item, math.max(now, key.at + 1, key.made and tonumber(key.made) + 1 or 0))
    closeFence(item, key.at, now)
    redis.call('SET', KEYS[2], adjustmentValue('pending', mark, taken, key.made, ARGV[2]), 'KEEPTTL')
    return {'unsettled', current[1], current[2] or '0', mark .. '@' .. taken, key.unnamed and '' or key.half}
  end
  -- The half is not in the item any more (rebuilt or repaired from MySQL, which did not have it): made afresh below.
end
if not current[1] then
  return {'missing'}
end
local delta = tonumber(ARGV[1])
local stock = tonumber(current[1])
if delta < 0 and stock + delta < 0 then
  return {'below_reserved', stock, current[2]}
end
local left = redis.call('HINCRBY', item, 'stock_num', delta)
redis.call('HSET', item, 'is_sell_out', (current[6] ~= '1' and left <= 0) and '1' or '0')
local at = openFence(item, now)
redis.call('SET', KEYS[2], adjustmentValue('pending', mark, at, at, ARGV[2]), 'EX', tonumber(ARGV[3]))
return {'ok', left, current[2], mark .. '@' .. at}
