-- Index snapshots are stored as they are, without TOAST's compression
-- (pglz): a snapshot is hundreds of megabytes of MessagePack, written and
-- read whole, and pglz would spend a core on all of it at every write and
-- every start. Its size is what the `replicas` bench reports
-- (`snapshot_bytes`).
ALTER TABLE sl_index_snapshots ALTER COLUMN data SET STORAGE EXTERNAL;
