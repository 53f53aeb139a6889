-- init_lock.lua: decide who rebuilds a stock item that is missing from Redis.
--
-- KEYS[1] item hash
-- ARGV[1] caller id   ARGV[2] now (ms; '' = Redis TIME, lib/clock.lua)   ARGV[3] lock lifetime (ms)
--
-- Returns one of
--   {'ready'}    the item is there (someone rebuilt it, or it never went away): just use it
--   {'locked'}   this caller holds the init lock and must rebuild the item from MySQL
--   {'wait'}     another caller holds an unexpired lock: wait, then look again
--
-- The lock lives in the item hash itself (lock_user_id, lock_time), so taking it and finding the item rebuilt
-- are one atomic look. A lock older than its lifetime belongs to a caller that died: it is taken over.

--!include clock
local item = KEYS[1]
local fields = redis.call('HMGET', item, 'stock_num', 'lock_user_id', 'lock_time')
if fields[1] then
  return {'ready'}
end
local now = clockNow(ARGV[2])
if fields[2] and fields[2] ~= '' and fields[2] ~= ARGV[1] and tonumber(fields[3] or '0') + tonumber(ARGV[3]) > now then
  return {'wait'}
end
redis.call('HSET', item, 'lock_user_id', ARGV[1], 'lock_time', now)
redis.call('PEXPIRE', item, tonumber(ARGV[3]) * 2)
return {'locked'}
