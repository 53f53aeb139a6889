#!lua flags=allow-oom
-- dir_transition.lua: Redis Cluster, decide an order's next state in its directory before its parts follow.
--
-- KEYS[1] the order's directory   KEYS[2] its shard's index of reserves under way (left when the order leaves
-- 'reserving')
-- ARGV[1] the new state   ARGV[2] the states it may come from ('reserved|confirmed')
-- ARGV[3] '' to change an existing directory only; otherwise the TTL (s) of a directory this records when there
--         is none (a cancel of an order never reserved, or an order restored from the journal)
-- ARGV[4] the shards of the parts of a directory this records ('' for none)   ARGV[5] its bizId   ARGV[6] orderId
-- ARGV[7] '1': a directory recorded cancelled is a cancel before any reserve: its event goes to KEYS[3] (the outbox
--         of the order's shard, same slot) in the same step, and becomes the order's tombstone in MySQL
-- ARGV[8] the request fingerprint a directory this records keeps ('#' .. SHA-1 for an order restored from the
--         journal, lib/request.lua; '' when not known)
--
-- Returns one of
--   {'ok'}            changed now
--   {'same'}          already in that state: the parts follow again (they may be behind after a crash)
--   {'state', state}  in another state it may not leave for this one
--   {'created', eventId} there was none; recorded in the new state (eventId: the tombstone's event, or '')
--   {'none'}          there is none (ARGV[3] '')

-- Last key and argument, taken off first: the key of the drain check (its shard's mark; on a single Redis the drain
-- sequence) and this instance's floor of it (lib/floor.lua); below the floor the script answers {'behind'} and changes
-- nothing.
--!include floor
--!include full

local behind = behindFloor()
if behind then return behind end

local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  if ARGV[3] == '' then
    return {'none'}
  end
  -- A record of an order this never saw (or one restored from the journal): refused while Redis is full
  -- (lib/full.lua).
  if redisFull() then return fullError() end
  redis.call('HSET', KEYS[1], 'state', ARGV[1], 'fp', ARGV[8] or '', 'biz', ARGV[5], 'shards', ARGV[4])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
  local id = ''
  if ARGV[7] == '1' and ARGV[1] == 'cancelled' then
    local t = redis.call('TIME')
    id = redis.call('XADD', KEYS[3], '*', 'type', 'cancel', 'order', ARGV[6], 'biz', '', 'items', '', 'at',
      tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  end
  return {'created', id}
end
if state == ARGV[1] then
  return {'same'}
end
for from in string.gmatch(ARGV[2], '[^|]+') do
  if state == from then
    redis.call('HSET', KEYS[1], 'state', ARGV[1])
    if state == 'reserving' then
      redis.call('ZREM', KEYS[2], ARGV[6])
    end
    return {'ok'}
  end
end
return {'state', state}
