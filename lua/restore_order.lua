-- restore_order.lua: bring back an order Redis lost (FLUSHALL, failover without the AOF tail) from its journal
-- rows, so that it can still be confirmed, cancelled, refunded or expired.
--
-- KEYS[1] order hash   KEYS[2] expiry index
-- then for each line i = 0..n-1: KEYS[3+2i] reserve key, KEYS[4+2i] rollback key
-- then for each line i = 0..n-1: KEYS[3+2n+i] its item hash (a hold is written with the item's epoch, lib/items.lua)
-- ARGV[1] orderId   ARGV[2] bizId   ARGV[3] userId   ARGV[4] status (reserved | confirmed | cancelled | expired |
-- refunded)   ARGV[5] lines 'sku:qty:qty,...'   ARGV[6] expiresAt (ms)   ARGV[7] now (ms; '' = Redis TIME, lib/clock.lua)
-- ARGV[8] retention (s)
-- then for each line: ARGV[9+i] its quantity
-- then ARGV[9+n] the codes the lines hold ('c1|c2,,c3'; '' when no line's item has a code pool)
-- then ARGV[10+n] the request fingerprint to keep: '#' .. the SHA-1 the journal has of it ('' when it has none)
--
-- Returns {'ok'} when restored, {'exists'} when the order is in Redis (nothing is touched), {'missing', 'i,j'} when
-- items of its lines are not whole (lib/items.lua; nothing is touched): a hold is written with its item's epoch, and
-- an item being rebuilt has none yet, nor may a hold be written beside a rebuild that re-stamps its item's holds in
-- parts (restamp_holds.lua: a part already done would not see it).
--
-- The item counters are not touched: the init path rebuilds an item from the same journal, counting RESERVED
-- lines as held, and an item that survived still counts the hold. The request is kept as its hash: reserve.lua
-- still tells a replay from another body (lib/request.lua).

--!include clock
--!include items
local order = KEYS[1]
if redis.call('EXISTS', order) == 1 then
  return {'exists'}
end
local n = (#KEYS - 2) / 3
local itemKeys = {}
for i = 0, n - 1 do itemKeys[#itemKeys + 1] = KEYS[3 + 2 * n + i] end
local gone = missingItems(itemKeys)
if gone then return gone end
local status = ARGV[4]
local now = clockNow(ARGV[7])
local expiresAt = tonumber(ARGV[6])
local retention = tonumber(ARGV[8])
local keep = math.max(math.floor((expiresAt - now) / 1000), 0) + retention
redis.call('HSET', order, 'status', status, 'fp', ARGV[10 + (#KEYS - 2) / 3] or '', 'biz', ARGV[2], 'user', ARGV[3], 'lines', ARGV[5],
  'expires_at', expiresAt, 'created_at', now, 'event', '', 'restored', '1')
redis.call('EXPIRE', order, keep)
if (ARGV[9 + n] or '') ~= '' then
  redis.call('HSET', order, 'codes', ARGV[9 + n])
end
local lineEpochs = {}
for i = 0, n - 1 do
  local quantity = ARGV[9 + i]
  local epoch = redis.call('HGET', KEYS[3 + 2 * n + i], 'epoch') or ''
  lineEpochs[#lineEpochs + 1] = epoch
  if status == 'reserved' or status == 'confirmed' or status == 'refunded' then
    redis.call('SET', KEYS[3 + 2 * i], quantity .. '@' .. epoch, 'EX', keep)
  else
    redis.call('SET', KEYS[4 + 2 * i], '1', 'EX', retention)
  end
end
redis.call('HSET', order, 'line_epochs', table.concat(lineEpochs, ','))
if status == 'reserved' then
  redis.call('ZADD', KEYS[2], expiresAt, ARGV[1])
end
return {'ok'}
