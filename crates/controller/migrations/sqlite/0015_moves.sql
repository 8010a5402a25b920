-- Moving servers between hosts (cold and live migration, evacuation).
-- The placement generation rises every time a server is placed on a host;
-- a host's leftovers (instances it holds that are no longer its) are kept
-- until the controller releases them.
ALTER TABLE servers ADD COLUMN placement_generation BIGINT NOT NULL DEFAULT 1;
-- The shared instance store a host's instance directories live in (hosts
-- with the same id see the same files); the leftovers and fenced
-- instances of its last report (JSON arrays of server ids).
ALTER TABLE hosts ADD COLUMN shared_store TEXT;
ALTER TABLE hosts ADD COLUMN leftovers TEXT;
ALTER TABLE hosts ADD COLUMN fenced TEXT;
CREATE TABLE migrations (
    id TEXT PRIMARY KEY,
    server_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    -- How the target gets the disk: copy, shared, live or rebuild.
    arrival TEXT NOT NULL,
    source_host TEXT NOT NULL,
    target_host TEXT NOT NULL,
    -- The server's placement generation on the target.
    generation BIGINT NOT NULL,
    state TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    downtime_ms BIGINT,
    error TEXT,
    source_released BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX migrations_server ON migrations (server_id, started_at);
-- At most one move under way per server.
CREATE UNIQUE INDEX migrations_one_running ON migrations (server_id) WHERE state = 'running';
