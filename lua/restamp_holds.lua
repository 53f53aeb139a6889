-- restamp_holds.lua: one part of a rebuild's holds re-stamped with the item's new epoch (lib/restamp.lua), if this
-- caller still holds the item's init lock. A rebuild gives init_item.lua its holds in parts of at most
-- INVENTORY_REBUILD_CHUNK (1,000): the parts before the last come here, one call each, so that an item with many
-- live holds does not stop Redis for one long script. Between the calls the item is not whole (it has only its
-- lock), so every script that would read or change one of its holds answers `missing` and waits for the rebuild.
-- A rebuild that loses its lock meanwhile leaves the parts it did re-stamped with an epoch the item never gets; the
-- caller that took the lock over re-stamps every hold it counts again. Each part renews the lock (lib/parts.lua).
--
-- KEYS[1] the item hash, then per hold j = 1..h its reserve key KEYS[1+j], its order hash KEYS[1+h+j] and the order
-- under its bare orderId KEYS[1+2h+j] (see lib/restamp.lua)
-- ARGV[1] caller id   ARGV[2] the item's new epoch   ARGV[3] the init lock's lifetime (ms)   ARGV[4] h, then per hold
-- ARGV[3+2j] its quantity and ARGV[4+2j] the TTL (s) of its reserve key if it must be written anew
--
-- Returns {'ok', 'e1,e2'} (the epochs the reserve keys named before, for init_item.lua to absorb like its own), or
-- {'lost'} when the lock was taken over or the item appeared meanwhile (nothing written).

--!include clock
--!include parts
--!include restamp
if not holdsInitLock(KEYS[1], ARGV[1]) then
  return {'lost'}
end
renewInitLock(KEYS[1], tonumber(ARGV[3]))
local seen = {}
local names = {}
restampHolds(KEYS[1], tonumber(ARGV[4]), 1, 4, ARGV[2], function(epoch)
  if epoch and not seen[epoch] then
    seen[epoch] = true
    names[#names + 1] = epoch
  end
end)
return {'ok', table.concat(names, ',')}
