#!lua flags=allow-oom
-- outbox_claim.lua: the write-back worker's claim of entries another consumer read and never acknowledged, in a
-- stream it holds, fenced by the stream's lease like its reads (lua/outbox_read.lua): a claim that reaches Redis
-- after the lease ran out claims nothing (it would move entries the stream's new holder must apply first into the
-- pending list of a worker that can no longer read them). Runs when Redis is full, as XAUTOCLAIM does.
--
-- KEYS[1] the stream's lease   KEYS[2] the stream
-- ARGV[1] the lease owner   ARGV[2] the group   ARGV[3] the consumer   ARGV[4] idle at least (ms)
-- ARGV[5] the cursor ('0-0' first)   ARGV[6] entries at most
--
-- Returns {'claimed', next cursor ('0-0' when done), entries claimed}, {'lost'} (the lease is not the owner's:
-- nothing claimed) or {'nogroup'} (the stream or its group is missing: nothing is pending).

if redis.pcall('GET', KEYS[1]) ~= ARGV[1] then
  return {'lost'}
end
local claimed = redis.pcall('XAUTOCLAIM', KEYS[2], ARGV[2], ARGV[3], ARGV[4], ARGV[5], 'COUNT', ARGV[6], 'JUSTID')
if type(claimed) == 'table' and claimed.err then
  if string.find(claimed.err, 'NOGROUP', 1, true) then
    return {'nogroup'}
  end
  return redis.error_reply(claimed.err)
end
return {'claimed', claimed[1], #claimed[2]}
