CREATE TABLE networks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    cidr TEXT NOT NULL,
    gateway TEXT NOT NULL,
    dns_zone TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, name)
);
CREATE TABLE ports (
    id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL REFERENCES networks(id),
    server_id TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    nic_index BIGINT NOT NULL,
    mac TEXT NOT NULL UNIQUE,
    ip TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (network_id, ip)
);
CREATE INDEX ports_by_server ON ports (server_id);
CREATE TABLE keypairs (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, name)
);
ALTER TABLE servers ADD COLUMN key_name TEXT;
ALTER TABLE servers ADD COLUMN key_data TEXT;
ALTER TABLE servers ADD COLUMN user_data TEXT;
ALTER TABLE servers ADD COLUMN config_drive BIGINT NOT NULL DEFAULT 0;
