-- The quantity of a duplicate hold (migrations/0014): a rebuild of its item from MySQL counts a duplicate hold of an
-- ended order while it is RESERVED (Sources/Inventory/Storage/StockRepository+InitSnapshot.swift), as Redis counted it
-- until its take-back, cancel, expiry or confirm; before, the rebuild left it out and the take-back or cancel then
-- gave back units the item no longer counted. NULL for a row met before this was kept (not counted, as before).
ALTER TABLE reserve_duplicates ADD COLUMN IF NOT EXISTS quantity BIGINT NULL AFTER ended_event;
-- The rebuild reads an item's open duplicate holds by item.
ALTER TABLE reserve_duplicates ADD INDEX IF NOT EXISTS by_item (biz_id, sku_id, status);
