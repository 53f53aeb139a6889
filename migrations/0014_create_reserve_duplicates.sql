-- reserve_duplicates: one row per journal line a second reserve event of the same order met (Redis had lost the
-- order, and a retry held it again). `earlier_event` is the reserve event whose hold the item still counted at the
-- duplicate's place in the stream ('' when the earlier order had ended by then: confirmed, cancelled, expired); the
-- take-back of the duplicate hands that hold back (lua/undo_reserve.lua). Decided by the first delivery of the
-- duplicate and read by every later one, so a redelivery after its batch moved the row on decides the same.
-- Rows appear only after a Redis data loss, one per duplicate line.
CREATE TABLE IF NOT EXISTS reserve_duplicates (
    order_id      VARCHAR(64)     NOT NULL,
    biz_id        VARCHAR(32)     NOT NULL,
    sku_id        BIGINT UNSIGNED NOT NULL,
    reserve_event VARCHAR(32)     NOT NULL COMMENT 'the duplicate reserve event',
    earlier_event VARCHAR(32)     NOT NULL COMMENT 'the earlier reserve event still counted by the item, or empty',
    created_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (order_id, biz_id, sku_id, reserve_event)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
