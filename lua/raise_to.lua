#!lua flags=allow-oom
-- raise_to.lua: a drain mark or a single Redis's drain sequence raised to MySQL's value after Redis went back in time
-- (BatchFences.raiseToMySQL, under the caller's locked mark rows: nothing else raises it meanwhile). Runs when Redis is
-- full: until the marks are up again every check finds Redis behind, and the worker and every confirm, cancel and
-- refund wait for it.
--
-- KEYS[1] the mark or sequence   ARGV[1] MySQL's value
--
-- Returns the key's value afterwards: ARGV[1] when it was lower or missing (set now), its own when it was not.

local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
local value = tonumber(ARGV[1])
if current < value then
  redis.call('SET', KEYS[1], ARGV[1])
  return value
end
return current
