-- set_stock.lua: set an item's on-hand stock (available + reserved) and its settings.
--
-- KEYS[1] item hash   KEYS[2] its per-user usage hash   KEYS[3] its code set (they live as long as the item: a usage
-- hash that expired while its item lives would reset a lifetime limit, a code set would leave a pool without codes)
-- ARGV[1] on-hand stock   ARGV[2] infinite: '' unchanged | '0' | '1'
-- ARGV[3] danger_num ('' unchanged)   ARGV[4] backorder_limit ('' unchanged)   ARGV[5] key ttl (s), 0 = none
-- ARGV[6] epoch of the item if this creates it
-- ARGV[7] user_limit: units per user, 0 = none ('' unchanged)   ARGV[8] user_window (s), 0 = the item's life
-- ('' unchanged); see reserve.lua
--
-- Returns one of
--   {'created', epoch}                the item was not in Redis and now is, with nothing reserved
--   {'ok', delta, epoch}              on-hand moved by delta (what MySQL must add too); epoch = the item's, which
--                                     an undo of this change names (undo_stock.lua)
--   {'below_reserved', reserved}      on-hand may not go below what live reservations hold
--   {'codes'}                         the item has a one-time code pool: its stock is its codes (upload codes)
--
-- Reservations move stock between stock_num and used_stock_num without changing on-hand, so the change is a
-- delta that commutes with them and with the worker's confirm deductions in MySQL.

local item = KEYS[1]
local onHand = tonumber(ARGV[1])
local ttl = tonumber(ARGV[5])
local current = redis.call('HMGET', item, 'stock_num', 'used_stock_num', 'pool_kind', 'epoch')
if current[3] == 'one_time' then
  return {'codes'}
end

local function settings()
  if ARGV[2] ~= '' then redis.call('HSET', item, 'is_infinite', ARGV[2]) end
  if ARGV[3] ~= '' then redis.call('HSET', item, 'danger_num', ARGV[3]) end
  if ARGV[4] ~= '' then redis.call('HSET', item, 'backorder_limit', ARGV[4]) end
  if ARGV[7] ~= '' then redis.call('HSET', item, 'user_limit', ARGV[7]) end
  if ARGV[8] ~= '' then redis.call('HSET', item, 'user_window', ARGV[8]) end
  if ttl > 0 then
    for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ttl) end
  end
end

if not current[1] then
  redis.call('HSET', item, 'stock_num', onHand, 'used_stock_num', 0, 'confirmed_unapplied', 0,
    'is_sell_out', onHand <= 0 and '1' or '0', 'is_infinite', '0', 'danger_num', 0, 'backorder_limit', 0,
    'user_limit', 0, 'user_window', 0, 'lock_time', 0, 'lock_user_id', '', 'epoch', ARGV[6])
  settings()
  return {'created', ARGV[6]}
end

local used = tonumber(current[2] or '0')
if onHand < used then
  return {'below_reserved', used}
end
local stock = tonumber(current[1])
local left = onHand - used
redis.call('HSET', item, 'stock_num', left, 'is_sell_out', left <= 0 and '1' or '0')
settings()
return {'ok', onHand - (stock + used), current[4] or ''}
