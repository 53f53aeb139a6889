-- outbox_entries.lua: the entries of these ids still in an outbox stream, read in one step: an order's or an item's
-- events found through the instance's index (OutboxIndex) are read together, so that a reserve and the undo that
-- cancels it, acknowledged and deleted together by the worker, are read both or neither (one without the other would
-- apply the reserve again after the undo removed its journal row). The caller reads at most a page of ids at a time
-- and checks the earlier pages again after the last (EngineStores.pendingEvents(of:in:)).
--
-- KEYS[1] the stream   ARGV the ids, in stream order
--
-- Returns {'entries', e1, e2, ...}: each as XRANGE gives it ({id, {field, value, ...}}), in the order of ARGV, the
-- ids no longer in the stream left out.

local found = {'entries'}
for index = 1, #ARGV do
  local entry = redis.call('XRANGE', KEYS[1], ARGV[index], ARGV[index])
  if entry[1] then
    found[#found + 1] = entry[1]
  end
end
return found
