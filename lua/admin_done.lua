-- admin_done.lua: a stock change's MySQL half is done: close the fence its Redis half opened (lib/fence.lua), and an
-- adjustment's key says so ('done:<mark>:<ms>:<fingerprint>' from now on, the half's token: a retry is a replay).
--
-- KEYS[1] item hash   KEYS[2] the adjustment's key, or the item key again for a change without one (PUT)
-- ARGV[1] the token of the Redis half (lib/fence.lua: 'mark@ms'; the mark alone from before PUTs had times), '*' for the one the
--         adjustment key names (a half an earlier attempt made; left alone while younger than a fence's lifetime), ''
--         when not known (a key from before marks): the fence is closed only while the item has that mark (a rebuild
--         or a repair since closed it already)
-- ARGV[2] the adjustment's fingerprint ('' for a PUT)
-- ARGV[3] the version of MySQL's stock row the MySQL half made ('' when not known)
--
-- An item whose counters were written from MySQL since the Redis half (a rebuild, a repair: its mark moved on) from a
-- read of the stock row before the MySQL half committed (`mysql_version` below ARGV[3]; the read held the row, so it
-- was wholly before or wholly after), or from a read not known to be after it, may have neither half: it is dropped,
-- and its next use rebuilds it from MySQL, which has the change (the one path that writes an item from MySQL: no
-- delta, setting or representation of an infinite item to carry over by hand, and another attempt's half of the same
-- adjustment the item may count instead is not counted twice). An item built after the commit is left as it is.
--
-- With an adjustment key, only the call that finds it pending or unsettled under the half's mark settles it and closes
-- the fence: two retries that both completed the MySQL half close it once, and an attempt whose half a repair took
-- out leaves alone the key of the attempt that made the change afresh.
--
-- Returns {'ok'}, {'dropped'} when the item was dropped (above), or {'missing'} when the item is gone (nothing to
-- close: a rebuild starts without a fence; the key is settled all the same).

--!include clock
--!include fence

local item = KEYS[1]
local token = ARGV[1]
-- Whether this call owns the half's fence and key: for an adjustment, while its key names the half.
local owns = true
if KEYS[2] ~= item then
  local saved = redis.call('GET', KEYS[2])
  local fingerprint, keyMark, keyAt, unsettled
  if saved then fingerprint, keyMark, keyAt, unsettled = adjustmentState(saved) end
  if not saved or fingerprint ~= ARGV[2] or not keyMark then
    owns = false
  elseif token == '*' then
    -- A pending half younger than a fence's lifetime may be an attempt's still under way (one whose MySQL half turns
    -- out a duplicate reverses it): left to that attempt.
    if not unsettled and keyAt and clockNow('') - keyAt < FENCE_MS then return {'ok'} end
    token = keyAt and (keyMark .. '@' .. keyAt) or keyMark
  elseif keyMark ~= '' and not namesHalf(saved, ARGV[2], token) then
    -- the key of another half (a retry took this one over, or made the change afresh since)
    owns = false
  end
  if owns then
    -- Done, with the half it was done with (a surplus half's reversal tells its own from one a retry took over).
    local doneMark, doneAt = halfToken(token)
    redis.call('SET', KEYS[2], doneAt and ('done:' .. doneMark .. ':' .. doneAt .. ':' .. ARGV[2]) or ARGV[2], 'KEEPTTL')
  end
end
local current = redis.call('HMGET', item, 'stock_num', 'epoch', 'repairs', 'mysql_version')
if not current[1] then
  return {'missing'}
end
local mark, at = halfToken(token)
if mark == '' or mark == itemMark(current[2], current[3]) then
  if owns then
    closeFence(item, at, clockNow(''))
  end
elseif mark ~= '*' then
  local built = tonumber(current[4] or '')
  local made = tonumber(ARGV[3] or '')
  if not built or not made or built < made then
    redis.call('DEL', item)
    return {'dropped'}
  end
end
return {'ok'}
