-- The task journal: one row per reservation line (orderId, bizId, skuId) and its state. The unique key is the
-- durable de-duplication of last resort; (status, expires_at) serves the expiry sweeper, and the item key serves
-- the init path, which sums the live reservations of one item.
CREATE TABLE IF NOT EXISTS reservation_journal (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    order_id   VARCHAR(64)     NOT NULL,
    biz_id     VARCHAR(32)     NOT NULL,
    sku_id     BIGINT UNSIGNED NOT NULL,
    user_id    VARCHAR(64)     NULL,
    quantity   BIGINT          NOT NULL,
    status     VARCHAR(16)     NOT NULL COMMENT 'RESERVED, CONFIRMED, CANCELLED, EXPIRED or REFUNDED',
    expires_at DATETIME(3)     NOT NULL,
    created_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uk_reservation_journal_line (order_id, biz_id, sku_id),
    KEY idx_reservation_journal_status_expires (status, expires_at),
    KEY idx_reservation_journal_item_status (biz_id, sku_id, status),
    CONSTRAINT ck_reservation_journal_status
        CHECK (status IN ('RESERVED', 'CONFIRMED', 'CANCELLED', 'EXPIRED', 'REFUNDED'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
