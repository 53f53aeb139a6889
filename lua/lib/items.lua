-- lib/items.lua: the one rule for items that vanish. Not a script of its own: scripts that change an item include it
-- where they say `--!include items` (see InventoryScripts.load).
--
-- Any key may be gone when a script runs (its TTL ran out, Redis evicted it, an operator deleted it). A script never
-- writes into an item it does not find whole: it answers {'missing', 'i,j'} (the positions, 1-based, in the list of
-- items it was given) before its first write, the engine rebuilds those items from MySQL under the init lock (a new
-- epoch), and runs the script again.
--
-- A hold belongs to the epoch of the item it was made in: its reserve key holds 'quantity@epoch', its order's record
-- ('line_epochs') the same epoch per line. A rebuild first applies the item's events still in the outbox, then counts
-- the holds the journal has and writes both their records with its new epoch; the epochs it so accounts for are the
-- item's `absorbed` ones (init_item.lua). A hold of an epoch it did not absorb (Redis lost the outbox with the rest of
-- its data, and the write-back worker now leaves the hold's reserve line out as stale) is not in the rebuilt item: it
-- gives nothing back, and a confirm sells its units from the item as it is now (confirm.lua).

-- An item with a code pool keeps its codes in a set of their own key, which may vanish alone. An empty set is no
-- key at all, so the item says how many there should be: a one-time pool's stock_num is its usable codes, a
-- reusable pool's codes_n is its codes (add_codes.lua, init_item.lua). `kind`, `stock` and `codesN` are the item's
-- pool_kind, stock_num and codes_n.
local function codesGone(kind, stock, codesN, codesKey)
  if kind == 'one_time' then
    return tonumber(stock or '0') > 0 and redis.call('EXISTS', codesKey) == 0
  elseif kind == 'reusable' then
    return tonumber(codesN or '0') > 0 and redis.call('EXISTS', codesKey) == 0
  end
  return false
end

-- An item with a per-user limit keeps each user's count in a hash of its own key, which may vanish alone too: a
-- vanished hash would start every user from nothing. The item says whether the hash should be there (`has_users`,
-- set when a count is first written: reserve.lua, init_item.lua; cleared when the hash's last entry is deleted:
-- lib/usage.lua).
local function usersGone(hasUsers, usersKey)
  return hasUsers == '1' and usersKey ~= nil and redis.call('EXISTS', usersKey) == 0
end

-- An item is whole once a rebuild or a PUT wrote stock_num, and its code set and usage hash are there when they
-- should be; a hash holding only an init lock is not. An item whose code set or usage hash is gone is dropped (its
-- hash only: the rebuild writes hash, set and usage together from MySQL, and counts the outbox first) so the init
-- path rebuilds it. `codesKeys` and `usersKeys` (optional) are the items' code sets and usage hashes, in the same
-- order.
local function missingItems(itemKeys, codesKeys, usersKeys)
  local missing = {}
  for i, key in ipairs(itemKeys) do
    local item = redis.call('HMGET', key, 'stock_num', 'pool_kind', 'codes_n', 'has_users')
    if not item[1] then
      missing[#missing + 1] = tostring(i)
    elseif (codesKeys and codesGone(item[2], item[1], item[3], codesKeys[i]))
        or (usersKeys and usersGone(item[4], usersKeys[i])) then
      redis.call('DEL', key)
      missing[#missing + 1] = tostring(i)
    end
  end
  if #missing == 0 then return nil end
  return {'missing', table.concat(missing, ',')}
end

-- An order hash's lines ('sku:requested:reserved,...') and line epochs ('e1,e2,...'): per line, the reserved
-- quantity and the epoch it was held in (nil for an order written before orders kept them).
local function orderLines(lines, lineEpochs)
  local reserved = {}
  for _, held in string.gmatch(lines or '', '(%d+):%d+:(%d+)') do reserved[#reserved + 1] = tonumber(held) end
  local epochs = nil
  if lineEpochs then
    epochs = {}
    for part in string.gmatch(lineEpochs .. ',', '([^,]*),') do epochs[#epochs + 1] = part end
  end
  return reserved, epochs
end

-- The value of a reserve key holding `quantity` in the item's `epoch`.
local function holdValue(quantity, epoch)
  return quantity .. '@' .. (epoch or '')
end

-- What a reserve key holds: the quantity, and whether the item (of epoch `epoch`) counts it. A key written before
-- holds carried their epoch (a plain number) counts. A reserved order whose reserve key is gone (deleted alone)
-- still holds its line: `line` and `lineEpoch` are the order hash's record of it (reserved quantity, the epoch it
-- was held in: 'line_epochs'), used when the key is missing. (A rebuild re-stamps both with its new epoch:
-- init_item.lua.)
--
-- `absorbed` is the item's record of earlier epochs it counts (',e1,e2,', init_item.lua): a rebuild that found the
-- rest of Redis intact applied their outbox events before reading MySQL, so their holds are in it.
local function countedIn(made, epoch, absorbed)
  if made == (epoch or '') then return true end
  return made ~= '' and absorbed ~= nil and string.find(absorbed, ',' .. made .. ',', 1, true) ~= nil
end

local function holdIn(reserveKey, epoch, line, lineEpoch, absorbed)
  local value = redis.call('GET', reserveKey)
  if not value then
    if line and line > 0 then return line, lineEpoch == nil or countedIn(lineEpoch, epoch, absorbed) end
    return 0, true
  end
  local quantity, made = string.match(value, '^(%d+)@(.*)$')
  if not quantity then return tonumber(value) or 0, true end
  return tonumber(quantity), countedIn(made, epoch, absorbed)
end
