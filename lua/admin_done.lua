-- admin_done.lua: a stock change's MySQL half is done: close the fence its Redis half opened (lib/fence.lua).
--
-- KEYS[1] item hash
--
-- Returns {'ok'}, or {'missing'} when the item is gone (nothing to close: a rebuild starts without a fence).

--!include fence

if redis.call('HEXISTS', KEYS[1], 'stock_num') == 0 then
  return {'missing'}
end
closeFence(KEYS[1])
return {'ok'}
