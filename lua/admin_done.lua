#!lua flags=allow-oom
-- admin_done.lua: a stock change's MySQL half is done: close the fence its Redis half opened (lib/fence.lua), and an
-- adjustment's key says so ('done:<mark>:<ms>:<made>:<fingerprint>' from now on: a retry is a replay).
--
-- KEYS[1] item hash   KEYS[2] the adjustment's key, or the item key again for a change without one (PUT)
-- ARGV[1] the token of the Redis half (lib/fence.lua: 'mark@ms'; the mark alone from before PUTs had times), '*' for the one the
--         adjustment key names (a half an earlier attempt made; left alone while younger than a fence's lifetime), ''
--         when not known (a key from before marks): the fence is closed only while the item has that mark (a rebuild
--         or a repair since closed it already)
-- ARGV[2] the adjustment's fingerprint ('' for a PUT)
-- ARGV[3] the version of MySQL's stock row the MySQL half made ('' when not known)   ARGV[4] the change's delta
-- ARGV[5] the settings it changed ('field=old>new,...', set_stock.lua; '' none)
-- ARGV[6] with '*': the name of the half MySQL's ledger has the adjustment from ('-': its row names none, which is not
--         a named half's; '' when not known)
--
-- An item whose counters were written from MySQL since the Redis half (a rebuild, a repair: its mark moved on) from a
-- read of the stock row before the MySQL half committed (`mysql_version` below ARGV[3]; the read held the row, so it
-- was wholly before or wholly after) has neither half: a change whose key is this call's (a PUT's always) is added,
-- its delta and the settings still as the read found them. Otherwise (another attempt's half of the adjustment may
-- stand in the item instead, the item is or was made infinite, or the read is not known to be before or after the
-- commit) the item is dropped, and its next use rebuilds it from MySQL, which has the change. An item built
-- after the commit is left as it is.
--
-- With an adjustment key, only the call that finds it pending or unsettled under the half's token settles it: two
-- retries that both completed the MySQL half settle it once, and an attempt whose half a repair took out leaves alone
-- the key of the attempt that made the change afresh. Each closes its own half's fence (by its time).
--
-- Returns {'ok'}, {'dropped'} when the item was dropped (above), {'missing'} when the item is gone (nothing to
-- close: a rebuild starts without a fence; the key is settled all the same), or with '*' {'surplus', token, half}
-- when the key names another half than MySQL's ledger has (each attempt made a half: the key of the first one
-- vanished before the second): nothing was written, the caller reverses the half (its owner's token and its name).

--!include clock
--!include fence

local item = KEYS[1]
local token = ARGV[1]
-- Whether this call owns the half's fence and key: for an adjustment, while its key names the half.
local owns = true
if KEYS[2] ~= item then
  local saved = redis.call('GET', KEYS[2])
  local key = saved and adjustmentState(saved) or nil
  if not key or key.fingerprint ~= ARGV[2] or not key.mark then
    owns = false
  elseif token == '*' then
    -- A pending half younger than a fence's lifetime may be an attempt's still under way (one whose MySQL half turns
    -- out a duplicate reverses it): left to that attempt.
    if not key.unsettled and key.at and clockNow('') - key.at < FENCE_MS then return {'ok'} end
    token = key.at and (key.mark .. '@' .. key.at) or key.mark
    -- MySQL has another half of the adjustment: the one the key names is a surplus, for the caller to reverse.
    if (ARGV[6] or '') ~= '' and not key.unnamed and key.half ~= ARGV[6] then
      return {'surplus', token, key.half}
    end
  elseif key.mark ~= '' and not namesHalf(saved, ARGV[2], token) then
    -- the key of another half (a retry took this one over, or made the change afresh since)
    owns = false
  end
  if owns then
    -- Done, with the owner it was done by and the half's name (a reversal of a half tells its own from another).
    local doneMark, doneAt = halfToken(token)
    redis.call('SET', KEYS[2], doneAt and adjustmentValue('done', doneMark, doneAt, key.made, ARGV[2]) or ARGV[2],
      'KEEPTTL')
  end
end
local current = redis.call('HMGET', item, 'stock_num', 'epoch', 'repairs', 'mysql_version', 'is_infinite')
if not current[1] then
  return {'missing'}
end
local mark, at = halfToken(token)
if mark == '' or mark == itemMark(current[2], current[3]) then
  -- The half's own fence (by its time: a key another half owns leaves it open no longer than this call), or, from a
  -- token without a time, the count of before while the key is this call's.
  if owns or at then
    closeFence(item, at, clockNow(''))
  end
elseif mark ~= '*' then
  local built = tonumber(current[4] or '')
  local made = tonumber(ARGV[3] or '')
  -- (An infinite item, or one a PUT made infinite or finite, is dropped: what its stock_num counts may have changed
  -- under the half.)
  if built and made and built < made and owns and current[5] ~= '1'
    and not string.find(ARGV[5] or '', 'is_infinite=', 1, true) then
    -- This change's own half, the item read before its commit: the change is added as it was made.
    local left = redis.call('HINCRBY', item, 'stock_num', tonumber(ARGV[4]))
    redis.call('HSET', item, 'is_sell_out', left <= 0 and '1' or '0')
    for field, old, new in string.gmatch(ARGV[5] or '', '([%w_]+)=([^>,]*)>([^,]*)') do
      if redis.call('HGET', item, field) == old then
        redis.call('HSET', item, field, new)
      end
    end
  elseif not built or not made or built < made then
    redis.call('DEL', item)
    return {'dropped'}
  end
end
return {'ok'}
