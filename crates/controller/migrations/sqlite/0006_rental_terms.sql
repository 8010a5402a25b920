ALTER TABLE servers ADD COLUMN bandwidth TEXT;
ALTER TABLE servers ADD COLUMN traffic_quota_bytes BIGINT;
ALTER TABLE servers ADD COLUMN traffic_policy TEXT;
ALTER TABLE servers ADD COLUMN traffic_state TEXT NOT NULL DEFAULT 'normal';
ALTER TABLE servers ADD COLUMN traffic_reason TEXT;
ALTER TABLE servers ADD COLUMN lease_expires_at BIGINT;
ALTER TABLE servers ADD COLUMN lease_exempt BIGINT NOT NULL DEFAULT 0;
ALTER TABLE servers ADD COLUMN lease_expired BIGINT NOT NULL DEFAULT 0;
ALTER TABLE flavors ADD COLUMN bandwidth TEXT;
ALTER TABLE projects ADD COLUMN quota_generation BIGINT NOT NULL DEFAULT 0;
CREATE TABLE traffic_counters (
    server_id TEXT NOT NULL,
    port_id TEXT NOT NULL,
    source TEXT NOT NULL,
    inbound_bytes BIGINT NOT NULL,
    outbound_bytes BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (server_id, port_id, source)
);
CREATE TABLE traffic_hourly (
    server_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    hour BIGINT NOT NULL,
    inbound_bytes BIGINT NOT NULL,
    outbound_bytes BIGINT NOT NULL,
    PRIMARY KEY (server_id, hour)
);
CREATE INDEX traffic_hourly_by_project ON traffic_hourly (project_id, hour);
CREATE TABLE server_events (
    id TEXT PRIMARY KEY,
    server_id TEXT NOT NULL,
    server_name TEXT NOT NULL,
    project_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX server_events_by_project ON server_events (project_id, created_at);
CREATE TABLE project_quotas (
    project_id TEXT PRIMARY KEY REFERENCES projects(id),
    servers BIGINT NOT NULL,
    vcpus BIGINT NOT NULL,
    memory_mib BIGINT NOT NULL,
    disk_gib BIGINT NOT NULL,
    floating_ips BIGINT NOT NULL,
    networks BIGINT NOT NULL
);
CREATE TABLE usage_intervals (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    name TEXT NOT NULL,
    size TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT
);
CREATE INDEX usage_intervals_by_project ON usage_intervals (project_id, started_at);
CREATE INDEX usage_intervals_open ON usage_intervals (resource_id, kind, ended_at);
