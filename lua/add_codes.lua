-- add_codes.lua: add codes MySQL has just recorded to an item's code pool in Redis.
--
-- KEYS[1] item hash   KEYS[2] the item's code set
-- ARGV[1] a one-time pool's: the version of MySQL's stock row the upload made ('' for other pools)
-- ARGV[2..n] the codes (new to the pool: MySQL's unique key kept out those it had)
--
-- Returns {'ok', added} or {'missing'} (the item is not whole in Redis; the caller has it rebuilt and runs this again).
--
-- A one-time pool's item built (rebuilt, repaired) from a read of the stock row at that version or later counted
-- the codes already: they are in its set, or held or sold since, and adding them again would hand those out twice.
-- Nothing is added to it (`mysql_version`, lua/init_item.lua and lua/fix_item.lua: the read held the row, which the
-- upload's transaction changed, so it was wholly before or wholly after). A reusable pool's codes never leave its set:
-- adding them to any whole item is right.
--
-- A one-time pool's stock is its codes: stock_num grows by what the set gained, as MySQL's stock did. A reusable
-- pool counts its codes in codes_n, so that its set vanishing alone is noticed (lib/items.lua).

--!include items

if missingItems({KEYS[1]}, {KEYS[2]}) then
  return {'missing'}
end
local fields = redis.call('HMGET', KEYS[1], 'stock_num', 'pool_kind', 'mysql_version')
if ARGV[1] ~= '' and fields[2] == 'one_time' and tonumber(fields[3] or '-1') >= tonumber(ARGV[1]) then
  return {'ok', 0}
end
local added = 0
for first = 2, #ARGV, 500 do
  added = added + redis.call('SADD', KEYS[2], unpack(ARGV, first, math.min(first + 499, #ARGV)))
end
-- the code set lives as long as its item (reserve.lua keeps both warm)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
if added > 0 then redis.call('HINCRBY', KEYS[1], 'codes_n', added) end
if fields[2] == 'one_time' and added > 0 then
  local left = redis.call('HINCRBY', KEYS[1], 'stock_num', added)
  redis.call('HSET', KEYS[1], 'is_sell_out', left <= 0 and '1' or '0')
end
return {'ok', added}
