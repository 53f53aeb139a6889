#!lua flags=allow-oom
-- undo_stock.lua: reverse a stock change whose MySQL half failed (compensation), exactly once.
--
-- KEYS[1] item hash   KEYS[2] adjustment key of the change being reversed, or the item key again when none
-- KEYS[3] marker key of this reversal (same hash tag)
-- ARGV[1] the delta that was applied   ARGV[2] fingerprint the adjustment key must hold to be deleted
-- ARGV[3] marker TTL (s)   ARGV[4] the change's half's token (lib/fence.lua: 'mark@ms'; the mark alone for a PUT
-- from before PUTs' halves had times; a bare epoch from a task stored before marks; '' when not known: any)
-- ARGV[5] settings the change made ('field=old>new,...', set_stock.lua; '' none): each goes back to old where it is
--         still new (a later change of the same setting stands)
-- ARGV[6] '1' when the half is a surplus: MySQL had the adjustment from another attempt before this one's MySQL half
--         (StockRepository's duplicate), so the half goes even if a retry that found the adjustment in MySQL settled
--         its key since; not when a retry took this half over (its key names this half with another owner, or was
--         settled with this half: the retry completed this very half); '' otherwise
-- ARGV[7] the half's name (lib/fence.lua: 'mark@ms' of its making; '' when it is the token's own: its owner made it)
-- ARGV[8] what MySQL's ledger says of the adjustment, when the key cannot tell (below) or the caller asked it first
--         (a retry reversing a removal it took over): '' not asked, 'none' no row, '?' not known (a row that names
--         no half), else the name of the half it has
-- ARGV[9] '1' when the change's caller gave it up without learning MySQL's outcome (a PUT whose COMMIT got no answer):
--         MySQL may have the change all the same, so its half goes onto the item's stale list as given up
--         (lib/fence.lua giveUpHalf) in this same step, not closed: the next PUT rebuilds the item from MySQL instead
--         of taking its delta from counters that may lack the change
--
-- The reversal ends the change: the fence its Redis half opened is closed (lib/fence.lua).
--
-- An adjustment's key names the half it is about (lib/fence.lua): a key of this half's name that another token owns
-- was taken over by a retry, which completes or reverses the half itself; a key that says done with this half's name
-- says MySQL has this very half (it stays). A key that is gone, bare (a replay's) or another half's (made afresh after
-- this one's key vanished) cannot tell whether a retry took this half over and completed it before its key went:
-- MySQL's ledger decides (the caller reads it when asked, {'check'}), except for a surplus half (MySQL has another).
--
-- Returns {'check'} (nothing written) when the ledger must decide (above: ask again with ARGV[8]), {'rebuilt'} too
-- when the half went with lost Redis data (below),
-- {'ok', available} when reversed now, {'done'} when this reversal ran before (a retry of a durable task
-- whose first attempt did reach Redis, or another owner's reversal of the same half: the marker is the half's) or
-- MySQL has the half (its key says done with it: a retry of it completed the MySQL half meanwhile, and the half
-- stays) or a retry took the half over, {'rebuilt'} when the item is gone or was
-- rebuilt or repaired from MySQL since the change (MySQL did not have it, so the item as it is now does not count it:
-- nothing to reverse; after a repair the settings a PUT made still go back). Deleting the adjustment key (while it
-- names this change's half) lets the caller's retry apply the change afresh.

--!include clock
--!include fence
--!include integer

local item = KEYS[1]
local made = ARGV[4] or ''
if redis.call('EXISTS', KEYS[3]) == 1 then
  -- Reversed before (by this task, or by another owner of the same half): this caller's own fence goes all the same.
  local mark, at = halfToken(made)
  local current = redis.call('HMGET', item, 'epoch', 'repairs')
  if at and current[1] and mark == itemMark(current[1], current[2]) then
    if ARGV[9] == '1' then giveUpHalf(item, at, clockNow('')) else closeFence(item, at, clockNow('')) end
  end
  return {'done'}
end
-- A task stored before marks names a bare epoch, and its adjustment key held the plain fingerprint from the Redis
-- half on: read as then.
local legacy = not string.find(made, '/', 1, true)
local madeMark, madeAt = halfToken(made)
local madeEpoch = legacy and made or string.match(madeMark, '^(.*)/%d+$')
-- The adjustment's key, when this undoes one: whether it names this change's half as its owner, whether a retry took
-- the half over (it completes the MySQL half, or reverses it: not to be reversed here), whether MySQL is known to have
-- this very half (a retry took it over and completed it: it stays), and whether the key cannot tell (below).
local ours, settled, takenOver, kept, unclear = false, false, false, false, false
-- The token of a retry that took this half over (its fence, and the key it owns, go with a surplus reversal).
local taker
local name = (ARGV[7] or '') ~= '' and ARGV[7] or made
if KEYS[2] ~= item then
  local saved = redis.call('GET', KEYS[2])
  local key = saved and adjustmentState(saved) or nil
  if legacy then
    ours = saved == ARGV[2]
  elseif key and key.fingerprint == ARGV[2] and key.unnamed and (key.mark ~= nil or key.done ~= nil) then
    -- A key from before halves had names (pending, unsettled or done under a token): a key of the same mark is taken
    -- for this half taken over, one settled with another token for it completed.
    settled = not key.mark
    ours = not settled and namesHalf(saved, ARGV[2], made)
    kept = settled and ((key.done ~= nil and key.done ~= made) or ARGV[6] ~= '1')
    takenOver = not settled and not ours and key.mark == madeMark
  elseif key and key.fingerprint == ARGV[2] and not key.unnamed and key.half == name then
    -- (A surplus half goes whatever the key says: MySQL has another half, and the marker, the half's, lets it go once
    -- whoever reverses it.)
    settled = not key.mark
    ours = not settled and namesHalf(saved, ARGV[2], made)
    kept = settled and ARGV[6] ~= '1'
    takenOver = not settled and not ours and ARGV[6] ~= '1'
    if not settled and not ours and ARGV[6] == '1' then taker = key.at end
  else
    -- Gone, settled by a replay from MySQL's ledger alone (the bare fingerprint), another half's, or another body's:
    -- the key does not say whether MySQL has this half (a retry may have taken it over and completed it before the
    -- key vanished). A surplus half goes (MySQL has another); otherwise MySQL's ledger decides (ARGV[8]).
    settled = key ~= nil and key.mark == nil
    unclear = true
  end
end
local current = redis.call('HMGET', item, 'stock_num', 'epoch', 'repairs')
local now = legacy and current[2] or itemMark(current[2], current[3])
local expected = legacy and made or madeMark
-- Whether the change (a PUT) made the item infinite or finite: what its stock_num counts changed (set_stock.lua).
local wasInfinite, madeInfinite = string.match(ARGV[5] or '', 'is_infinite=([^>,]*)>([^,]*)')
local flipped = wasInfinite ~= nil and wasInfinite ~= madeInfinite
-- Puts back the settings the change made, where they are still what it wrote.
local function settingsBack()
  for field, old, new in string.gmatch(ARGV[5] or '', '([%w_]+)=([^>,]*)>([^,]*)') do
    if redis.call('HGET', item, field) == new then
      redis.call('HSET', item, field, old)
    end
  end
end
if not current[1] or (made ~= '' and now ~= expected) then
  -- The change is not in the item's counters any more, but its adjustment key must still go: a retry applies it
  -- afresh (MySQL never had it), instead of being answered as a replay of a change that is nowhere.
  if ours and not settled then
    redis.call('DEL', KEYS[2])
  end
  -- A repair (same epoch) wrote the counters only: the settings a PUT made still go back. A PUT that made the item
  -- infinite or finite changed what its stock_num counts: the item is dropped instead, whatever rebuilt it (a rebuild
  -- waits for the stock row MySQL's half held, so the next one reads MySQL's outcome, flag and all).
  if current[1] and flipped then
    redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[3]))
    redis.call('DEL', item)
  elseif current[1] and not legacy and current[2] == madeEpoch then
    redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[3]))
    settingsBack()
  end
  return {'rebuilt'}
