-- unsettle.lua: an adjustment attempt whose COMMIT got no answer (MySQL may or may not have it) keeps its Redis half
-- (a removal: Redis never has more to sell than MySQL may have) and says so in the adjustment's key, so that a retry
-- completes the MySQL half at once instead of waiting for the attempt's time to run out (adjust_stock.lua).
--
-- KEYS[1] the adjustment key   ARGV[1] its half's token (lib/fence.lua)   ARGV[2] fingerprint
--
-- Only while the key is still this attempt's pending one: a concurrent retry that settled it (the ledger had it)
-- must not see it turned back, or the fence would be closed twice.
--
-- Returns {'ok'} when written, {'gone'} when the key is not this attempt's pending one any more.

--!include fence

local saved = redis.call('GET', KEYS[1])
if not saved or not namesHalf(saved, ARGV[2], ARGV[1]) then return {'gone'} end
local _, _, _, unsettled = adjustmentState(saved)
if unsettled then return {'gone'} end
redis.call('SET', KEYS[1], 'unsettled:' .. string.sub(saved, 9), 'KEEPTTL')
return {'ok'}
