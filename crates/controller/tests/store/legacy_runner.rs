//! The hand-written migration runner that came before sqlx's migrator, kept
//! verbatim (its SQL and its loop) as a fixture: it makes databases in the
//! previous format, which `upgrade.rs` checks the store adopts in place.
//! Do not change it: it stands for data directories that exist out there.

use sqlx::Row;

/// Version 1: users, projects, tokens, flavors, images, hosts, servers.
/// Portable column types: TEXT ids, BIGINT for numbers, times and 0/1 flags.
const V1: &str = r#"
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
"#;

/// Version 2: private networks, ports (a server's NICs with their
/// addresses), key pairs, and what a server's guest is configured with.
const V2: &str = r#"
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
ALTER TABLE servers ADD COLUMN config_drive BIGINT NOT NULL DEFAULT 0
"#;

/// Version 3: floating IP pools and floating IPs.
const V3: &str = r#"
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
CREATE INDEX floating_ips_by_server ON floating_ips (server_id)
"#;

/// Version 4: security groups, their rules, and which servers use them.
const V4: &str = r#"
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
)
"#;

/// Version 5: how an image wants its first-boot configuration disk.
const V5: &str = "ALTER TABLE images ADD COLUMN config_format TEXT NOT NULL DEFAULT 'config-2'";

/// Version 6: rental terms. Bandwidth (JSON of `Bandwidth`), traffic quota
/// and state, leases; metered traffic (the last raw counters per source, and
/// hourly totals that outlive their server); events; project quotas; and
/// usage intervals for billing (open while a resource is held).
const V6: &str = r#"
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
CREATE INDEX usage_intervals_open ON usage_intervals (resource_id, kind, ended_at)
"#;

/// Version 7: whether a server's ISO image is still in its CD-ROM drive
/// (set when a server is made from an `iso` image, cleared by eject).
const V7: &str = "ALTER TABLE servers ADD COLUMN cdrom_attached BIGINT NOT NULL DEFAULT 0";

/// The migrations, in order. Index + 1 is the version.
pub(crate) const ALL: [&str; 7] = [V1, V2, V3, V4, V5, V6, V7];

/// Brings an empty (or older) database up to `target` (at most 7) as the
/// earlier runner did: statements split on `;`, each version in a
/// transaction, recorded in `schema_migrations`.
pub(crate) async fn run_to(pool: &sqlx::AnyPool, target: i64) -> Result<(), sqlx::Error> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
        .execute(pool)
        .await?;
    let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
        .fetch_one(pool)
        .await?
        .try_get("v")?;
    for (i, sql) in ALL.into_iter().enumerate() {
        let version = i as i64 + 1;
        if version <= current || version > target {
            continue;
        }
        let mut tx = pool.begin().await?;
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}
