-- The system of record for on-hand stock, one row per stock item (bizId, skuId).
-- Redis holds the contended counters; this row changes only through StockRepository.apply, which writes a
-- stock_ledger row in the same transaction. `version` counts those changes.
CREATE TABLE IF NOT EXISTS stock (
    biz_id          VARCHAR(32)     NOT NULL,
    sku_id          BIGINT UNSIGNED NOT NULL,
    stock           BIGINT          NOT NULL COMMENT 'on-hand quantity; below zero only within backorder_limit',
    is_infinite     TINYINT(1)      NOT NULL DEFAULT 0,
    danger_num      BIGINT          NOT NULL DEFAULT 0 COMMENT 'low-stock threshold',
    backorder_limit BIGINT          NOT NULL DEFAULT 0 COMMENT 'how far below zero a backorder reserve may go',
    version         BIGINT          NOT NULL DEFAULT 0,
    created_at      DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at      DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (biz_id, sku_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
