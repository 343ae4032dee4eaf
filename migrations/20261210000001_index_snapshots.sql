-- Snapshots of the in-memory access index (issue 19): a new process loads
-- the newest one the integrity chain vouches for and reads the log only
-- from its position on, instead of replaying the whole log.
--
-- One row per format (the index's shape in the code that wrote it; a
-- process ignores other formats). `chain_hash` is the integrity chain's
-- hash at `position` (`sl_seals`) when the snapshot was written: a
-- snapshot is used only while the seal at its position still says the
-- same, so a snapshot of another log, or of a log since restored
-- differently, is never loaded.
CREATE TABLE sl_index_snapshots (
    format      integer     PRIMARY KEY,
    position    bigint      NOT NULL CHECK (position > 0),
    chain_hash  bytea       NOT NULL,
    data        bytea       NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT now()
);
