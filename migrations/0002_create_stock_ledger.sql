-- Append-only history of every change to stock.stock. `source` names what caused the change (an adjustment id,
-- a write-back batch entry, a refund) and is unique, so replaying the same change cannot apply it twice.
CREATE TABLE IF NOT EXISTS stock_ledger (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    biz_id      VARCHAR(32)     NOT NULL,
    sku_id      BIGINT UNSIGNED NOT NULL,
    delta       BIGINT          NOT NULL,
    stock_after BIGINT          NOT NULL COMMENT 'stock.stock right after this change',
    reason      VARCHAR(32)     NOT NULL,
    source      VARCHAR(191)    NOT NULL,
    created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uk_stock_ledger_source (source),
    KEY idx_stock_ledger_item (biz_id, sku_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
