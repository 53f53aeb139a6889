-- lib/floor.lua: the one check that Redis has not gone back in time past what this instance knows MySQL recorded.
-- Not a script of its own: the scripts that decide on an order or an item's stock include it where they say
-- `--!include floor`, and call `behindFloor()` first, before they read or write anything else.
--
-- Every MySQL transaction that records a shard's Redis changes has Redis raise the shard's drain mark and records the
-- value Redis handed out (lua/drain_mark.lua, migrations/0017). The service remembers the highest value it saw handed
-- out or read from MySQL: the shard's floor (`DrainFloors`). A Redis whose mark is below the floor went back in time
-- (restored from an older snapshot, a failover to a replica that was behind, or it lost everything: a missing mark is
-- 0): what it says of orders and stock is older than what MySQL has, and a hold on its counts could sell units MySQL
-- knows are held. The script answers {'behind'} having changed nothing; the service checks the marks against MySQL's,
-- forgets Redis if so (as the write-back worker's check does) and runs the script again.
--
-- The caller appends the shard's drain mark as the last key and the floor as the last argument (0: nothing known
-- yet, no check); `behindFloor` takes both off KEYS and ARGV, so the script reads its own keys and arguments as its
-- header numbers them.

local function behindFloor()
  local mark = table.remove(KEYS)
  local floor = tonumber(table.remove(ARGV))
  -- A caller that did not append the pair would lose its last key and argument here, silently.
  if not (string.find(mark, ':drained$') or string.find(mark, ':drained:seq$')) or not floor then
    return redis.error_reply('floor: the last key and argument are not a drain mark and its floor')
  end
  if floor > 0 and (tonumber(redis.call('GET', mark)) or 0) < floor then
    return {'behind'}
  end
  return nil
end
