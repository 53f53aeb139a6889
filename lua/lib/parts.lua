-- lib/parts.lua: a rebuild in parts. Not a script of its own: scripts include it where they say `--!include parts`
-- (after `--!include clock`; see InventoryScripts.load).
--
-- A rebuild writes what MySQL has of an item in parts of at most INVENTORY_REBUILD_CHUNK records (live holds,
-- codes, per-user counts), one short script each, so that a big item never stops Redis for one long script:
-- restamp_holds.lua re-stamps holds, fill_part.lua fills the code set and the usage hash, init_item.lua writes the
-- last part of each with the item. Every part runs only under its caller's init lock, and renews it.

-- Whether `caller` still holds the init lock of the item being rebuilt (init_lock.lua): the item has no stock_num
-- yet (nobody wrote it meanwhile) and its lock names the caller (nobody took it over).
local function holdsInitLock(item, caller)
  local fields = redis.call('HMGET', item, 'stock_num', 'lock_user_id')
  return not fields[1] and fields[2] == caller
end

-- A part renews the lock as init_lock.lua sets it (its time and the lock-only hash's TTL), so that a rebuild of many
-- parts is not taken over while it makes progress.
local function renewInitLock(item, lockMilliseconds)
  redis.call('HSET', item, 'lock_time', clockNow(''))
  redis.call('PEXPIRE', item, lockMilliseconds * 2)
end

-- Whether the code set or usage hash `key` holds exactly the `before` members the parts before this one wrote
-- (`count` is SCARD or HLEN); the first part (before = 0) empties it. A key that lost members between two parts (its
-- TTL ran out, Redis evicted it, an operator deleted it) is not: the rebuild must start over, not install an item
-- whose set is short. The old key is UNLINKed: a set of 200,000 codes took Redis 60 ms to free in place.
local function partsIntact(key, count, before)
  if before == 0 then
    redis.call('UNLINK', key)
    return true
  end
  return redis.call(count, key) == before
end

-- Writes ARGV[first..last] into `key`: codes into the code set (kind 'codes'), or pairs of userId and units into the
-- usage hash as '<window>:<units>' (kind 'users'; lib/usage.lua reads them so).
local function fillMembers(key, kind, window, first, last)
  if kind == 'codes' then
    for from = first, last, 500 do
      redis.call('SADD', key, unpack(ARGV, from, math.min(from + 499, last)))
    end
    return
  end
  for from = first, last, 400 do
    local chunk = {}
    for j = from, math.min(from + 398, last - 1), 2 do
      chunk[#chunk + 1] = ARGV[j]
      chunk[#chunk + 1] = window .. ':' .. ARGV[j + 1]
    end
    if #chunk > 0 then redis.call('HSET', key, unpack(chunk)) end
  end
end
