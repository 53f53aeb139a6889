-- Orders are scoped by business (README "Businesses"): two businesses may both have an order "1001", so a cancel
-- of an order that never reserved is recorded for its business only. Rows written before (no business) were
-- cancels through the order paths that named none: business `default`.
ALTER TABLE order_tombstones
    ADD COLUMN IF NOT EXISTS biz_id VARCHAR(32) NOT NULL DEFAULT 'default' AFTER key_prefix,
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (key_prefix, biz_id, order_id);
