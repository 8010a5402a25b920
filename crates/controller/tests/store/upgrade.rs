//! Upgrading databases made before sqlx's migrator, and first starts of
//! several controllers at once. These tests start from an empty database
//! (not from an opened store), so they have their own `sqlite`/`postgres`
//! modules.

use super::*;
use nubis_controller::store::migrations;
use sqlx::any::AnyPoolOptions;

/// A pool on `url` without running any migration (SQLite files are created).
async fn raw_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = if url.starts_with("sqlite:") {
        format!("{url}?mode=rwc")
    } else {
        url.to_owned()
    };
    AnyPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("raw pool")
}

/// Rows a user of the previous version had: a project with a user, an
/// image and a server. Returns (project, user, server).
async fn legacy_rows(pool: &sqlx::AnyPool) -> (ProjectId, UserId, ServerId) {
    let project = ProjectId::new();
    let user = UserId::new();
    let image = ImageId::new();
    let server = ServerId::new();
    let statements: [(&str, Vec<String>); 4] = [
        (
            "INSERT INTO projects (id, name, created_at) VALUES ($1, 'olduser', 1)",
            vec![project.to_string()],
        ),
        (
            "INSERT INTO users (id, name, password_hash, admin, project_id, created_at) \
             VALUES ($1, 'olduser', 'hash', 1, $2, 1)",
            vec![user.to_string(), project.to_string()],
        ),
        (
            "INSERT INTO images (id, project_id, name, os, version, format, status, visibility, created_at) \
             VALUES ($1, $2, 'old-image', 'linux', '1', 'qcow2', 'active', 'private', 1)",
            vec![image.to_string(), project.to_string()],
        ),
        (
            "INSERT INTO servers (id, project_id, name, image_id, vcpus, memory_mib, disk_gib, \
             power, reboot_generation, deleting, observed_reboot_generation, created_at) \
             VALUES ($1, $2, 'old-server', $3, 1, 256, 1, 'stopped', 0, 0, 0, 1)",
            vec![server.to_string(), project.to_string(), image.to_string()],
        ),
    ];
    for (sql, args) in statements {
        let mut q = sqlx::query(sql);
        for a in args {
            q = q.bind(a);
        }
        q.execute(pool).await.expect("insert a legacy row");
    }
    (project, user, server)
}

async fn scalar(url: &str, sql: &'static str) -> i64 {
    let pool = raw_pool(url).await;
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(&pool)
        .await
        .expect("raw SQL");
    pool.close().await;
    n
}

/// A database the previous runner made up to `legacy_version` (7 = all it
/// had) opens as a store: nothing it applied runs again (it would fail:
/// the tables exist), the newer migrations run, the rows are kept, and
/// opening again passes the migrator's checksum check.
async fn legacy_database_upgrades_in_place(url: String, legacy_version: i64) {
    let pool = raw_pool(&url).await;
    legacy_runner::run_to(&pool, legacy_version)
        .await
        .expect("the previous runner makes its schema");
    let (project, user, server) = legacy_rows(&pool).await;
    pool.close().await;

    for _ in 0..2 {
        let store = Store::connect(&url)
            .await
            .expect("upgrade the legacy database");
        assert_eq!(store.user(user).await.expect("user kept").name, "olduser");
        let s = store.server(project, server).await.expect("server kept");
        assert_eq!(s.name, "old-server");
        assert_eq!(s.status(), ServerStatus::Stopped);
        // The newest schema is there: a console token can be stored.
        let grant = nubis_controller::store::ConsoleGrant {
            server,
            user,
            project,
            expires_at: Utc::now() + Duration::seconds(60),
        };
        store
            .issue_console_token(&uuid::Uuid::new_v4().to_string(), &grant, Utc::now(), 10)
            .await
            .expect("new table usable");
        drop(store);
    }
    let newest = migrations::files(if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    })
    .len() as i64;
    assert_eq!(
        scalar(&url, "SELECT COUNT(*) FROM _sqlx_migrations WHERE success").await,
        newest,
        "every version recorded once"
    );
    assert_eq!(
        scalar(&url, "SELECT COUNT(*) FROM schema_migrations").await,
        legacy_version,
        "the previous runner's record is left as it was"
    );
}

