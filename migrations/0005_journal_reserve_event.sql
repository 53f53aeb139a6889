-- The Redis Stream entry id ("ms-seq") of the reserve event that created each journal row. A reserve event applied
-- again with the same id is a redelivery; a row that already holds another id means a second, duplicate hold in
-- Redis that the write-back worker compensates. An undo event deletes a row only while it still carries the id of
-- the reserve it undoes.
ALTER TABLE reservation_journal ADD COLUMN IF NOT EXISTS reserve_event VARCHAR(32) NOT NULL DEFAULT '' AFTER expires_at;
