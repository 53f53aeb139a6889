-- admin_done.lua: a stock change's MySQL half is done: close the fence its Redis half opened (lib/fence.lua), and an
-- adjustment's key says so (it holds the plain fingerprint from now on: a retry is a replay).
--
-- KEYS[1] item hash   KEYS[2] the adjustment's key, or the item key again for a change without one (PUT)
-- ARGV[1] the token of the Redis half (lib/fence.lua: 'mark@ms'; the mark alone from before PUTs had times), '*' for the one the
--         adjustment key names (a half an earlier attempt made; left alone while younger than a fence's lifetime), ''
--         when not known (a key from before marks): the fence is closed only while the item has that mark (a rebuild
--         or a repair since closed it already)
-- ARGV[2] the adjustment's fingerprint ('' for a PUT)
--
-- With an adjustment key, only the call that finds it pending or unsettled under the half's mark settles it and closes
-- the fence: two retries that both completed the MySQL half close it once, and an attempt whose half a repair took
-- out leaves alone the key of the attempt that made the change afresh.
--
-- Returns {'ok'}, or {'missing'} when the item is gone (nothing to close: a rebuild starts without a fence; the key
-- is settled all the same).

--!include clock
--!include fence

local item = KEYS[1]
local token = ARGV[1]
if KEYS[2] ~= item then
  local saved = redis.call('GET', KEYS[2])
  if not saved then return {'ok'} end
  local fingerprint, keyMark, keyAt, unsettled = adjustmentState(saved)
  if fingerprint ~= ARGV[2] or not keyMark then return {'ok'} end
  if token == '*' then
    -- A pending half younger than a fence's lifetime may be an attempt's still under way (one whose MySQL half turns
    -- out a duplicate reverses it): left to that attempt.
    if not unsettled and keyAt and clockNow('') - keyAt < FENCE_MS then return {'ok'} end
    token = keyAt and (keyMark .. '@' .. keyAt) or keyMark
  elseif keyMark ~= '' and not namesHalf(saved, ARGV[2], token) then
    -- the key of another half (a retry took this one over, or made the change afresh since)
    return {'ok'}
  end
  redis.call('SET', KEYS[2], ARGV[2], 'KEEPTTL')
end
local current = redis.call('HMGET', item, 'stock_num', 'epoch', 'repairs')
if not current[1] then
  return {'missing'}
end
local mark, at = halfToken(token)
if mark == '' or mark == itemMark(current[2], current[3]) then
  closeFence(item, at, clockNow(''))
end
return {'ok'}
