-- lib/usage.lua: an item's per-user usage hash (see reserve.lua). Not a script of its own: the scripts that count
-- or give back a user's units include it where they say `--!include usage` (see InventoryScripts.load).
--
-- The hash maps userId -> 'window:units'. It holds only what counts: an entry whose units drop to 0 is deleted, and
-- entries of past windows are pruned a few at a time by the reserves that count in the hash, so its size is the
-- number of users with units in the current window (or, without a window, over the item's life), not every user
-- the item ever had. A hash left empty is no key at all: the item's has_users flag goes back to '0' with it, or
-- the item would count as not whole (lib/items.lua) and be rebuilt for nothing.

-- Hash entries examined per counting reserve (a hash small enough to be one listpack, up to 128 entries by default,
-- is examined whole: HSCAN returns it in one page): past-window entries are deleted at least this fast.
local usagePruneStep = 16

-- A user's units in `window` (0 when the entry is of another window, or none).
local function usageUnits(usersKey, user, window)
  local usedWindow, units = string.match(redis.call('HGET', usersKey, user) or '', '^(%d+):(%d+)$')
  if tonumber(usedWindow) ~= window then return 0 end
  return tonumber(units)
end

-- The item's has_users flag follows its hash: '1' while the hash has entries, '0' once it has none.
local function usageFlag(itemKey, usersKey)
  if redis.call('EXISTS', usersKey) == 0 then
    redis.call('HSET', itemKey, 'has_users', '0')
  end
end

-- Sets a user's units in `window`; 0 deletes the entry.
local function setUsage(itemKey, usersKey, user, window, units)
  if units > 0 then
    redis.call('HSET', usersKey, user, window .. ':' .. units)
  else
    redis.call('HDEL', usersKey, user)
    usageFlag(itemKey, usersKey)
  end
end

-- Deletes entries of windows before `window` among the next few of the hash (a cursor kept in the item's
-- 'users_cursor' field walks the whole hash over successive calls); true when that left the hash empty (its item's
-- has_users is then '0'). Nothing to do without a window: every entry counts over the item's life. Entries of a
-- later window (written while a clock was ahead) and of another window length (user_window changed) are left: they
-- count again if that window comes or that length is set back.
--
-- A script calls it before its first write: an error here (Redis out of memory) must not leave a change half done.
local function pruneUsage(itemKey, usersKey, window)
  if window <= 0 then return false end
  local cursor = redis.call('HGET', itemKey, 'users_cursor') or '0'
  local page = redis.call('HSCAN', usersKey, cursor, 'COUNT', usagePruneStep)
  local stale = {}
  for j = 1, #page[2], 2 do
    local usedWindow = tonumber(string.match(page[2][j + 1], '^(%d+):'))
    if usedWindow == nil or usedWindow < window then stale[#stale + 1] = page[2][j] end
  end
  redis.call('HSET', itemKey, 'users_cursor', page[1])
  if #stale == 0 then return false end
  for first = 1, #stale, 500 do
    redis.call('HDEL', usersKey, unpack(stale, first, math.min(first + 499, #stale)))
  end
  usageFlag(itemKey, usersKey)
  return redis.call('EXISTS', usersKey) == 0
end
