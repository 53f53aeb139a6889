#!lua flags=allow-oom
-- applied.lua: the write-back worker has committed a confirm or refund line to MySQL; stop counting it as
-- in flight. Runs once per line however often the worker is handed the same outbox entry.
--
-- KEYS[1] item hash   KEYS[2] marker key of this line and event kind
-- ARGV[1] counter field: confirmed_unapplied | refund_unapplied   ARGV[2] quantity   ARGV[3] marker TTL (s)
-- ARGV[4] the item's epoch when the line was made: an item rebuilt since then was rebuilt from a MySQL that
--         already had the line, with the counter at 0, so there is nothing to correct
--
-- Returns 1 when the counter moved, 0 when this line had been counted before.

--!include integer

if redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[3])) then
  -- An item that is gone from Redis has no counter left to correct; the init path rebuilds it from MySQL.
  local item = redis.call('HMGET', KEYS[1], 'stock_num', 'epoch')
  if item[1] and (item[2] or '') == ARGV[4] then
    redis.call('HINCRBY', KEYS[1], ARGV[1], int(-tonumber(ARGV[2])))
  end
  return 1
end
return 0
