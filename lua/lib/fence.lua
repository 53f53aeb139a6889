-- lib/fence.lua: a stock change with a Redis half and a MySQL half (PUT, adjustment) fences its item from the
-- reconciler's repair between the two. Not a script of its own: included where a script says `--!include fence`.
--
-- The Redis half opens the fence in the script that moves the counters: its time goes into the item's `admin_open`
-- (the open halves' times, space-separated, each unique within the item); admin_done.lua closes it after the MySQL
-- half, or undo_stock.lua when the change is reversed, by that time (the half's token carries it: 'mark@ms'). While
-- any half younger than FENCE_MS is open the reconciler takes the item as in flight (snapshot.lua) and fix_item.lua
-- refuses to write it, so a repair cannot write the old counters back under a change MySQL is about to get. A half
-- older than FENCE_MS belongs to a caller that died between the halves: it no longer holds (whatever other halves
-- come and go meanwhile), it moves to the stale list when the list is next written, and a repair clears the list.
--
-- The stale list (`admin_stale`, their times) keeps the halves nobody closed: such a half may be in Redis and not in
-- MySQL. They fence nothing, but a PUT, which turns the on-hand stock asked for into a delta from what the item
-- counts now, must not count them: MySQL would get a delta short by the half (set_stock.lua drops the item for a
-- rebuild from MySQL instead). A PUT whose COMMIT got no answer puts its half there at once (unsettle.lua). A
-- repair or a rebuild writes the counters from MySQL, and the list goes with them; a half's own close or reversal
-- (a caller that was only slow, a reversal task) takes its time out.
--
-- Before each half had its own entry the fence was a count (`admin_pending`) dated by its first change
-- (`admin_since`): a count a dead caller left kept later changes unfenced once it lapsed. Those fields are still read
-- (and a token without a time closes the count) until they lapse.

local FENCE_MS = 60000

-- The open halves' times still within FENCE_MS of now (strings, as stored), the latest of those that lapsed (nil
-- when none did), and the lapsed ones (strings).
local function openHalves(item, now)
  local live, lapsed, stale = {}, nil, {}
  for at in string.gmatch(redis.call('HGET', item, 'admin_open') or '', '%d+') do
    if now - tonumber(at) < FENCE_MS then
      live[#live + 1] = at
    else
      stale[#stale + 1] = at
      if not lapsed or tonumber(at) > lapsed then lapsed = tonumber(at) end
    end
  end
  return live, lapsed, stale
end

-- The stale list's entries (strings: a lapsed half's time; 'u' and its time for a half given up, which no close takes
-- off: MySQL's outcome of it is not known, whatever Redis does with it), and it written back.
local function staleHalves(item)
  local list = {}
  for at in string.gmatch(redis.call('HGET', item, 'admin_stale') or '', 'u?%d+') do list[#list + 1] = at end
  return list
end

local function writeStale(item, list)
  if #list == 0 then
    redis.call('HDEL', item, 'admin_stale')
  else
    redis.call('HSET', item, 'admin_stale', table.concat(list, ' '))
  end
end

-- Takes the half opened at `at` off the stale list (its caller closed or reversed it after all).
local function dropStale(item, at)
  local list, kept = staleHalves(item), {}
  if #list == 0 then return end
  for _, stale in ipairs(list) do
    if stale ~= tostring(at) then kept[#kept + 1] = stale end
  end
  writeStale(item, kept)
end

-- Writes the open halves; a half whose entry lapsed is remembered by the latest such time (`admin_lapsed`): a half
-- made after it whose entry is gone without being closed went with Redis data that was lost (halfLost). An item
-- without the field (written before it was kept, when lapsed entries went unrecorded) gets the latest time such an
-- entry can have had: a fence's lifetime ago.
-- `stale`: halves that lapsed (or were given up), for the stale list.
local function writeHalves(item, halves, lapsed, now, stale)
  if #halves == 0 then
    redis.call('HDEL', item, 'admin_open')
  else
    redis.call('HSET', item, 'admin_open', table.concat(halves, ' '))
  end
  if stale and #stale > 0 then
    local list = staleHalves(item)
    for _, at in ipairs(stale) do list[#list + 1] = at end
    writeStale(item, list)
  end
  local known = redis.call('HGET', item, 'admin_lapsed')
  local floor = known and tonumber(known) or now - FENCE_MS
  if not known or (lapsed and lapsed > floor) then
    redis.call('HSET', item, 'admin_lapsed', math.max(floor, lapsed or floor))
  end
end

-- Opens a half's fence at `now`; returns its time, the token's: now, or the next millisecond no open half of the item
-- has (two halves opened in one millisecond).
local function openFence(item, now)
  local halves, lapsed, stale = openHalves(item, now)
  local taken = {}
  for _, at in ipairs(halves) do taken[at] = true end
  for _, at in ipairs(stale) do taken[at] = true end
  for _, at in ipairs(staleHalves(item)) do taken[at] = true end
  local at = now
  while taken[tostring(at)] do at = at + 1 end
  halves[#halves + 1] = tostring(at)
  writeHalves(item, halves, lapsed, now, stale)
  return at
end

-- Writes the open halves without the one opened at `at`, the lapsed ones onto the stale list after `stale` (a list
-- to start it with).
local function withoutHalf(item, at, now, stale)
  local halves = {}
  local live, lapsed, lapsedNow = openHalves(item, now)
  for _, open in ipairs(live) do
    if open ~= tostring(at) then halves[#halves + 1] = open end
  end
  for _, open in ipairs(lapsedNow) do
    if open ~= tostring(at) then stale[#stale + 1] = open end
  end
  writeHalves(item, halves, lapsed, now, stale)
end

-- Closes the fence of the half opened at `at` (nil: a token from before halves had times, which closes the count).
local function closeFence(item, at, now)
  if at then
    dropStale(item, at)
    withoutHalf(item, at, now, {})
  elseif redis.call('HEXISTS', item, 'admin_pending') == 1 then
    if redis.call('HINCRBY', item, 'admin_pending', -1) <= 0 then
      redis.call('HDEL', item, 'admin_pending', 'admin_since')
    end
  end
end

-- A half whose caller gave up without learning MySQL's outcome (a PUT's COMMIT that got no answer, unsettle.lua; the
-- half kept, or reversed in Redis while MySQL may have it): out of the fence, and onto the stale list as given up, at
-- once; a later reversal of it (a stored task) leaves that entry.
local function giveUpHalf(item, at, now)
  withoutHalf(item, at, now, {'u' .. at})
end

-- Whether the item has a half nobody closed, that may be in Redis and not in MySQL: on the stale list, lapsed in the
-- open list, or a count of before halves had times that lapsed.
local function hasStaleHalf(item, now)
  local _, _, lapsedNow = openHalves(item, now)
  if #lapsedNow > 0 or redis.call('HEXISTS', item, 'admin_stale') == 1 then return true end
  local f = redis.call('HMGET', item, 'admin_pending', 'admin_since')
  return tonumber(f[1] or '0') > 0 and now - tonumber(f[2] or '0') >= FENCE_MS
end

-- Whether the half opened at `at`, not closed by its caller, went with Redis data that was lost (a restart that lost
-- its last writes, a failover to a replica behind): its entry is gone, and not because it lapsed (it was made after
-- the latest entry that lapsed). No clock is read: one that moved with a failover misjudges nothing. (Its own close,
-- a takeover's, a repair's, a drop of the item also remove it: the callers rule those out.)
local function halfLost(item, at)
  local f = redis.call('HMGET', item, 'admin_open', 'admin_lapsed', 'admin_stale')
  -- (An item without the field cannot tell: written before it was kept.)
  if not f[2] then return false end
  for open in string.gmatch((f[1] or '') .. ' ' .. (f[3] or ''), '%d+') do
    if tonumber(open) == at then return false end
  end
  return at > tonumber(f[2])
end

-- Whether a change's halves are still under way (a half opened less than FENCE_MS ago).
local function fenced(item, now)
  local f = redis.call('HMGET', item, 'admin_open', 'admin_pending', 'admin_since')
  if f[1] then
    for at in string.gmatch(f[1], '%d+') do
      if now - tonumber(at) < FENCE_MS then return true end
    end
  end
  return tonumber(f[2] or '0') > 0 and now - tonumber(f[3] or '0') < FENCE_MS
end

-- A repair wrote the item's counters from MySQL: every fence it had lapsed (it is not fenced), and goes.
local function clearFences(item)
  redis.call('HDEL', item, 'admin_open', 'admin_pending', 'admin_since', 'admin_stale')
  -- (Nothing under the repaired counters' mark has lapsed yet.)
  redis.call('HSET', item, 'admin_lapsed', '0')
end

-- The mark of an item's counters as a stock change's Redis half finds them: the item's epoch and how many times the
-- reconciler repaired it (fix_item.lua counts `repairs`). A half made under a mark is in the item while the item has
-- that mark; a rebuild (a new epoch) or a repair (counters written from MySQL) leaves out every half MySQL did not
-- have. An undo (undo_stock.lua), a retry of an adjustment whose MySQL half is not known done (adjust_stock.lua) and
-- the close of its fence (admin_done.lua) act on a half only while its mark holds.
local function itemMark(epoch, repairs)
  return (epoch or '') .. '/' .. (repairs or '0')
end

-- A stock change's half is owned by its token, 'mark@ms': the item's mark and the time its fence was opened, when the
-- half was made or last taken over by a retry (adjust_stock.lua); its name is the token it was made with (below). A
-- PUT's token from before PUTs' halves had times is the mark alone. Returns the mark and the time (nil without one).
local function halfToken(token)
  local mark, at = string.match(token, '^(.*)@(%d+)$')
  if mark then return mark, tonumber(at) end
  return token, nil
end

-- An adjustment key's value: '<state>:<mark>:<ms>:<made>:' .. fingerprint, state 'pending' until its MySQL half is
-- known done, 'unsettled' when the attempt ended without learning MySQL's outcome, 'done' once done (a replay that
-- found the adjustment in MySQL's ledger alone writes the bare fingerprint). <mark>:<ms> is the token of the half's
-- owner (the attempt that made it, or the retry that last took it over: its fence's time); <made> the time the half
-- was made, which with the mark names the half whoever owns it ('mark@made', its name: MySQL's ledger records the
-- name of the half its row belongs to, StockRepository). A fingerprint ('delta|reason') holds the free-text reason,
-- so it comes last. Keys written before halves had names lack <made> (the owner's time stands in for it, `unnamed`),
-- and keys of before marks are 'unsettled:' .. fingerprint.
-- Returns a table: fingerprint; mark and at (the owner's token's; mark nil when done, '' for a key of before marks);
-- unsettled; done (the owner's token when done); half (the half's name; nil without a token); unnamed.
local function adjustmentState(value)
  local state, mark, at, made, fingerprint = string.match(value, '^(%a+):([%w-]*/%d+):(%d+):(%d+):(.*)$')
  local unnamed = false
  if not state then
    state, mark, at, fingerprint = string.match(value, '^(%a+):([%w-]*/%d+):(%d+):(.*)$')
    made, unnamed = at, true
  end
  if state == 'pending' or state == 'unsettled' or state == 'done' then
    local key = {fingerprint = fingerprint, at = tonumber(at), unsettled = state == 'unsettled',
      made = not unnamed and made or nil, half = mark .. '@' .. made, unnamed = unnamed}
    if state == 'done' then key.done = mark .. '@' .. at else key.mark = mark end
    return key
  end
  if string.sub(value, 1, 10) == 'unsettled:' then
    return {fingerprint = string.sub(value, 11), mark = '', unsettled = true, unnamed = true}
  end
  return {fingerprint = value, unnamed = true}
end

-- An adjustment key's value (above): `state` of the half named `mark`@`made`, owned by the token `mark`@`at`; a key
-- from before halves had names (`made` nil) stays one (its time is its owner's, which need not be its half's: a name
-- made up from it would misname the half).
local function adjustmentValue(state, mark, at, made, fingerprint)
  return state .. ':' .. mark .. ':' .. at .. ':' .. (made and (made .. ':') or '') .. fingerprint
end

-- Whether an adjustment key names the half of `token` as its owner (its fingerprint, its mark and time).
local function namesHalf(value, fingerprint, token)
  local key = adjustmentState(value)
  local mark, at = halfToken(token)
  return key.fingerprint == fingerprint and key.mark == mark and key.at == at
end
