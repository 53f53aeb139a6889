-- drain_marks: per shard of Redis, the mark Redis handed the last MySQL transaction that recorded the shard's Redis
-- changes (a journal batch from its outbox stream, a sync commit, the outbox events an order's restore applied, a
-- PUT's or an adjustment's MySQL half). Each such transaction locks the shard's row, has Redis raise the shard's mark
-- by one (lua/drain_mark.lua, before its COMMIT) and records here the value it got: Redis's mark is never below this
-- while Redis keeps its data. A Redis whose mark is below went back in time (restored from an older snapshot, a
-- failover to a replica that was behind) after MySQL recorded changes it no longer has: the service then forgets what
-- that Redis has, as after a data loss (README "What may vanish").
-- `mark` is the Redis key of the mark (`<prefix>:{sN}:drained`), so one row per deployment's key prefix and shard.
CREATE TABLE IF NOT EXISTS drain_marks (
    mark       VARCHAR(191) NOT NULL,
    seq        BIGINT       NOT NULL,
    PRIMARY KEY (mark)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
