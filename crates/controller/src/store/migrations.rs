//! Schema migrations through sqlx's migrator: one directory of SQL files per
//! backend (`crates/controller/migrations/{sqlite,postgres}`), embedded in
//! the binary, checksummed in `_sqlx_migrations`, each applied in its own
//! transaction, under the migrator's lock (a PostgreSQL advisory lock), so
//! controllers starting together on one database do not race.
//!
//! The two directories hold the same file names and must describe the same
//! schema; `store_schema_matches` in the store tests runs every query
//! against both.
//!
//! Databases made before the migrator (by the hand-written runner that
//! recorded versions in `schema_migrations`) are adopted in place: under the
//! same lock, the versions that runner applied are recorded as applied
//! (`Migrate::skip`, with the checksums of today's files, whose SQL is
//! exactly what it ran) and only the newer ones are run.

use super::{Backend, Store, StoreResult};
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationType, Migrator};
use sqlx::SqlSafeStr;

/// The table the migrator records applied migrations in.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// The table the earlier hand-written runner recorded versions in.
const LEGACY_TABLE: &str = "schema_migrations";

/// Embeds the files of both directories; the same names in each.
macro_rules! migration_files {
    ($($name:literal),* $(,)?) => {
        /// SQLite's migrations: (file stem, SQL).
        const SQLITE: &[(&str, &str)] = &[$(
            ($name, include_str!(concat!("../../migrations/sqlite/", $name, ".sql"))),
        )*];
        /// PostgreSQL's migrations: (file stem, SQL).
        const POSTGRES: &[(&str, &str)] = &[$(
            ($name, include_str!(concat!("../../migrations/postgres/", $name, ".sql"))),
        )*];
    };
}

migration_files!(
    "0001_core",
    "0002_networks_ports_keypairs",
    "0003_floating_ips",
    "0004_security_groups",
    "0005_image_config_format",
    "0006_rental_terms",
    "0007_cdrom_attached",
    "0008_console_tokens_leader_leases",
    "0009_host_addressing",
    "0010_resource_limits",
    "0011_audit_events",
    "0012_host_credentials",
    "0013_hosts_placement",
    "0014_overlay",
    "0015_moves",
    "0016_live_targets",
    "0017_server_list_index",
    "0018_neutron_pending_networks",
);

/// The embedded migration files of one backend: (file stem, SQL).
pub fn files(backend: Backend) -> &'static [(&'static str, &'static str)] {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }
}

/// The migrator of one backend. File `NNNN_description.sql` is version NNNN.
pub fn migrator(backend: Backend) -> Migrator {
    let migrations = files(backend)
        .iter()
        .map(|(stem, sql)| {
            let (version, description) = stem.split_once('_').unwrap_or((stem, ""));
            Migration::new(
                version
                    .parse()
                    .expect("migration file names start with a number"),
                description.replace('_', " ").into(),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    let mut migrator = Migrator::with_migrations(migrations);
    // `run` takes the lock itself around the adoption of a legacy database.
    migrator.set_locking(false);
    migrator
}

/// Brings the schema up to the newest version.
pub(super) async fn run(store: &Store) -> StoreResult<()> {
    let migrator = migrator(store.backend());
    let mut conn = store.pool().acquire().await?;
    conn.lock().await?;
    let result = adopt_and_migrate(store.backend(), &migrator, &mut conn).await;
    // On failure too: the lock belongs to this connection's session.
    let unlocked = conn.unlock().await;
    result?;
    unlocked?;
    Ok(())
}

async fn adopt_and_migrate(
    backend: Backend,
    migrator: &Migrator,
    conn: &mut sqlx::AnyConnection,
) -> Result<(), MigrateError> {
    conn.ensure_migrations_table(MIGRATIONS_TABLE).await?;
    let applied = conn.list_applied_migrations(MIGRATIONS_TABLE).await?;
    if applied.is_empty() {
        if let Some(legacy) = legacy_version(backend, conn).await? {
            tracing::info!(
                version = legacy,
                "adopting a database made by the earlier migration runner"
            );
            for migration in migrator.iter().filter(|m| m.version <= legacy) {
                conn.skip(MIGRATIONS_TABLE, migration).await?;
            }
        }
    }
    migrator.run_direct(None, conn, false).await?;
    Ok(())
}

/// The newest version the earlier runner recorded, if it ever ran here.
async fn legacy_version(
    backend: Backend,
    conn: &mut sqlx::AnyConnection,
) -> Result<Option<i64>, MigrateError> {
    let exists_sql = match backend {
        Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
    };
    let exists: i64 = sqlx::query_scalar(exists_sql)
        .bind(LEGACY_TABLE)
        .fetch_one(&mut *conn)
        .await?;
    if exists == 0 {
        return Ok(None);
    }
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(&mut *conn)
        .await?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in the directories is embedded, in order, and both
    /// backends have the same versions.
    #[test]
    fn every_file_is_embedded_for_both_backends() {
        for (backend, dir) in [(Backend::Sqlite, "sqlite"), (Backend::Postgres, "postgres")] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut on_disk: Vec<String> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            on_disk.sort();
            let embedded: Vec<String> = files(backend)
                .iter()
                .map(|(stem, _)| format!("{stem}.sql"))
                .collect();
            assert_eq!(on_disk, embedded, "{dir}");
            // Each file's number is its version, in increasing order (with
            // gaps allowed: numbers are handed out to branches in advance).
            let versions: Vec<i64> = migrator(backend).iter().map(|m| m.version).collect();
            let numbers: Vec<i64> = files(backend)
                .iter()
                .map(|(stem, _)| stem[..4].parse().unwrap())
                .collect();
            assert_eq!(versions, numbers, "{dir}");
            assert!(
                versions.windows(2).all(|w| w[0] < w[1]),
                "{dir}: {versions:?}"
            );
            assert_eq!(versions.first(), Some(&1), "{dir}");
        }
    }
}
