-- adjust_stock.lua: add or remove on-hand stock (inbound, damage) once per adjustment id.
--
-- KEYS[1] item hash   KEYS[2] adjustment key
-- ARGV[1] delta   ARGV[2] fingerprint of the request (delta and reason)   ARGV[3] retention (s) of the key
--
-- Returns one of
--   {'ok', available, reserved, epoch} applied now (epoch: the item's, which an undo of it names)
--   {'replay', available, reserved}   this adjustment id was applied before with the same body
--   {'conflict'}                      this adjustment id was used with another body
--   {'missing'}                       the item is not in Redis
--   {'below_reserved', available, reserved}  removing that much would leave less on hand than is reserved
--   {'codes'}                         the item has a one-time code pool: its stock is its codes (upload codes)
--   {'unsettled', available, reserved, epoch}  this adjustment's Redis half was made by an earlier attempt whose
--                                     MySQL outcome could not be learnt (its key holds 'unsettled:' .. fingerprint):
--                                     the caller completes the MySQL half, which the ledger makes happen once
--
-- The adjustment key is written with the change, in one script: a replay can never apply it twice. The item is
-- fenced from the reconciler's repair until the MySQL half is done (lib/fence.lua).

--!include clock
--!include fence

local item = KEYS[1]
local saved = redis.call('GET', KEYS[2])
local current = redis.call('HMGET', item, 'stock_num', 'used_stock_num', 'pool_kind', 'epoch')
if current[3] == 'one_time' then
  return {'codes'}
end
if saved then
  if saved == 'unsettled:' .. ARGV[2] then
    return {'unsettled', current[1] or '0', current[2] or '0', current[4] or ''}
  end
  if saved ~= ARGV[2] then
    return {'conflict'}
  end
  return {'replay', current[1] or '0', current[2] or '0'}
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
redis.call('HSET', item, 'is_sell_out', left <= 0 and '1' or '0')
openFence(item, clockNow(''))
redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3]))
return {'ok', left, current[2], current[4] or ''}
