-- lease.lua: take or renew a lease that one owner holds at a time (the expiry sweeper's per shard).
--
-- KEYS[1] the lease key   ARGV[1] owner   ARGV[2] lifetime (ms)
--
-- Returns 1 when the owner holds the lease afterwards (taken now, or renewed), 0 when another owner holds it. An
-- owner that stops renewing loses the lease after its lifetime, and another takes it over.

local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1
