-- A retry task belongs to the Redis key namespace (INVENTORY_KEY_PREFIX) of the instance that stored it: its
-- reversal names keys of that namespace, so only instances of the same namespace may run it (several deployments,
-- or test runs, may share one database). Tasks stored before this column existed have '' and are run by any.
ALTER TABLE compensation_tasks
    ADD COLUMN IF NOT EXISTS key_prefix VARCHAR(64) NOT NULL DEFAULT '' AFTER kind,
    ADD KEY IF NOT EXISTS idx_compensation_tasks_prefix (key_prefix, status, id);
