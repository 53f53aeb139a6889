#!lua flags=allow-oom
-- dir_close.lua: Redis Cluster, a reserve that held nothing in the end (a part was short, its other parts taken
-- back) removes the directory it opened, so the order may be reserved again, unless the order was decided
-- meanwhile (a cancel that came first stays recorded).
--
-- KEYS[1] the order's directory   KEYS[2] its shard's index of reserves under way
-- ARGV[1] the request fingerprint that opened it   ARGV[2] orderId
--
-- Returns 1 when removed, 0 when left.

-- Last key and argument, taken off first: the key of the drain check (its shard's mark; on a single Redis the drain
-- sequence) and this instance's floor of it (lib/floor.lua); below the floor the script answers {'behind'} and changes
-- nothing.
--!include floor

local behind = behindFloor()
if behind then return behind end

local f = redis.call('HMGET', KEYS[1], 'state', 'fp')
if (f[1] == 'reserved' or f[1] == 'reserving') and f[2] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 1
end
return 0
