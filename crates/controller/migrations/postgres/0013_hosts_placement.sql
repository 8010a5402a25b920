-- Hosts: the CPU model agents report, and the administrators' switch that
-- keeps new servers off a host (with a reason).
ALTER TABLE hosts ADD COLUMN cpu_model TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN enabled BIGINT NOT NULL DEFAULT 1;
ALTER TABLE hosts ADD COLUMN disabled_reason TEXT;
-- Server groups (Nova's): members of an `affinity` group share one host,
-- those of an `anti-affinity` group never do.
CREATE TABLE server_groups (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    policy TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, name)
);
-- A server is in at most one group; the membership goes with the server.
CREATE TABLE server_group_members (
    server_id TEXT PRIMARY KEY REFERENCES servers(id) ON DELETE CASCADE,
    group_id TEXT NOT NULL REFERENCES server_groups(id)
);
CREATE INDEX server_group_members_by_group ON server_group_members (group_id);
-- The server groups quota (NULL: the default).
ALTER TABLE project_quotas ADD COLUMN server_groups BIGINT;
