//! The state store: one interface over SQLite (default) and PostgreSQL.
//!
//! Both backends go through sqlx's `Any` driver with portable SQL (`$1`
//! placeholders, TEXT ids, BIGINT times in Unix milliseconds, BIGINT 0/1 flags);
//! only the schema migrations differ per backend.

pub mod audit;
mod changes;
mod console_tokens;
pub mod events;
mod flavors;
mod floating_ips;
mod host_credentials;
pub mod host_desired;
mod host_reports;
mod host_seen;
pub mod hosts;
pub mod images;
mod in_lists;
mod keypairs;
mod leader_leases;
mod live_targets;
mod load_hints;
pub mod migrations;
pub mod moves;
pub mod networks;
pub mod overlay;
pub mod pending_networks;
pub mod placement;
pub mod ports;
pub mod quotas;
mod rows;
pub mod security_groups;
pub mod server_groups;
pub mod server_lists;
mod server_record;
mod servers;
pub mod terms;
pub mod traffic;
pub mod usage;
mod users;

pub use audit::AuditFilter;
pub use changes::CHANNEL as CHANGES_CHANNEL;
pub use console_tokens::ConsoleGrant;
pub use placement::{Placement, Schedule};
pub use server_record::ServerRecord;
pub use servers::{NewPort, NewServer};
pub use users::{TokenRecord, UserRecord};

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Errors from the store, mapped to HTTP statuses at the API edge.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// The project's quota has no room for what a create asked for.
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// No host can take the server (Nova's NoValidHost), saying why.
    #[error(transparent)]
    NoValidHost(#[from] crate::scheduler::PlacementError),
    /// A range or address the address-space rules refuse.
    #[error(transparent)]
    AddressSpace(#[from] crate::address_space::Violation),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The controller's state store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Where write transactions run. SQLite has one writer at a time: its
    /// own pool of one connection queues them in this process (woken in
    /// turn) instead of letting each poll SQLite's lock with sleeps while
    /// it holds a connection readers need. PostgreSQL: the same pool.
    writer: AnyPool,
    backend: Backend,
    /// What the store was opened with (PostgreSQL listeners open their own
    /// connection).
    url: std::sync::Arc<str>,
    /// Random id of this open store (hex), telling its own change
    /// announcements from other controllers'.
    instance: std::sync::Arc<str>,
    /// The operator's tenant address pools, which networks are held to
    /// (see `address_space`); the default pool until `with_tenant_pools`.
    tenant_pools: std::sync::Arc<crate::address_space::TenantPools>,
    /// A recent copy of the hosts' loads, ranking creates' candidates.
    load_hints: std::sync::Arc<load_hints::LoadHints>,
    /// Heartbeats not yet written (see `host_seen`).
    seen: std::sync::Arc<host_seen::SeenHosts>,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema up
    /// to date. `sqlite://PATH` or `postgres://...`.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Conflict(format!(
                "unsupported database url '{url}': use sqlite://PATH or postgres://..."
            )));
        };
        let sqlite_file = match backend {
            Backend::Sqlite => restrict_sqlite_file(url)?,
            Backend::Postgres => None,
        };
        // sqlx's migrator locks only on PostgreSQL: two processes opening a
        // new SQLite file at once (`nubis up` and `nubis admin create-user`)
        // would both run its migrations. An exclusive flock on the file
        // (apart from SQLite's own fcntl locks) lets one migrate at a time.
        let _migrating = match sqlite_file {
            Some(file) => Some(
                tokio::task::spawn_blocking(move || file.lock().map(|()| file))
                    .await
                    .map_err(|e| StoreError::Conflict(format!("locking the database file: {e}")))?
                    .map_err(|e| StoreError::Conflict(format!("locking the database file: {e}")))?,
            ),
            None => None,
        };
        let pool = open_pool(backend, url, Connections::Readers).await?;
        let store = Self {
            writer: pool.clone(),
            pool,
            backend,
            url: url.into(),
            instance: new_instance_id().into(),
            tenant_pools: Default::default(),
            load_hints: Default::default(),
            seen: Default::default(),
        };
        migrations::run(&store).await?;
        // Connections that loaded the schema before a migration altered a
        // table can describe `SELECT *` with the old columns (sqlx caches
        // the prepared shape): start the store on fresh connections.
        store.pool.close().await;
        let pool = open_pool(backend, url, Connections::Readers).await?;
        let writer = match backend {
            Backend::Sqlite => open_pool(backend, url, Connections::Writer).await?,
            Backend::Postgres => pool.clone(),
        };
        Ok(Self {
            pool,
            writer,
            backend,
            url: url.into(),
            instance: store.instance.clone(),
            tenant_pools: Default::default(),
            load_hints: Default::default(),
            seen: Default::default(),
        })
    }

    /// This store holding networks to `pools` instead of the default pool.
    pub fn with_tenant_pools(mut self, pools: crate::address_space::TenantPools) -> Self {
        self.tenant_pools = std::sync::Arc::new(pools);
        self
    }

    /// The tenant address pools networks must lie in.
    pub fn tenant_pools(&self) -> &crate::address_space::TenantPools {
        &self.tenant_pools
    }
}

