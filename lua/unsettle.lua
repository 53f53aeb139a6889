#!lua flags=allow-oom
-- unsettle.lua: a stock change whose COMMIT got no answer (MySQL may or may not have it) keeps its Redis half (a
-- removal: Redis never has more to sell than MySQL may have). An adjustment says so in its key, so that a retry
-- completes the MySQL half at once instead of waiting for the attempt's time to run out (adjust_stock.lua).
--
-- KEYS[1] the item hash   KEYS[2] the adjustment key, or the item key again for a PUT
-- ARGV[1] the half's token (lib/fence.lua)   ARGV[2] fingerprint ('' for a PUT)
--
-- The key is marked only while it is still this attempt's pending one: a concurrent retry that settled it (the
-- ledger had it) must not see it turned back, or the fence would be closed twice.
--
-- A PUT's half leaves the fence at once for the item's stale list (lib/fence.lua): its caller is gone, so nothing of
-- it is under way, and the next PUT of the item must not take its delta from the item, which may differ from MySQL by
-- the half (kept here, or reversed by the caller while MySQL may have it): it rebuilds the item from MySQL first.
-- An adjustment's stays in the fence (a retry takes it over, adjust_stock.lua).
--
-- The half is kept only in the item it was made in. An item written from MySQL since (a rebuild or a repair, which
-- waited for the stock row MySQL's half held and read it before that half's COMMIT) has not got it, while MySQL may:
-- it is dropped, and its next use rebuilds it from MySQL's outcome.
--
-- Returns {'ok'} when the key was marked (a PUT: always), {'gone'} when it is not this attempt's pending one any
-- more.

--!include clock
--!include fence

local item = KEYS[1]
local result = {'ok'}
if KEYS[2] ~= item then
  local saved = redis.call('GET', KEYS[2])
  if not saved or not namesHalf(saved, ARGV[2], ARGV[1]) or adjustmentState(saved).unsettled then
    result = {'gone'}
  else
    redis.call('SET', KEYS[2], 'unsettled:' .. string.sub(saved, 9), 'KEEPTTL')
  end
end
local current = redis.call('HMGET', item, 'stock_num', 'epoch', 'repairs')
local mark, at = halfToken(ARGV[1])
if current[1] and mark ~= '' and mark ~= itemMark(current[2], current[3]) then
  redis.call('DEL', item)
elseif current[1] and KEYS[2] == item and at then
  giveUpHalf(item, at, clockNow(''))
end
return result
