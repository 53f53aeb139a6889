-- Orders are scoped by business (README "Orders belong to a business"): two businesses may both have an order
-- "1001", so a cancel of an order that never reserved is recorded for its business only. A row written before
-- names no business: it was a cancel through the only order paths there were, which any business used, so it keeps
-- refusing a late reserve of that orderId in every business ('*', JournalRepository.hasTombstone).
ALTER TABLE order_tombstones
    ADD COLUMN IF NOT EXISTS biz_id VARCHAR(32) NOT NULL DEFAULT '*' AFTER key_prefix,
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (key_prefix, biz_id, order_id);
-- New rows always name their business: no default, so one that did not would fail rather than refuse every business.
ALTER TABLE order_tombstones ALTER COLUMN biz_id DROP DEFAULT;
