-- Durable retry tasks: reversals of Redis changes (the second level of compensation) that failed when first
-- tried. The retrier inside the service runs them until they succeed; each reversal is safe to run again.
CREATE TABLE IF NOT EXISTS compensation_tasks (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    kind        VARCHAR(32)     NOT NULL COMMENT 'undo_stock or undo_reserve',
    payload     TEXT            NOT NULL,
    status      VARCHAR(16)     NOT NULL DEFAULT 'PENDING' COMMENT 'PENDING or DONE',
    attempts    INT             NOT NULL DEFAULT 0,
    last_error  TEXT            NULL,
    created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    KEY idx_compensation_tasks_status (status, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
