-- snapshot.lua: one atomic look at what the reconciler compares with MySQL, for a page of stock items.
--
-- KEYS[1..n] item hashes, then the outbox streams (every one on a single Redis; on a cluster the one of the items'
-- shard, the only stream with entries of them)
-- ARGV[1] n   ARGV[2] key prefix (unused)   then n item ids 'bizId:skuId' (same order as the item keys)
--
-- Returns {items, entries}:
--   items[i] = {exists, stock_num, used_stock_num, confirmed_unapplied, refund_unapplied, is_infinite, fenced}
--              fenced = 1 while a stock change's MySQL half is still to come (lib/fence.lua): in flight
--   entries  = outbox entries (not yet acknowledged) touching these items, one per line:
--              {type, orderId, bizId, skuId, quantity, entryId, reserveEvent, appliedMarkerSet, absorbed, takenBack}
--              takenBack = 1 for a reserve whose hold was taken back (its undone marker is '1' or 'handed',
--              lua/undo_reserve.lua, in the stream's slot): that script settled what the hold counts (an undo entry, or
--              the earlier hold handed back), so the reserve no longer stands for a hold in flight ('kept': its
--              order's events did)
--
-- Counters and in-flight entries come from the same instant, so the reconciler can account for work in flight
-- exactly: an entry is in the outbox until the worker has committed it and settled Redis.
--
-- A line made in another epoch of its item than the current one: the item was rebuilt since.
-- - An epoch the item absorbed (init_item.lua): the rebuild applied the line from the outbox to MySQL before it
--   counted MySQL (a reserve and its undo reduced to nothing), so the rebuilt counters have it. The line is returned,
--   with absorbed = 1: a worker committing it again may still move the journal for a moment (a reserve committed
--   alone, its undo still to come), which the reconciler must see in flight; its confirm or refund is in no
--   `*_unapplied` counter (the rebuild counted it into MySQL's stock).
-- - Any other epoch: the rebuild read a MySQL without the line (Redis lost it, and the worker leaves it out). Both
--   stores agree on it, and it is not returned.
-- (Entries written before events carried epochs have none and are returned.)

--!include clock
--!include fence

local now = clockNow('')
local n = tonumber(ARGV[1])
local wanted = {}
local items = {}
local epochOf = {}
local absorbedOf = {}
for i = 1, n do
  wanted[ARGV[2 + i]] = i
  local f = redis.call('HMGET', KEYS[i], 'stock_num', 'used_stock_num', 'confirmed_unapplied', 'refund_unapplied',
    'is_infinite', 'epoch', 'absorbed')
  epochOf[i] = f[6] or ''
  absorbedOf[i] = f[7] or ''
  items[i] = {f[1] and 1 or 0, f[1] or '0', f[2] or '0', f[3] or '0', f[4] or '0', f[5] or '0',
    (f[1] and fenced(KEYS[i], now)) and 1 or 0}
end

local entries = {}
for s = n + 1, #KEYS do
  local stream = redis.call('XRANGE', KEYS[s], '-', '+')
  for _, entry in ipairs(stream) do
    local fields = {}
    local raw = entry[2]
    for j = 1, #raw, 2 do
      fields[raw[j]] = raw[j + 1]
    end
    local biz = fields['biz'] or ''
    local lineEpochs = nil
    if fields['epochs'] then
      lineEpochs = {}
      for part in string.gmatch(fields['epochs'] .. ',', '([^,]*),') do lineEpochs[#lineEpochs + 1] = part end
    end
    local takenBack = 0
    if fields['type'] == 'reserve' then
      -- '<prefix>:{s<shard>}:outbox' -> '<prefix>:{s<shard>}:undone:<entry id>' (KeyLayout.undoneMarker)
      local marker = redis.call('GET', string.sub(KEYS[s], 1, -7) .. 'undone:' .. entry[1])
      takenBack = (marker == '1' or marker == 'handed') and 1 or 0
    end
    local position = 0
    for sku, quantity in string.gmatch(fields['items'] or '', '(%d+):(%d+)') do
      position = position + 1
      local id = biz .. ':' .. sku
      local i = wanted[id]
      local made = lineEpochs and lineEpochs[position]
      local absorbed = i and made and made ~= '' and made ~= epochOf[i]
        and string.find(absorbedOf[i], ',' .. made .. ',', 1, true) ~= nil
      if i and (lineEpochs == nil or made == epochOf[i] or absorbed) then
        local kind = fields['type']
        local marked = 0
        if kind == 'confirm' or kind == 'refund' then
          -- the item's key without its last part 'item' is the common start of its keys, in either layout; an item's
          -- keys name an order by its business's own id (the order's name without 'bizId/', KeyLayout)
          local own = string.match(fields['order'], '^[^/]*/(.*)$') or fields['order']
          local marker = string.sub(KEYS[wanted[id]], 1, -5) .. 'applied:' .. kind .. ':' .. own
          marked = redis.call('EXISTS', marker)
        end
        entries[#entries + 1] = {kind, fields['order'], biz, sku, quantity, entry[1], fields['reserve_event'] or '', marked,
          absorbed and 1 or 0, takenBack}
      end
    end
  end
end
return {items, entries}
