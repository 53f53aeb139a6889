-- One row per reconciler run. `details` lists the differences found (and what fix mode did about them) as JSON.
CREATE TABLE IF NOT EXISTS reconcile_results (
    id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    started_at    DATETIME(3)     NOT NULL,
    finished_at   DATETIME(3)     NULL,
    items_checked BIGINT          NOT NULL DEFAULT 0,
    differences   BIGINT          NOT NULL DEFAULT 0,
    details       JSON            NULL,
    PRIMARY KEY (id),
    KEY idx_reconcile_results_started (started_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
