-- The highest outbox entry of each stream the write-back worker committed (its id "ms-seq" as two numbers), written
-- in the batch's transaction. Redis keeps its own copy beside the stream (`…:drained`, set by lua/ack.lua when the
-- worker acknowledges). A Redis whose copy is behind this one, while the entry is not in its stream either, came
-- back from an older state than what MySQL already has: a stale snapshot or replica (InventoryEngine.checkDrainMarks).
CREATE TABLE IF NOT EXISTS outbox_drained (
    stream VARCHAR(191) NOT NULL,
    last_ms BIGINT UNSIGNED NOT NULL,
    last_seq BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (stream)
) ENGINE=InnoDB;
