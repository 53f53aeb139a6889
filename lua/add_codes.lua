-- add_codes.lua: add codes MySQL has just recorded to an item's code pool in Redis.
--
-- KEYS[1] item hash   KEYS[2] the item's code set
-- ARGV[1] the item's epoch the caller read before MySQL recorded the codes ('' when the item was not whole then)
-- ARGV[2..n] the codes (new to the pool: MySQL's unique key kept out those it had)
--
-- Returns {'ok', added}; {'missing'} (the item is not whole in Redis); or {'rebuilt'} (the item is not the one the
-- caller read: rebuilt since, from a read of MySQL that may have come after the codes were recorded, so its set may
-- have them already and a reserve may have taken some since: adding them again would hand those out twice). Nothing
-- is added then; the caller drops the item and has it rebuilt from MySQL, which has the codes.
--
-- A one-time pool's stock is its codes: stock_num grows by what the set gained, as MySQL's stock did. A reusable
-- pool counts its codes in codes_n, so that its set vanishing alone is noticed (lib/items.lua).

--!include items

if missingItems({KEYS[1]}, {KEYS[2]}) then
  return {'missing'}
end
local fields = redis.call('HMGET', KEYS[1], 'stock_num', 'pool_kind', 'epoch')
if ARGV[1] == '' or fields[3] ~= ARGV[1] then
  return {'rebuilt'}
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
