-- init_lock.lua: decide who rebuilds a stock item that is missing from Redis.
--
-- KEYS[1] item hash   KEYS[2] its code set   KEYS[3] its per-user usage hash
-- ARGV[1] caller id   ARGV[2] now (ms; '' = Redis TIME, lib/clock.lua)   ARGV[3] lock lifetime (ms)
--
-- Returns one of
--   {'ready'}    the item is there and whole (someone rebuilt it, or it never went away): just use it. An item whose
--                code set or usage hash is gone is not whole (lib/items.lua): its hash is dropped and it is rebuilt
--   {'locked'}   this caller holds the init lock and must rebuild the item from MySQL
--   {'wait'}     another caller holds an unexpired lock: wait, then look again
--
-- The lock lives in the item hash itself (lock_user_id, lock_time), so taking it and finding the item rebuilt
-- are one atomic look. A lock older than its lifetime belongs to a caller that died: it is taken over.

--!include clock
--!include items
local item = KEYS[1]
if not missingItems({item}, {KEYS[2]}, {KEYS[3]}) then
  return {'ready'}
end
local fields = redis.call('HMGET', item, 'lock_user_id', 'lock_time')
local now = clockNow(ARGV[2])
if fields[1] and fields[1] ~= '' and fields[1] ~= ARGV[1] and tonumber(fields[2] or '0') + tonumber(ARGV[3]) > now then
  return {'wait'}
end
redis.call('HSET', item, 'lock_user_id', ARGV[1], 'lock_time', now)
redis.call('PEXPIRE', item, tonumber(ARGV[3]) * 2)
return {'locked'}
