-- The Redis half an adjustment's ledger row belongs to ('mark@ms', lua/lib/fence.lua: the item's mark and the time
-- the half was made, which stays its name when a retry takes it over). Attempts of one adjustment can each make a
-- Redis half (the adjustment's key in Redis vanished between them); the ledger's unique source lets one of them into
-- MySQL, and this says which: every other half is a surplus, to be reversed, and the one named here stays, whichever
-- attempt finds out. NULL for rows of other changes, and of adjustments recorded before it was kept.
ALTER TABLE stock_ledger ADD COLUMN IF NOT EXISTS half VARCHAR(96) NULL AFTER source;
