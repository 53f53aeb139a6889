-- fill_part.lua: one part of a rebuilt item's code set or per-user usage hash, if this caller still holds the item's
-- init lock (lib/parts.lua). A rebuild gives init_item.lua the pool's usable codes and the users' counts in parts of
-- at most INVENTORY_REBUILD_CHUNK: the parts before the last come here, one call each, so that a pool of 200,000 codes
-- or an item with 100,000 limited users does not stop Redis for one long script. Until init_item.lua writes the item
-- (it has only its lock meanwhile) no script reads or changes the set or the hash: each answers `missing` first
-- (lib/items.lua); the export and the reconciler's count of a one-time pool read only a whole item.
--
-- KEYS[1] the item hash   KEYS[2] its code set (kind 'codes') or its usage hash (kind 'users')
-- ARGV[1] caller id   ARGV[2] the init lock's lifetime (ms)   ARGV[3] kind   ARGV[4] how many members the parts
-- before this one wrote (0: this is the first, the key is emptied first)   ARGV[5] the current window (users)
-- ARGV[6] the item's TTL (s, 0 = none), which the key gets now: it lives as long as a whole item's would, however
-- long the parts after it take (a rebuild that dies leaves it to the next one, which empties it first)
-- ARGV[7..] the codes, or pairs of userId and that user's units in the current window
--
-- Returns {'ok'}, or {'lost'} when nothing was written: the lock was taken over or the item appeared meanwhile, or
-- the key lost members since the part before (it was evicted or deleted), in which case the lock-only hash is dropped
-- too, so the caller's rebuild starts over at once.

--!include clock
--!include parts
if not holdsInitLock(KEYS[1], ARGV[1]) then
  return {'lost'}
end
if not partsIntact(KEYS[2], ARGV[3] == 'codes' and 'SCARD' or 'HLEN', tonumber(ARGV[4])) then
  redis.call('DEL', KEYS[1])
  return {'lost'}
end
renewInitLock(KEYS[1], tonumber(ARGV[2]))
fillMembers(KEYS[2], ARGV[3], ARGV[5], 7, #ARGV)
if tonumber(ARGV[6]) > 0 then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6])) end
return {'ok'}
