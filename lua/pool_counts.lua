-- pool_counts.lua: the reconciler's read of one-time code pools: each item's stock_num and the size of its code set,
-- at one instant (every script that moves one moves the other, so they are equal at any instant).
--
-- KEYS: pairs of item hash, code set
--
-- Returns, per pair, {stock_num or '' when the item is not in Redis, SCARD}.

local out = {}
for i = 1, #KEYS, 2 do
  out[#out + 1] = {redis.call('HGET', KEYS[i], 'stock_num') or '', redis.call('SCARD', KEYS[i + 1])}
end
return out