async fn fully_migrated_legacy_database_is_adopted(url: String) {
    legacy_database_upgrades_in_place(url, 7).await;
}

async fn partly_migrated_legacy_database_is_finished(url: String) {
    legacy_database_upgrades_in_place(url, 5).await;
}

/// Positive control of the adoption: a database whose migrations table
/// holds another checksum for a version is refused, not silently used.
async fn a_changed_migration_is_refused(url: String) {
    drop(Store::connect(&url).await.expect("fresh store"));
    let pool = raw_pool(&url).await;
    sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 1")
        .bind(vec![0u8; 48])
        .execute(&pool)
        .await
        .expect("tamper with a checksum");
    pool.close().await;
    match Store::connect(&url).await {
        Err(StoreError::Migrate(sqlx::migrate::MigrateError::VersionMismatch(1))) => {}
        Err(e) => panic!("expected a checksum mismatch of version 1, got {e}"),
        Ok(_) => panic!("a changed migration was accepted"),
    }
}

/// Two controllers starting at once on a fresh database: the migrator's
/// lock (a PostgreSQL advisory lock) lets one migrate while the other
/// waits; both open.
async fn concurrent_first_starts_both_open(url: String) {
    let (a, b) = tokio::join!(Store::connect(&url), Store::connect(&url));
    let (a, b) = (a.expect("first store"), b.expect("second store"));
    let alice = a.create_user("alice", "hash", false).await.expect("user");
    assert_eq!(
        b.user(alice.id).await.expect("seen by the other").name,
        "alice"
    );
    assert_eq!(
        scalar(&url, "SELECT COUNT(*) FROM _sqlx_migrations WHERE success").await,
        migrations::files(Backend::Postgres).len() as i64
    );
}

/// Adoption records the earlier versions as applied without running them:
/// right only if each file holds exactly the statements the earlier runner
/// ran for its version, on both backends.
#[test]
fn migration_files_hold_the_earlier_runners_sql() {
    let statements = |sql: &str| -> Vec<String> {
        sql.split(';')
            .map(|s| {
                s.lines()
                    .filter(|l| !l.trim_start().starts_with("--"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let files = migrations::files(backend);
        for (i, legacy) in legacy_runner::ALL.iter().enumerate() {
            assert_eq!(
                statements(files[i].1),
                statements(legacy),
                "{backend:?} version {}",
                i + 1
            );
        }
    }
}

type UrlTestFn = fn(String) -> LocalBoxFuture<'static, ()>;

async fn on_empty_sqlite(test: UrlTestFn) {
    let dir = tempfile::tempdir().expect("temp dir");
    test(format!(
        "sqlite://{}",
        dir.path().join("store.db").display()
    ))
    .await;
}

mod sqlite {
    use super::*;

    #[tokio::test]
    async fn fully_migrated_legacy_database_is_adopted() {
        on_empty_sqlite(|u| Box::pin(super::fully_migrated_legacy_database_is_adopted(u))).await;
    }

    #[tokio::test]
    async fn partly_migrated_legacy_database_is_finished() {
        on_empty_sqlite(|u| Box::pin(super::partly_migrated_legacy_database_is_finished(u))).await;
    }

    #[tokio::test]
    async fn a_changed_migration_is_refused() {
        on_empty_sqlite(|u| Box::pin(super::a_changed_migration_is_refused(u))).await;
    }
}

mod postgres {
    use super::*;

    #[tokio::test]
    async fn fully_migrated_legacy_database_is_adopted() {
        on_empty_postgres(super::fully_migrated_legacy_database_is_adopted).await;
    }

    #[tokio::test]
    async fn partly_migrated_legacy_database_is_finished() {
        on_empty_postgres(super::partly_migrated_legacy_database_is_finished).await;
    }

    #[tokio::test]
    async fn a_changed_migration_is_refused() {
        on_empty_postgres(super::a_changed_migration_is_refused).await;
    }

    #[tokio::test]
    async fn concurrent_first_starts_both_open() {
        on_empty_postgres(super::concurrent_first_starts_both_open).await;
    }
}
