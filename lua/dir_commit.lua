-- dir_commit.lua: Redis Cluster, a reserve of several parts has held every part: the order is reserved.
--
-- KEYS[1] the order's directory   KEYS[2] its shard's index of reserves under way   ARGV[1] orderId
--
-- Returns {'ok'} (reserved now, or before, or confirmed or refunded since), or {'state', state} when the order was decided otherwise meanwhile
-- (cancelled: by the client, or by the sweeper that gave up on a reserve past its deadline; its parts are taken back).
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'reserving' then
  redis.call('HSET', KEYS[1], 'state', 'reserved')
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'ok'}
end
-- Reserved before, or decided past it (confirmed, refunded: only a reserved order gets there): a replay's parts
-- were all held.
if state == 'reserved' or state == 'confirmed' or state == 'refunded' then
  return {'ok'}
end
return {'state', state or ''}
