-- The last outbox entry a duplicate hold of an ended order owns (migrations/0018;
-- Sources/Inventory/Storage/JournalBatchPlan+Duplicates.swift): the entry that ended it (its cancel, expiry, refund or
-- its take-back's undo), or its stream's last entry when its part of the order was restored from the journal (what
-- comes after is the restored order's). NULL while it is open (RESERVED or CONFIRMED). Every delivery of its events
-- decides their owner by it alike.
ALTER TABLE reserve_duplicates ADD COLUMN IF NOT EXISTS ended_event VARCHAR(32) NULL AFTER status;
