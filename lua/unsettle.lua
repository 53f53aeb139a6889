-- unsettle.lua: an adjustment attempt whose COMMIT got no answer (MySQL may or may not have it) keeps its Redis half
-- (a removal: Redis never has more to sell than MySQL may have) and says so in the adjustment's key, so that a retry
-- completes the MySQL half at once instead of waiting for the attempt's time to run out (adjust_stock.lua).
--
-- KEYS[1] the adjustment key   ARGV[1] the mark its Redis half was made under (lib/fence.lua)   ARGV[2] fingerprint
--
-- Only while the key is still this attempt's pending one: a concurrent retry that settled it (the ledger had it)
-- must not see it turned back, or the fence would be closed twice.
--
-- Returns {'ok'} when written, {'gone'} when the key is not this attempt's pending one any more.

--!include fence

local saved = redis.call('GET', KEYS[1])
if not saved then return {'gone'} end
local fingerprint, mark, _, unsettled = adjustmentState(saved)
if fingerprint ~= ARGV[2] or mark ~= ARGV[1] or unsettled then return {'gone'} end
redis.call('SET', KEYS[1], 'unsettled:' .. ARGV[1] .. ':' .. ARGV[2], 'KEEPTTL')
return {'ok'}
