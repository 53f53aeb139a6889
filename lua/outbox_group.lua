#!lua flags=allow-oom
-- outbox_group.lua: the write-back worker's consumer group on an outbox stream, made when it is missing (with the
-- stream, when that is missing too). Runs when Redis is full: a settling script (confirm, cancel) run while Redis is
-- full after it lost a stream appends to the stream again, which makes it without its group, and until the group is
-- there nothing of the stream is written back. A group (and an empty stream, where none is) costs a few hundred bytes.
--
-- KEYS[1] the outbox stream   ARGV[1] the group
--
-- Returns 1 when the group was made now, 0 when it was there.

local made = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if type(made) == 'table' and made.err then
  if string.find(made.err, 'BUSYGROUP', 1, true) then
    return 0
  end
  return redis.error_reply(made.err)
end
return 1
