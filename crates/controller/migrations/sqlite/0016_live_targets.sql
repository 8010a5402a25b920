-- Live migration: where a target host's QEMU waits for the guest (its
-- migration and NBD endpoints, as the target agent reported them), until
-- the source has been told. One row per live move; it goes with the move.
CREATE TABLE live_targets (
    migration_id TEXT PRIMARY KEY,
    migration_uri TEXT NOT NULL,
    nbd_uri TEXT NOT NULL
);
