-- dir_commit.lua: Redis Cluster, a reserve of several parts has held every part: the order is reserved.
--
-- KEYS[1] the order's directory   KEYS[2] its shard's index of reserves under way   ARGV[1] orderId
--
-- Returns {'ok'} (reserved now, or before), {'decided', state} (confirmed or refunded since), or {'state', state} when the order was decided otherwise meanwhile
-- (cancelled: by the client, or by the sweeper that gave up on a reserve past its deadline; its parts are taken back).

-- Last key and argument, taken off first: the key of the drain check (its shard's mark; on a single Redis the drain
-- sequence) and this instance's floor of it (lib/floor.lua); below the floor the script answers {'behind'} and changes
-- nothing.
--!include floor

local behind = behindFloor()
if behind then return behind end

local state = redis.call('HGET', KEYS[1], 'state')
if state == 'reserving' then
  redis.call('HSET', KEYS[1], 'state', 'reserved')
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'ok'}
end
if state == 'reserved' then
  return {'ok'}
end
-- Decided past 'reserved' (confirmed, refunded: only a reserved order gets there): a replay; a part held now (its
-- shard lost the part) is not the order's and is taken back by the caller.
if state == 'confirmed' or state == 'refunded' then
  return {'decided', state}
end
return {'state', state or ''}
