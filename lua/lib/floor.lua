-- lib/floor.lua: the one check that Redis has not gone back in time past what this instance knows MySQL recorded.
-- Not a script of its own: the scripts that decide on an order or an item's stock include it where they say
-- `--!include floor`, and call `behindFloor()` first, before they read or write anything else.
--
-- Every MySQL transaction that records a shard's Redis changes has Redis raise the shard's drain mark and records the
-- value Redis handed out (lua/drain_mark.lua, migrations/0017). Each instance remembers, per shard, the highest value
-- it saw handed out to its own transactions or read from MySQL (about once a second): the shard's floor
-- (`DrainFloors`). A Redis below a floor went back in time (restored from an older snapshot, a failover to a replica
-- that was behind, or it lost everything: a missing key is 0): what it says of orders and stock is older than what
-- MySQL has, and a hold on its counts could sell units MySQL knows are held. The script answers {'behind'} having
-- changed nothing; the service checks the marks against MySQL's, forgets Redis if so (as the write-back worker's check
-- does) and runs the script again.
--
-- The key checked: on a cluster the script's shard's mark (its keys share one slot); on a single Redis, whose shards go
-- back together, the drain sequence every mark's value is drawn from and which stays at or above all of them
-- (`KeyLayout.drainSequence`), against the highest floor of any shard: one GET either way.
--
-- The caller appends that key as the last key and the floor as the last argument (0: nothing known yet, no check);
-- `behindFloor` takes both off KEYS and ARGV, so the script reads its own keys and arguments as its header numbers
-- them, and refuses a call whose last key is not such a key (a caller that appended nothing would otherwise lose its
-- own last key and argument here).

local function behindFloor()
  local mark = table.remove(KEYS)
  local floor = tonumber(table.remove(ARGV))
  if not (string.find(mark, ':drained$') or string.find(mark, ':drained:seq$')) or not floor then
    return redis.error_reply('floor: the last key and argument are not a drain mark and its floor')
  end
  if floor > 0 and (tonumber(redis.call('GET', mark)) or 0) < floor then
    return {'behind'}
  end
  return nil
end
