CREATE TABLE floating_ip_pools (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    first_ip BIGINT NOT NULL,
    last_ip BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE floating_ips (
    id TEXT PRIMARY KEY,
    pool_id TEXT NOT NULL REFERENCES floating_ip_pools(id),
    project_id TEXT NOT NULL REFERENCES projects(id),
    ip BIGINT NOT NULL UNIQUE,
    server_id TEXT REFERENCES servers(id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX floating_ips_by_server ON floating_ips (server_id);
