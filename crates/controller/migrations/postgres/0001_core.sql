CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    admin BIGINT NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects(id),
    created_at BIGINT NOT NULL
);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE flavors (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    vcpus BIGINT NOT NULL,
    memory_mib BIGINT NOT NULL,
    disk_gib BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE images (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    os TEXT NOT NULL,
    version TEXT NOT NULL,
    format TEXT NOT NULL,
    status TEXT NOT NULL,
    visibility TEXT NOT NULL,
    kernel_id TEXT REFERENCES images(id),
    initrd_id TEXT REFERENCES images(id),
    cmdline TEXT,
    size BIGINT,
    virtual_size BIGINT,
    checksum TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, name)
);
CREATE TABLE hosts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    vcpus BIGINT NOT NULL,
    memory_mib BIGINT NOT NULL,
    disk_gib BIGINT NOT NULL,
    accel TEXT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE TABLE servers (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    image_id TEXT NOT NULL REFERENCES images(id),
    flavor_id TEXT REFERENCES flavors(id),
    vcpus BIGINT NOT NULL,
    memory_mib BIGINT NOT NULL,
    disk_gib BIGINT NOT NULL,
    host_id TEXT REFERENCES hosts(id),
    power TEXT NOT NULL,
    reboot_generation BIGINT NOT NULL,
    deleting BIGINT NOT NULL,
    observed_power TEXT,
    observed_reboot_generation BIGINT NOT NULL,
    fault TEXT,
    launched_at BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, name)
);
CREATE INDEX servers_by_host ON servers (host_id);
