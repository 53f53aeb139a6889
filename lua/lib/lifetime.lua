-- lib/lifetime.lua: an item's keys live and die together. Not a script of its own: included where a script says
-- `--!include lifetime` (after `--!include clock`).
--
-- An item's hash, its per-user usage hash and its code set expire at one instant: a usage hash or code set that
-- expired while its item lives leaves the item not whole (lib/items.lua), and its next use rebuilds it from MySQL.
-- EXPIRE reads the clock anew for each key, even within one script (Redis 7.0: a busy machine put a millisecond
-- between two of them), so the instant is read once and given to each key with PEXPIREAT.

-- Gives each of `keys` that exists `seconds` from now, one instant for all (0: no expiry).
local function expireTogether(keys, seconds)
  if seconds > 0 then
    local at = clockNow('') + seconds * 1000
    for _, key in ipairs(keys) do redis.call('PEXPIREAT', key, at) end
  else
    for _, key in ipairs(keys) do redis.call('PERSIST', key) end
  end
end
