-- The SHA-1 (hex) of the request that made each journal row (the reserve's fingerprint: business, user, lines,
-- shortage mode, TTL, codes), so that an order Redis lost and the journal brings back still tells a retry of the
-- same request (a replay) from another body under its id (409). NULL for rows written before it was kept: any body
-- is then taken as the same request.
ALTER TABLE reservation_journal ADD COLUMN IF NOT EXISTS request_fp CHAR(40) NULL AFTER reserve_event;
