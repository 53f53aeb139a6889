-- The Redis time of each journal row's reserve (its outbox entry id's milliseconds, UTC): a rebuild counts a user's
-- units in the per-user window by the time Redis held them, as reserve.lua counted them, not by the row's created_at
-- (MySQL's clock, when the write-back worker wrote it: later by the worker's lag, and off by any difference between
-- the two servers' clocks). NULL for rows written before it was kept: created_at stands in.
ALTER TABLE reservation_journal ADD COLUMN IF NOT EXISTS reserved_at DATETIME(3) NULL AFTER request_fp;
