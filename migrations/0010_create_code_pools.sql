-- Code-backed stock (see README "Code pools"). A stock item may carry one pool of codes:
--   ONE_TIME: each code is handed out once; the item's on-hand stock is the number of codes not used;
--   REUSABLE: codes may be handed out again; stock is counted as for any item and holding does not use a code;
--   BATCH:    every unit carries the same code (batch_code); only the count matters.
CREATE TABLE IF NOT EXISTS code_pools (
    biz_id       VARCHAR(32)     NOT NULL,
    sku_id       BIGINT UNSIGNED NOT NULL,
    kind         VARCHAR(16)     NOT NULL,
    status       VARCHAR(16)     NOT NULL DEFAULT 'ONLINE' COMMENT 'ONLINE or OFFLINE',
    expires_at   DATETIME(3)     NULL COMMENT 'no new holds after this time',
    batch_code   VARCHAR(64)     NULL,
    created_at   DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at   DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (biz_id, sku_id),
    CONSTRAINT ck_code_pools_kind CHECK (kind IN ('ONE_TIME', 'REUSABLE', 'BATCH')),
    CONSTRAINT ck_code_pools_status CHECK (status IN ('ONLINE', 'OFFLINE'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
-- The codes of a pool, as loaded. A code's state is not stored here: it follows from its assignments (below) and
-- their journal rows: held while one is RESERVED, used while one is CONFIRMED, usable otherwise.
CREATE TABLE IF NOT EXISTS codes (
    biz_id     VARCHAR(32)     NOT NULL,
    sku_id     BIGINT UNSIGNED NOT NULL,
    code       VARCHAR(64)     NOT NULL,
    created_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (biz_id, sku_id, code)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
-- Which codes a reservation line holds: written with its journal row by the write-back worker (same transaction),
-- deleted with it when the reserve is taken back.
CREATE TABLE IF NOT EXISTS code_assignments (
    order_id      VARCHAR(64)     NOT NULL,
    biz_id        VARCHAR(32)     NOT NULL,
    sku_id        BIGINT UNSIGNED NOT NULL,
    code          VARCHAR(64)     NOT NULL,
    reserve_event VARCHAR(32)     NOT NULL,
    created_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (order_id, biz_id, sku_id, code),
    KEY idx_code_assignments_code (biz_id, sku_id, code)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
