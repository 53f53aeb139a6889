#!lua flags=allow-oom
-- lease.lua: take, renew or give back a lease that one owner holds at a time (the expiry sweeper's per shard, the
-- write-back worker's per outbox stream, the reconciler's).
--
-- KEYS[1] the lease key   ARGV[1] owner   ARGV[2] lifetime (ms, at least 1); '0' gives the lease back
--
-- Returns 1 when the owner holds the lease afterwards (taken now, or renewed), 0 when another owner holds it or it
-- was given back. An owner that stops renewing loses the lease after its lifetime, and another takes it over; a give
-- back by an owner that no longer holds it leaves the lease alone. A renewal only moves the lease's expiry
-- (PEXPIRE), which Redis allows even when it is out of memory.

local holder = redis.call('GET', KEYS[1])
if ARGV[2] == '0' then
  if holder == ARGV[1] then
    redis.call('DEL', KEYS[1])
  end
  return 0
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
if holder then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1
