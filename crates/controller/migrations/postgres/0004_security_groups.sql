CREATE TABLE security_groups (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, name)
);
CREATE TABLE security_group_rules (
    id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL REFERENCES security_groups(id) ON DELETE CASCADE,
    direction TEXT NOT NULL,
    protocol TEXT NOT NULL,
    port_min BIGINT,
    port_max BIGINT,
    remote_cidr TEXT,
    remote_group_id TEXT REFERENCES security_groups(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL
);
CREATE TABLE server_security_groups (
    server_id TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    group_id TEXT NOT NULL REFERENCES security_groups(id),
    PRIMARY KEY (server_id, group_id)
);
