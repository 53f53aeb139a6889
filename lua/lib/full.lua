-- full.lua: whether Redis is out of memory (its used memory above a maxmemory that is set). A script that settles
-- holds made while Redis had room runs when it is full too (`#!lua flags=allow-oom` as its first line: confirm,
-- cancel, expiry, refund, the write-back worker's steps): it writes little and frees what it settles. Where it would
-- record something new instead (a cancel of an order it never saw), it asks here first and refuses as Redis would.
-- As Redis's own test: used memory less what it does not count for eviction (replica and AOF buffers) above
-- maxmemory, and only under noeviction (another policy makes room itself).

local function redisFull()
  local info = redis.call('INFO', 'memory')
  local limit = tonumber(string.match(info, '\nmaxmemory:(%d+)') or '0')
  if limit == 0 or string.match(info, '\nmaxmemory_policy:(%S+)') ~= 'noeviction' then return false end
  local used = tonumber(string.match(info, '\nused_memory:(%d+)') or '0')
  return used - tonumber(string.match(info, '\nmem_not_counted_for_evict:(%d+)') or '0') > limit
end

-- The error Redis answers a write it refuses when full, so the caller treats both alike (503, nothing changed).
local function fullError()
  return redis.error_reply('OOM command not allowed when used memory > \'maxmemory\' (a new record while Redis is full)')
end
