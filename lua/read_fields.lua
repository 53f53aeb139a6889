-- read_fields.lua: fields of one hash (an order, an order's part, a directory, an item), read only once Redis is
-- known not to have gone back past this instance's floor: what a client is shown, or what a decision starts from, is
-- never older than what MySQL has recorded (a confirmed order read back as held, a stock level without holds MySQL has).
--
-- KEYS[1] the hash    ARGV the fields
-- Last key and argument, taken off first: the key of the drain check (its shard's mark; on a single Redis the drain
-- sequence) and this instance's floor of it (lib/floor.lua).
--
-- Returns {'fields', value1, value2, ...} (as HMGET: a missing field, or a missing hash, is nil), or {'behind'}.

--!include floor

local behind = behindFloor()
if behind then return behind end

local values = redis.call('HMGET', KEYS[1], unpack(ARGV))
table.insert(values, 1, 'fields')
return values
