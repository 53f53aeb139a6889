-- What a Redis data loss must not take with it (see README "Durability"):
-- order_tombstones: a cancel of an order that had not reserved (the anti-hanging guard), written by the write-back
--   worker from the cancel's outbox event, so a late reserve is refused even after Redis lost the cancel. Kept per
--   key prefix (one deployment's Redis), since such a cancel names no business.
-- redis_generations: one row per key prefix and shard, written when that shard's generation marker is first made in
--   Redis. A marker missing while its row exists means Redis lost data: for one retention period, a reserve of an
--   order Redis does not know asks the journal first.
CREATE TABLE IF NOT EXISTS order_tombstones (
    key_prefix VARCHAR(64)  NOT NULL,
    order_id   VARCHAR(64)  NOT NULL,
    created_at DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (key_prefix, order_id),
    KEY idx_order_tombstones_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS redis_generations (
    key_prefix VARCHAR(64)  NOT NULL,
    shard      INT          NOT NULL,
    created_at DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (key_prefix, shard)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
