-- lib/clock.lua: one clock for every instance. Not a script of its own: scripts include it where they say
-- `--!include clock` (see InventoryScripts.load).
--
-- Deadlines, per-user windows and lock times come from Redis (TIME), not from the instance that called: two
-- instances whose clocks differ by seconds must not expire a hold early or open a fresh per-user window. A caller
-- passes '' for its `now` argument; a test may pass a time of its own.

local function clockNow(given)
  if given and given ~= '' then return tonumber(given) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