/// Makes the SQLite file of `url` (created empty if missing) readable by
/// its owner alone (0600), before SQLite opens it: it holds password hashes
/// and every tenant's data, and SQLite gives its WAL and shared-memory files
/// the database file's mode.
fn restrict_sqlite_file(url: &str) -> StoreResult<Option<std::fs::File>> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(':') {
        return Ok(None); // In memory.
    }
    let io = |e: std::io::Error| StoreError::Conflict(format!("database file {path}: {e}"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(Some(file))
}

/// A random id (hex) for one open store.
fn new_instance_id() -> String {
    let mut bytes = [0u8; 16];
    // Uniqueness, not secrecy: a clock-based id does if randomness fails.
    if getrandom::fill(&mut bytes).is_err() {
        bytes[..16].copy_from_slice(&uuid::Uuid::now_v7().into_bytes());
    }
    hex::encode(bytes)
}

/// What a pool is for (SQLite: how many connections it opens).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Connections {
    Readers,
    /// SQLite's single writer.
    Writer,
}

/// A connection pool for `url`.
async fn open_pool(backend: Backend, url: &str, use_: Connections) -> StoreResult<AnyPool> {
    Ok(match backend {
        Backend::Sqlite => {
            // `mode=rwc` creates the file; WAL lets readers run beside the
            // writer, and the busy timeout queues concurrent writers.
            let url = if url.contains('?') {
                url.to_owned()
            } else {
                format!("{url}?mode=rwc")
            };
            AnyPoolOptions::new()
                .max_connections(match use_ {
                    Connections::Readers => 8,
                    Connections::Writer => 1,
                })
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        use sqlx::Executor;
                        conn.execute(
                            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                                 PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;",
                        )
                        .await?;
                        Ok(())
                    })
                })
                .connect(&url)
                .await?
        }
        Backend::Postgres => {
            AnyPoolOptions::new()
                .max_connections(16)
                .connect(url)
                .await?
        }
    })
}

impl Store {
    /// The backend this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Where a single write statement runs: on SQLite, the one writer
    /// connection, so writes queue here instead of racing for SQLite's lock
    /// (a write on a reader connection would poll it, unfairly, while
    /// transactions wait).
    pub(crate) fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// The hosts' loads as last read, for ranking placements.
    pub(crate) fn load_hints(&self) -> &load_hints::LoadHints {
        &self.load_hints
    }

    /// Begins a transaction that writes after it reads. SQLite gets the write
    /// lock up front (`BEGIN IMMEDIATE`, which waits out `busy_timeout`): a
    /// deferred transaction that upgrades from reading to writing fails at once
    /// with SQLITE_BUSY ("database is locked") when another connection writes.
    pub(crate) async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        })
    }
}

/// The current time as stored: Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Whether an error is a unique-constraint violation (same name twice).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db.message().contains("UNIQUE constraint failed")
                || db.code().as_deref() == Some("23505")
        }
        _ => false,
    }
}

/// Turns a unique-constraint violation into [`StoreError::Conflict`] with
/// a message saying what is taken (a name, an address, a running move);
/// any other database error stays what it is.
pub(crate) trait OrConflict<T> {
    fn or_conflict(self, taken: impl FnOnce() -> String) -> StoreResult<T>;
}

impl<T> OrConflict<T> for Result<T, sqlx::Error> {
    fn or_conflict(self, taken: impl FnOnce() -> String) -> StoreResult<T> {
        self.map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(taken())
            } else {
                e.into()
            }
        })
    }
}

/// Reads an optional row or fails with `NotFound`.
pub(crate) fn found<T>(row: Option<T>) -> StoreResult<T> {
    row.ok_or(StoreError::NotFound)
}