end
-- A half whose fence entry is gone though neither closed nor lapsed (lib/fence.lua halfLost) went with lost Redis
-- data: it is not in the item, and adding it back would count a change nobody made. (Not closed: this reversal's own
-- half, no MySQL half done; a retry's takeover would leave a key naming it, and a PUT is never taken over; a repair
-- or a drop changed the mark, above.) A PUT's settings went with it (a field that holds what it wrote was written by
-- another change since); an item it made infinite or finite is dropped all the same, for a rebuild from MySQL.
if (unclear or KEYS[2] == item) and not legacy and madeAt and halfLost(item, madeAt) then
  redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[3]))
  -- (Given up: MySQL may have the change the item lacks; the next PUT must not count from it either.)
  if ARGV[9] == '1' then giveUpHalf(item, madeAt, clockNow('')) end
  if KEYS[2] == item and flipped then redis.call('DEL', item) end
  return {'rebuilt'}
end
-- The half goes unless a retry took it over or MySQL has it (above), or MySQL's ledger, when the caller read it, has
-- this very half (a retry that took it over reverses it only so: the attempt it took it from may have committed it).
local ledger = ARGV[8] or ''
if unclear and ARGV[6] ~= '1' then
  if ledger == '' then
    return {'check'}
  end
  -- Not known (the ledger could not be read, or its row names no half): an addition goes, a removal stays (Redis never
  -- has more to sell than MySQL may have; the reconciler brings it to MySQL's count once its fence lapsed).
  kept = ledger == name or (ledger == '?' and tonumber(ARGV[1]) < 0)
elseif ledger ~= '' and ARGV[6] ~= '1' then
  kept = kept or ledger == name
end
if takenOver or kept then
  return {'done'}
end
redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[3]))
-- The half's own fence goes (a retry that took it over had closed it and opened its own, which it closes); a surplus
-- half a retry took over goes with that retry's fence and key (its own reversal finds the marker).
if ARGV[9] == '1' and madeAt then
  giveUpHalf(item, madeAt, clockNow(''))
else
  closeFence(item, madeAt, clockNow(''))
end
if taker then closeFence(item, taker, clockNow('')) end
if ours or taker then
  redis.call('DEL', KEYS[2])
end
-- A PUT that made the item infinite or finite changed what stock_num counts (set_stock.lua): the item is dropped
-- instead, and its next use rebuilds it from MySQL, which never had the change.
if flipped then
  redis.call('DEL', item)
  return {'ok', '0'}
end
local left = redis.call('HINCRBY', item, 'stock_num', int(-tonumber(ARGV[1])))
local infinite = redis.call('HGET', item, 'is_infinite') == '1'
redis.call('HSET', item, 'is_sell_out', (not infinite and left <= 0) and '1' or '0')
settingsBack()
return {'ok', left}
