-- The status of a duplicate hold of an order that had ended (`earlier_event` ''): a retry after the order's keys'
-- retention period that Redis held as a new order, and that its order went on with before the worker took it back
-- (a confirm, a dispense) is a hold of its own, beside the earlier order's journal row (see
-- Sources/Inventory/Storage/JournalBatchPlan+Duplicates.swift). RESERVED when met; then CONFIRMED, CANCELLED,
-- EXPIRED, REFUNDED as its order's events say, or UNDONE once taken back. UNTRACKED: a row met before this was kept
-- (taken back then as the earlier order's).
ALTER TABLE reserve_duplicates ADD COLUMN IF NOT EXISTS status VARCHAR(16) NOT NULL DEFAULT 'UNTRACKED' AFTER earlier_event;
