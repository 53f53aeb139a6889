-- lib/give_back.lua: what a hold hands back besides its stock. Not a script of its own: the scripts that give a
-- hold back (rollback, undo_reserve, refund) include it where they say `--!include give_back` (see
-- InventoryScripts.load), so the one copy here is what each of them runs. It uses lib/usage.lua, which they
-- include before it.

-- The order hash's per-line lists ('a,,b' -> {'a', '', 'b'}), as reserve.lua writes its 'codes' field.
local function splitLines(text)
  local list = {}
  for part in string.gmatch((text or '') .. ',', '([^,]*),') do list[#list + 1] = part end
  return list
end

-- Per-user limits (see reserve.lua): what an item gives back of an order's hold, the order's user gets back too,
-- while the window the order was counted in is still the current one. A restored order's time is not its
-- reserve's time: it gives nothing back (erring toward refusing, never toward exceeding).
local function giveBackUser(itemKey, usersKey, user, createdAt, restored, held, now)
  if user == '' or restored or held <= 0 then return end
  local config = redis.call('HMGET', itemKey, 'user_limit', 'user_window')
  if tonumber(config[1] or '0') <= 0 then return end
  local window = tonumber(config[2] or '0')
  local current = window > 0 and math.floor(now / (window * 1000)) or 0
  local counted = window > 0 and math.floor(createdAt / (window * 1000)) or 0
  if counted ~= current then return end
  local units = usageUnits(usersKey, user, current)
  if units > 0 then setUsage(itemKey, usersKey, user, current, math.max(units - held, 0)) end
end

-- Code pools (see reserve.lua): a one-time pool gets the codes of the hold back ('c1|c2'); others took none out.
local function giveBackCodes(itemKey, codesKey, codes)
  if not codes or codes == '' then return end
  if redis.call('HGET', itemKey, 'pool_kind') ~= 'one_time' then return end
  local list = {}
  for code in string.gmatch(codes, '[^|]+') do list[#list + 1] = code end
  if #list > 0 then
    redis.call('SADD', codesKey, unpack(list))
    -- the set lives as long as its item (it was no key at all while every code was held)
    local ttl = redis.call('PTTL', itemKey)
    if ttl > 0 then redis.call('PEXPIRE', codesKey, ttl) end
  end
end
