-- dir_open.lua: Redis Cluster, a reserve opens the order's directory before it holds stock in the order's parts.
--
-- KEYS[1] the order's directory (a hash in the order's own shard)   KEYS[2] that shard's index of reserves under way
-- KEYS[3] that shard's generation marker (see reserve.lua)
-- ARGV[1] request fingerprint   ARGV[2] bizId   ARGV[3] the shards of its parts ('3,7')   ARGV[4] TTL (s): the hold
-- plus the retention of orders   ARGV[5] orderId   ARGV[6] '' for an order of one part; else how long (ms) the
-- reserve may take to hold every part (dir_commit.lua): past that deadline (Redis's TIME plus this, lib/clock.lua)
-- the expiry sweeper gives up on it   ARGV[7] '1' when the caller asked the journal about this order already
--
-- Returns one of
--   {'new'}                   opened: state 'reserved' (one part) or 'reserving' (several, until dir_commit.lua)
--   {'same', state}           opened before by the same request (a replay, or a retry after a failure)
--   {'conflict'}              opened by another request of the same orderId
--   {'closed', state}         the order was cancelled or expired first (no hanging reservation)
--   {'ask', 'marker' | 'journal'}  no directory, and Redis may have lost it: as reserve.lua
--
-- The directory is where a cluster order's state is decided: confirm, cancel, expiry and refund change it first
-- (dir_transition.lua), then the parts follow; whoever changes it first wins, and a part left behind by a crash is
-- moved on by the next caller or the expiry sweeper. An order of several parts is 'reserving' until all are held:
-- a reserve that stops half-way (a crash) leaves it there, and the sweeper takes its parts back after the deadline.
-- Last key and argument, taken off first: the key of the drain check (its shard's mark; on a single Redis the drain
-- sequence) and this instance's floor of it (lib/floor.lua); below the floor the script answers {'behind'} and changes
-- nothing.
--!include clock
--!include request
--!include floor

local behind = behindFloor()
if behind then return behind end

local f = redis.call('HMGET', KEYS[1], 'state', 'fp', 'biz')
if not f[1] and ARGV[7] ~= '1' then
  local trusted = redis.call('GET', KEYS[3])
  if not trusted then
    return {'ask', 'marker'}
  end
  if clockNow('') < tonumber(trusted) then
    return {'ask', 'journal'}
  end
end
if not f[1] then
  local state = ARGV[6] == '' and 'reserved' or 'reserving'
  redis.call('HSET', KEYS[1], 'state', state, 'fp', ARGV[1], 'biz', ARGV[2], 'shards', ARGV[3])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  if state == 'reserving' then
    redis.call('ZADD', KEYS[2], clockNow('') + tonumber(ARGV[6]), ARGV[5])
  end
  return {'new'}
end
if f[1] == 'cancelled' or f[1] == 'expired' then
  return {'closed', f[1]}
end
-- A directory restored from the journal keeps the request's hash (lib/request.lua); one restored from rows written
-- before the journal kept it has fp '': a request naming other shards than its parts cannot be the same one then
-- (it would hold a part the directory does not name).
-- Another business's directory (one kept under its bare orderId from before orders were scoped) is never this
-- request's, whatever its fingerprint says.
if not sameRequest(f[2], ARGV[1]) or (f[3] and f[3] ~= '' and f[3] ~= ARGV[2]) then
  return {'conflict'}
end
-- A directory restored from the journal (fp '' or '#<sha1>') names only the parts with journal rows: a request
-- naming other shards holds there what the order never held (a part that held nothing has no row), so it is refused.
if (f[2] == '' or string.sub(f[2], 1, 1) == '#') and redis.call('HGET', KEYS[1], 'shards') ~= ARGV[3] then
  return {'conflict'}
end
return {'same', f[1]}
