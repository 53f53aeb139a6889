-- Tables of the database-only engine (INVENTORY_ENGINE=db): the design this service replaces, kept to measure
-- against. One transaction per reservation: a conditional UPDATE of the stock row and a reservation INSERT.
-- Separate from the Redis-first tables so that the two engines never see each other's data.
CREATE TABLE IF NOT EXISTS baseline_stock (
    biz_id      VARCHAR(32)     NOT NULL,
    sku_id      BIGINT UNSIGNED NOT NULL,
    available   BIGINT          NOT NULL,
    reserved    BIGINT          NOT NULL DEFAULT 0,
    is_infinite TINYINT(1)      NOT NULL DEFAULT 0,
    danger_num  BIGINT          NOT NULL DEFAULT 0,
    updated_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (biz_id, sku_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS baseline_reservation (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    order_id    VARCHAR(64)     NOT NULL,
    biz_id      VARCHAR(32)     NOT NULL,
    sku_id      BIGINT UNSIGNED NOT NULL,
    quantity    BIGINT          NOT NULL,
    fingerprint VARCHAR(255)    NOT NULL,
    status      VARCHAR(16)     NOT NULL,
    expires_at  DATETIME(3)     NOT NULL,
    created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uk_baseline_reservation_line (order_id, biz_id, sku_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
