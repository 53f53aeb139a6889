-- duplicate_held.lua: how much of a duplicate hold of an ended order (a retry after retention Redis held anew;
-- reserve_duplicates RESERVED, migrations/0020) its item counts now, read at one instant for the reconciler
-- (Reconciler+Reads.swift): its quantity while its order's record still has it (that reserve's, still held) and its
-- reserve key (or, vanished, the record's epoch of the line) names the item's epoch or one it absorbed, as every script
-- that ends a hold judges it (lib/items.lua: holdIn); 0 otherwise (taken back, ended, lost with Redis's data, or of an
-- epoch the item does not count, which the worker leaves out as stale). A rebuild counts the same ones
-- (init_item.lua).
--
-- KEYS[1] the item hash   KEYS[2] the hold's reserve key   KEYS[3] its order's record (on a cluster the order's part
-- on the item's shard)
-- ARGV[1] the duplicate's reserve event   ARGV[2] its quantity   ARGV[3] the item's SKU
--
-- Returns the units the item counts of the hold (an integer).
--!include items
--!include restamp

local held = redis.call('HMGET', KEYS[3], 'event', 'status', 'lines', 'line_epochs')
if held[1] ~= ARGV[1] or held[2] ~= 'reserved' then
  return 0
end
local item = redis.call('HMGET', KEYS[1], 'epoch', 'absorbed')
if not item[1] then
  return 0
end
local quantity, counted = holdIn(KEYS[2], item[1], tonumber(ARGV[2]), lineEpochOf(held[3], held[4], ARGV[3]), item[2])
if not counted then
  return 0
end
return quantity
