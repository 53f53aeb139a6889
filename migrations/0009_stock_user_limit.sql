-- Per-user limits on a stock item: at most user_limit units per user (0 = no limit), counted over fixed windows of
-- user_window_seconds (0 = over the whole life of the item). Held (RESERVED) and sold (CONFIRMED, REFUNDED) units
-- count; cancelled and expired ones do not. Redis enforces the limit inside the reserve script; the init path
-- rebuilds each user's count of the current window from the journal (see StockRepository.withInitSnapshot).
ALTER TABLE stock
    ADD COLUMN IF NOT EXISTS user_limit          BIGINT NOT NULL DEFAULT 0 AFTER backorder_limit,
    ADD COLUMN IF NOT EXISTS user_window_seconds BIGINT NOT NULL DEFAULT 0 AFTER user_limit;
-- The init path sums one item's lines per user.
ALTER TABLE reservation_journal
    ADD KEY IF NOT EXISTS idx_reservation_journal_item_user (biz_id, sku_id, user_id);
