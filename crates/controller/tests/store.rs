//! The state store's public API, run against both backends.
//!
//! Every test is written once, as an `async fn(&Db)`, and `store_tests!` runs
//! it as `sqlite::NAME` (a fresh SQLite file per test) and `postgres::NAME` (a
//! fresh database per test on the server named by `NUBIS_TEST_DATABASE_URL`,
//! which `scripts/with-postgres.sh` provides). Without that variable the
//! PostgreSQL tests pass with a note, except under CI (`CI` set), where they
//! fail: CI must never skip them silently.
//!
//!     cargo test -p nubis-controller --test store                           # SQLite
//!     scripts/with-postgres.sh cargo test -p nubis-controller --test store  # both

use chrono::{Duration, Utc};
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use nubis_api::agent::TrafficCounter;
use nubis_api::agent::{
    Accelerator, HostReport, InstanceReport, ObservedPower, PowerState, RegisterHost,
};
use nubis_api::bandwidth::RateLimit;
use nubis_api::events::EventKind;
use nubis_api::flavors::CreateFlavor;
use nubis_api::images::{ImageFormat, ImageStatus, Visibility};
use nubis_api::leases::LeaseState;
use nubis_api::servers::ServerStatus;
use nubis_api::traffic::{Period, QuotaPolicy, TrafficQuota, TrafficState};
use nubis_api::users::User;
use nubis_api::{FlavorId, HostId, ImageId, ProjectId, ServerId, UserId};
use nubis_controller::store::hosts::HostLoad;
use nubis_controller::store::images::{NewImage, UploadedFile};
use nubis_controller::store::terms::{LeaseSweep, TermsUpdate};
use nubis_controller::store::{Backend, NewServer, ServerRecord, Store, StoreError};
use sqlx::Connection;
use std::ops::Deref;
use std::panic::AssertUnwindSafe;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// The environment variable naming the PostgreSQL server to test against.
const PG_URL_VAR: &str = "NUBIS_TEST_DATABASE_URL";

/// A store on a fresh database, and the URL it was opened with (for tests
/// that open it again or need raw SQL).
struct Db {
    store: Store,
    url: String,
}

impl Deref for Db {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

type TestFn = for<'a> fn(&'a Db) -> LocalBoxFuture<'a, ()>;

/// Runs `test` on a store in a fresh SQLite file.
async fn on_sqlite(test: TestFn) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = Store::connect(&url).await.expect("open SQLite store");
    assert_eq!(store.backend(), Backend::Sqlite);
    let db = Db { store, url };
    test(&db).await;
    drop(db);
    drop(dir);
}

/// The PostgreSQL server to test against, or `None` (after a note) to skip.
/// Under CI a missing server is a failure, never a skip.
fn postgres_admin_url() -> Option<String> {
    match std::env::var(PG_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{PG_URL_VAR} is not set, but CI is: the PostgreSQL store tests must run in CI. \
             Run them under scripts/with-postgres.sh (it starts a throwaway server and sets \
             {PG_URL_VAR})."
        ),
        _ => {
            eprintln!(
                "note: {PG_URL_VAR} is not set; skipping this PostgreSQL store test \
                 (run `scripts/with-postgres.sh cargo test -p nubis-controller --test store`)"
            );
            None
        }
    }
}

/// `url` with its database replaced by `database` (query parameters kept).
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let prefix = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    match query {
        Some(query) => format!("{prefix}/{database}?{query}"),
        None => format!("{prefix}/{database}"),
    }
}

/// Runs `test` on a store in a fresh PostgreSQL database, dropped afterwards
/// (also when the test fails), so tests run in parallel without sharing state.
async fn on_postgres(test: TestFn) {
    let Some(admin_url) = postgres_admin_url() else {
        return;
    };
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {PG_URL_VAR}={admin_url}: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));

    let url = with_database(&admin_url, &name);
    let result = AssertUnwindSafe(async {
        let store = Store::connect(&url).await.expect("open PostgreSQL store");
        assert_eq!(store.backend(), Backend::Postgres);
        let db = Db { store, url };
        test(&db).await;
    })
    .catch_unwind()
    .await;

    // FORCE: the store's pool may still hold connections while closing.
    let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await;
    let _ = admin.close().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    dropped.unwrap_or_else(|e| panic!("DROP DATABASE {name}: {e}"));
}

/// Generates `sqlite::NAME` and `postgres::NAME` for every test function NAME
/// (attributes such as `#[ignore]` go on both).
macro_rules! store_tests {
    ($($(#[$attr:meta])* $name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                $(#[$attr])*
                #[tokio::test]
                async fn $name() {
                    super::on_sqlite(|db| Box::pin(super::$name(db))).await;
                }
            )+
        }
        mod postgres {
            $(
                $(#[$attr])*
                #[tokio::test]
                async fn $name() {
                    super::on_postgres(|db| Box::pin(super::$name(db))).await;
                }
            )+
        }
    };
}

store_tests!(
    migrations_are_idempotent,
    first_user_is_admin,
    duplicate_user_name_conflicts,
    tokens_expire_and_are_revoked,
    default_flavors_are_idempotent,
    default_flavors_skip_a_cloud_with_flavors,
    flavors_create_and_look_up,
    images_create_and_activate,
    image_visibility,
    hosts_register_idempotently_by_name,
    host_loads_sum_placed_servers,
    servers_are_scoped_by_project,
    set_power_and_request_reboot,
    mark_deleting,
    host_report_records_observed_state,
    host_report_removes_deleted_servers,
    host_report_for_another_host_changes_nothing,
    status_follows_the_server_lifecycle,
    server_guest_config_round_trips,
    usage_follows_the_server_lifecycle,
    usage_of_floating_ips_and_traffic,
    usage_stops_with_expired_leases,
    // Concurrency: read-then-write transactions must be serialized.
    concurrent_first_registrations_make_one_admin,
    concurrent_host_registrations_are_idempotent,
    host_reports_beside_concurrent_writes,
    // Rental terms.
    traffic_counts_each_byte_once,
    traffic_quota_throttles_suspends_and_lifts,
    leases_stop_then_delete,
    // Installing from an ISO.
    iso_servers_hold_the_cdrom_until_ejected,
);

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// Raw SQL against the test database, for states the API cannot produce.
async fn raw_execute(db: &Db, sql: &'static str, arg: String) {
    let mut conn = sqlx::AnyConnection::connect(&db.url)
        .await
        .expect("raw connection");
    sqlx::query(sql)
        .bind(arg)
        .execute(&mut conn)
        .await
        .expect("raw SQL");
    conn.close().await.expect("close raw connection");
}

/// One number from raw SQL.
async fn raw_count(db: &Db, sql: &'static str) -> i64 {
    let mut conn = sqlx::AnyConnection::connect(&db.url)
        .await
        .expect("raw connection");
    let (n,): (i64,) = sqlx::query_as(sql)
        .fetch_one(&mut conn)
        .await
        .expect("raw SQL");
    conn.close().await.expect("close raw connection");
    n
}

async fn user(db: &Db, name: &str) -> User {
    db.create_user(name, &format!("hash-of-{name}"), false)
        .await
        .expect("create user")
}

fn register(name: &str, vcpus: u64) -> RegisterHost {
    RegisterHost {
        name: name.to_owned(),
        url: format!("http://127.0.0.1:8781/{name}"),
        vcpus,
        memory_mib: 16_384,
        disk_gib: 500,
        accel: Accelerator::Tcg,
    }
}

async fn host(db: &Db, name: &str) -> HostId {
    db.register_host(&register(name, 8))
        .await
        .expect("register host")
        .id
}

fn new_image(project: ProjectId, name: &str, visibility: Visibility) -> NewImage<'_> {
    NewImage {
        project,
        name,
        os: "debian",
        version: "12",
        format: ImageFormat::Qcow2,
        visibility,
        kernel: None,
        initrd: None,
        cmdline: None,
        config_format: Default::default(),
    }
}

async fn image(db: &Db, project: ProjectId, name: &str) -> ImageId {
    db.create_image(&new_image(project, name, Visibility::Private))
        .await
        .expect("create image")
        .id
}

fn new_server(
    project: ProjectId,
    name: &str,
    image: ImageId,
    host: HostId,
    size: (u64, u64, u64),
) -> NewServer<'_> {
    NewServer {
        project,
        name,
        image,
        flavor: None,
        vcpus: size.0,
        memory_mib: size.1,
        disk_gib: size.2,
        host,
        ports: Vec::new(),
        key_name: None,
        key_data: None,
        user_data: None,
        config_drive: false,
        security_groups: Vec::new(),
        bandwidth: Default::default(),
        traffic_quota: None,
        lease_expires_at: None,
    }
}

/// The API view of a server (without addresses: these tests make no networks).
fn api(server: &ServerRecord) -> nubis_api::servers::Server {
    server.to_api(Vec::new(), None, Vec::new(), chrono::Duration::days(3))
}

/// A project with an image, a host, and one server on it.
#[derive(Clone, Copy)]
struct World {
    project: ProjectId,
    image: ImageId,
    host: HostId,
    server: ServerId,
}

async fn world(db: &Db) -> World {
    let owner = user(db, "alice").await;
    let image = image(db, owner.project, "debian-12").await;
    let host = host(db, "host-a").await;
    let server = db
        .create_server(&new_server(
            owner.project,
            "web",
            image,
            host,
            (2, 2048, 20),
        ))
        .await
        .expect("create server")
        .id;
    World {
        project: owner.project,
        image,
        host,
        server,
    }
}

fn report(id: ServerId, power: ObservedPower) -> InstanceReport {
    InstanceReport {
        id,
        power,
        fault: None,
        reboot_generation: 0,
        launched_at: None,
        guest_shutdown: false,
    }
}

fn full_report(instances: Vec<InstanceReport>) -> HostReport {
    HostReport {
        instances,
        traffic: Vec::new(),
    }
}

async fn get(db: &Db, w: &World) -> ServerRecord {
    db.server(w.project, w.server).await.expect("get server")
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::NotFound) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

fn flavor(name: &str, vcpus: i64, memory_mib: i64, disk_gib: i64) -> CreateFlavor {
    CreateFlavor {
        name: name.parse().expect("valid name"),
        vcpus: vcpus.try_into().expect("valid vcpus"),
        memory_mib: memory_mib.try_into().expect("valid memory"),
        disk_gib: disk_gib.try_into().expect("valid disk"),
        bandwidth: None,
    }
}

// ---------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------

async fn migrations_are_idempotent(db: &Db) {
    let alice = user(db, "alice").await;
    // Opening the same database again runs the migrations again: a no-op.
    for _ in 0..2 {
        let again = Store::connect(&db.url).await.expect("reopen the store");
        assert_eq!(again.backend(), db.backend());
        assert_eq!(
            again.user(alice.id).await.expect("user survives").name,
            "alice"
        );
        again.ensure_default_flavors().await.expect("schema usable");
    }
    assert_eq!(
        raw_count(db, "SELECT COUNT(*) FROM schema_migrations").await,
        raw_count(db, "SELECT MAX(version) FROM schema_migrations").await,
        "every version is recorded once"
    );
    assert_eq!(db.list_flavors().await.unwrap().len(), 4);
}

// ---------------------------------------------------------------------------
// Users and tokens
// ---------------------------------------------------------------------------

async fn first_user_is_admin(db: &Db) {
    let first = db.create_user("root", "h0", false).await.unwrap();
    let second = db.create_user("bob", "h1", false).await.unwrap();
    let third = db.create_user("carol", "h2", true).await.unwrap();
    assert!(first.admin, "the first user of a fresh cloud is an admin");
    assert!(!second.admin);
    assert!(third.admin, "an explicit admin stays one");

    // Each user has a personal project.
    assert_ne!(first.project, second.project);
    assert_ne!(second.project, third.project);

    let by_id = db.user(second.id).await.unwrap();
    assert_eq!(by_id.name, "bob");
    assert_eq!(by_id.project, second.project);
    assert!(!by_id.admin);
    let record = db.user_by_name("carol").await.unwrap();
    assert_eq!(record.user.id, third.id);
    assert_eq!(record.password_hash, "h2");
    assert!(record.user.admin);

    assert_not_found(db.user(UserId::new()).await, "unknown user id");
    assert_not_found(
        db.user_by_name("nobody").await.map(|r| r.user),
        "unknown user name",
    );
}

async fn duplicate_user_name_conflicts(db: &Db) {
    let alice = user(db, "alice").await;
    assert_conflict(db.create_user("alice", "other", false).await, "same name");
    assert_conflict(
        db.create_user("alice", "other", true).await,
        "same name, admin",
    );
    // The failed attempts changed nothing and the store still works.
    assert_eq!(
        db.user_by_name("alice").await.unwrap().password_hash,
        "hash-of-alice"
    );
    assert_eq!(db.user(alice.id).await.unwrap().project, alice.project);
    assert_eq!(raw_count(db, "SELECT COUNT(*) FROM users").await, 1);
    assert_eq!(raw_count(db, "SELECT COUNT(*) FROM projects").await, 1);
    let bob = user(db, "bob").await;
    assert!(
        !bob.admin,
        "a failed first attempt does not make a later user the first"
    );
}

async fn tokens_expire_and_are_revoked(db: &Db) {
    let alice = user(db, "alice").await;
    let bob = user(db, "bob").await;
    let now = Utc::now().timestamp_millis();
    let hour = 3_600_000;
    db.insert_token("alice-1", alice.id, now + hour)
        .await
        .unwrap();
    db.insert_token("alice-2", alice.id, now + hour)
        .await
        .unwrap();
    db.insert_token("bob-1", bob.id, now + hour).await.unwrap();
    db.insert_token("bob-expired", bob.id, now - 1)
        .await
        .unwrap();

    assert_eq!(db.user_by_token("alice-1").await.unwrap().id, alice.id);
    assert_eq!(db.user_by_token("bob-1").await.unwrap().id, bob.id);
    assert_not_found(db.user_by_token("bob-expired").await, "expired token");
    assert_not_found(db.user_by_token("no-such-token").await, "unknown token");

    // Revoking one token leaves the others, and sweeps expired ones.
    db.delete_token("alice-1").await.unwrap();
    assert_not_found(db.user_by_token("alice-1").await, "revoked token");
    assert_eq!(db.user_by_token("alice-2").await.unwrap().id, alice.id);
    assert_eq!(db.user_by_token("bob-1").await.unwrap().id, bob.id);
    assert_eq!(raw_count(db, "SELECT COUNT(*) FROM tokens").await, 2);

    // Revoking an unknown or already revoked token is not an error.
    db.delete_token("alice-1").await.unwrap();
    db.delete_token("no-such-token").await.unwrap();
}

// ---------------------------------------------------------------------------
// Flavors
// ---------------------------------------------------------------------------

async fn default_flavors_are_idempotent(db: &Db) {
    assert!(db.list_flavors().await.unwrap().is_empty());
    db.ensure_default_flavors().await.unwrap();
    let first = db.list_flavors().await.unwrap();
    db.ensure_default_flavors().await.unwrap();
    let second = db.list_flavors().await.unwrap();

    let names: Vec<&str> = first.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["tiny", "small", "medium", "large"]);
    let ids = |fs: &[nubis_api::flavors::Flavor]| fs.iter().map(|f| f.id).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&second), "a second call creates nothing");
    let small = db.flavor("small").await.unwrap();
    assert_eq!(
        (small.vcpus, small.memory_mib, small.disk_gib),
        (1, 1024, 10)
    );
}

async fn default_flavors_skip_a_cloud_with_flavors(db: &Db) {
    db.create_flavor(&flavor("custom", 3, 3072, 30))
        .await
        .unwrap();
    db.ensure_default_flavors().await.unwrap();
    let names: Vec<String> = db
        .list_flavors()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["custom"]);
}

async fn flavors_create_and_look_up(db: &Db) {
    let big = db
        .create_flavor(&flavor("big", 8, 32_768, 200))
        .await
        .unwrap();
    assert_eq!(big.name, "big");
    assert_eq!((big.vcpus, big.memory_mib, big.disk_gib), (8, 32_768, 200));
    let small = db.create_flavor(&flavor("wee", 1, 256, 2)).await.unwrap();

    assert_eq!(db.flavor(&big.id.to_string()).await.unwrap().name, "big");
    assert_eq!(db.flavor("wee").await.unwrap().id, small.id);
    assert_not_found(db.flavor("nope").await, "unknown flavor name");
    assert_not_found(
        db.flavor(&FlavorId::new().to_string()).await,
        "unknown flavor id",
    );
    assert_conflict(
        db.create_flavor(&flavor("big", 1, 128, 1)).await,
        "duplicate flavor",
    );
    // Listed smallest first.
    let names: Vec<String> = db
        .list_flavors()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["wee", "big"]);
}

// ---------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------

async fn images_create_and_activate(db: &Db) {
    let alice = user(db, "alice").await;
    let kernel = db
        .create_image(&NewImage {
            format: ImageFormat::Aki,
            ..new_image(alice.project, "vmlinuz", Visibility::Private)
        })
        .await
        .unwrap();
    let initrd = db
        .create_image(&NewImage {
            format: ImageFormat::Ari,
            ..new_image(alice.project, "initrd", Visibility::Private)
        })
        .await
        .unwrap();
    let disk = db
        .create_image(&NewImage {
            kernel: Some(kernel.id),
            initrd: Some(initrd.id),
            cmdline: Some("console=ttyS0 root=/dev/vda"),
            format: ImageFormat::Raw,
            ..new_image(alice.project, "tiny-linux", Visibility::Private)
        })
        .await
        .unwrap();
    assert_eq!(disk.name, "tiny-linux");
    assert_eq!(disk.os, "debian");
    assert_eq!(disk.version, "12");
    assert_eq!(disk.format, ImageFormat::Raw);
    assert_eq!(disk.status, ImageStatus::Queued);
    assert_eq!(disk.visibility, Visibility::Private);
    assert_eq!(disk.project, alice.project);
    assert_eq!(disk.kernel, Some(kernel.id));
    assert_eq!(disk.initrd, Some(initrd.id));
    assert_eq!(disk.cmdline.as_deref(), Some("console=ttyS0 root=/dev/vda"));
    assert_eq!(
        (disk.size, disk.virtual_size, disk.checksum),
        (None, None, None)
    );
    assert_eq!(kernel.format, ImageFormat::Aki);
    assert_eq!(initrd.format, ImageFormat::Ari);
    assert_eq!(kernel.kernel, None);
    assert_eq!(kernel.cmdline, None);

    let checksum = "ab".repeat(32);
    let active = db
        .activate_image(
            disk.id,
            &UploadedFile {
                size: 5 << 30,
                virtual_size: 20 << 30,
                checksum: checksum.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(active.status, ImageStatus::Active);
    assert_eq!(active.size, Some(5 << 30), "sizes above 4 GiB survive");
    assert_eq!(active.virtual_size, Some(20 << 30));
    assert_eq!(active.checksum.as_deref(), Some(checksum.as_str()));
    let again = db.image_any_project(disk.id).await.unwrap();
    assert_eq!(again.status, ImageStatus::Active);
    assert_eq!(again.created_at, disk.created_at);

    assert_conflict(
        db.create_image(&new_image(alice.project, "tiny-linux", Visibility::Public))
            .await,
        "duplicate image name in a project",
    );
    assert_not_found(db.image_any_project(ImageId::new()).await, "unknown image");
    assert_not_found(
        db.activate_image(
            ImageId::new(),
            &UploadedFile {
                size: 1,
                virtual_size: 1,
                checksum: checksum.clone(),
            },
        )
        .await,
        "activating an unknown image",
    );
}

async fn image_visibility(db: &Db) {
    let admin = user(db, "admin").await;
    let alice = user(db, "alice").await;
    let bob = user(db, "bob").await;
    let public = db
        .create_image(&new_image(admin.project, "debian", Visibility::Public))
        .await
        .unwrap();
    let admin_private = image(db, admin.project, "secret").await;
    // The same name in another project is fine.
    let alice_debian = image(db, alice.project, "debian").await;

    // Alice sees her own image and public ones, not others' private ones.
    let seen = db.image_visible(alice.project, "debian").await.unwrap();
    assert_eq!(seen.id, alice_debian, "her own image wins by name");
    let seen = db
        .image_visible(alice.project, &public.id.to_string())
        .await
        .unwrap();
    assert_eq!(seen.id, public.id, "a public image by id");
    assert_not_found(
        db.image_visible(alice.project, "secret").await,
        "another project's private image by name",
    );
    assert_not_found(
        db.image_visible(alice.project, &admin_private.to_string())
            .await,
        "another project's private image by id",
    );
    // Bob has no "debian" of his own: he gets the public one.
    assert_eq!(
        db.image_visible(bob.project, "debian").await.unwrap().id,
        public.id
    );
    assert_eq!(
        db.image_visible(admin.project, "secret").await.unwrap().id,
        admin_private
    );
    assert_not_found(db.image_visible(bob.project, "nope").await, "unknown image");

    let ids = |images: Vec<nubis_api::images::Image>| {
        let mut ids: Vec<ImageId> = images.into_iter().map(|i| i.id).collect();
        ids.sort();
        ids
    };
    let mut expect_alice = vec![public.id, alice_debian];
    expect_alice.sort();
    assert_eq!(
        ids(db.list_images(alice.project).await.unwrap()),
        expect_alice
    );
    assert_eq!(ids(db.list_images(bob.project).await.unwrap()), [public.id]);
    let mut expect_admin = vec![public.id, admin_private];
    expect_admin.sort();
    assert_eq!(
        ids(db.list_images(admin.project).await.unwrap()),
        expect_admin
    );
}

// ---------------------------------------------------------------------------
// Hosts
// ---------------------------------------------------------------------------

async fn hosts_register_idempotently_by_name(db: &Db) {
    let b = db.register_host(&register("host-b", 8)).await.unwrap();
    assert_eq!(b.name, "host-b");
    assert_eq!(b.vcpus, 8);
    assert_eq!(b.accel, Accelerator::Tcg);
    let a = db.register_host(&register("host-a", 4)).await.unwrap();
    assert_ne!(a.id, b.id);

    // Registering again updates the host in place.
    let again = db
        .register_host(&RegisterHost {
            url: "http://127.0.0.1:9999".into(),
            memory_mib: 65_536,
            accel: Accelerator::Kvm,
            ..register("host-b", 16)
        })
        .await
        .unwrap();
    assert_eq!(again.id, b.id);
    assert_eq!(again.vcpus, 16);
    assert_eq!(again.memory_mib, 65_536);
    assert_eq!(again.url, "http://127.0.0.1:9999");
    assert_eq!(again.accel, Accelerator::Kvm);
    assert!(again.last_seen >= b.last_seen);

    let hosts = db.list_hosts().await.unwrap();
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["host-a", "host-b"]);
    assert_eq!(db.host(b.id).await.unwrap().vcpus, 16);
    assert_not_found(db.host(HostId::new()).await, "unknown host");

    db.touch_host(a.id).await.unwrap();
    assert!(db.host(a.id).await.unwrap().last_seen >= a.last_seen);
    assert_not_found(
        db.touch_host(HostId::new()).await,
        "touching an unknown host",
    );
}

async fn host_loads_sum_placed_servers(db: &Db) {
    let alice = user(db, "alice").await;
    let bob = user(db, "bob").await;
    let img = image(db, alice.project, "img").await;
    let a = host(db, "host-a").await;
    let b = host(db, "host-b").await;
    let idle = host(db, "host-c").await;
    // Room in alice's quota for the huge disk below.
    let huge = nubis_api::quotas::UpdateQuotas {
        disk_gib: Some(1 << 20),
        ..Default::default()
    };
    db.set_quotas(alice.project, &huge).await.unwrap();

    db.create_server(&new_server(alice.project, "s1", img, a, (2, 2048, 20)))
        .await
        .unwrap();
    let s2 = db
        .create_server(&new_server(alice.project, "s2", img, a, (1, 512, 5)))
        .await
        .unwrap();
    // Another project's server on the same host counts too.
    db.create_server(&new_server(bob.project, "s1", img, a, (4, 4096, 40)))
        .await
        .unwrap();
    db.create_server(&new_server(alice.project, "s3", img, b, (3, 3000, 300_000)))
        .await
        .unwrap();
    // A server being deleted still holds its resources until its host drops it.
    db.mark_deleting(alice.project, s2.id).await.unwrap();

    let loads = db.host_loads().await.unwrap();
    let load = |id: HostId| -> &HostLoad {
        loads
            .iter()
            .find(|l| l.host.id == id)
            .expect("every host has a load")
    };
    assert_eq!(loads.len(), 3);
    let la = load(a);
    assert_eq!(
        (la.used_vcpus, la.used_memory_mib, la.used_disk_gib),
        (7, 6656, 65)
    );
    let lb = load(b);
    assert_eq!(
        (lb.used_vcpus, lb.used_memory_mib, lb.used_disk_gib),
        (3, 3000, 300_000)
    );
    let lc = load(idle);
    assert_eq!(
        (lc.used_vcpus, lc.used_memory_mib, lc.used_disk_gib),
        (0, 0, 0)
    );
    assert_eq!(lc.host.name, "host-c");

    // Once the host no longer reports the deleted server, its share is free.
    db.apply_host_report(a, &full_report(vec![])).await.unwrap();
    let loads = db.host_loads().await.unwrap();
    let la = loads.iter().find(|l| l.host.id == a).unwrap();
    assert_eq!(
        (la.used_vcpus, la.used_memory_mib, la.used_disk_gib),
        (6, 6144, 60)
    );
}

// ---------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------

async fn servers_are_scoped_by_project(db: &Db) {
    let alice = user(db, "alice").await;
    let bob = user(db, "bob").await;
    let img = image(db, alice.project, "img").await;
    let h = host(db, "host-a").await;
    let small = db
        .create_flavor(&flavor("small", 1, 1024, 10))
        .await
        .unwrap();

    let web = db
        .create_server(&NewServer {
            flavor: Some(small.id),
            ..new_server(alice.project, "web", img, h, (1, 1024, 10))
        })
        .await
        .unwrap();
    assert_eq!(web.project, alice.project);
    assert_eq!(web.name, "web");
    assert_eq!(web.image, img);
    assert_eq!(web.flavor, Some(small.id));
    assert_eq!((web.vcpus, web.memory_mib, web.disk_gib), (1, 1024, 10));
    assert_eq!(web.host, Some(h));
    assert_eq!(web.power, PowerState::Running);
    assert_eq!(web.reboot_generation, 0);
    assert!(!web.deleting);
    assert_eq!(web.observed_power, None);
    assert_eq!(web.observed_reboot_generation, 0);
    assert_eq!(web.fault, None);
    assert_eq!(web.launched_at, None);
    assert_eq!(web.status(), ServerStatus::Building);
    let api = api(&web);
    assert_eq!(api.status, ServerStatus::Building);
    assert_eq!(api.id, web.id);

    let db_server = db
        .create_server(&new_server(alice.project, "db", img, h, (2, 2048, 20)))
        .await
        .unwrap();
    assert_conflict(
        db.create_server(&new_server(alice.project, "web", img, h, (1, 128, 1)))
            .await,
        "duplicate server name in a project",
    );
    // Bob may use the same name.
    let bobs = db
        .create_server(&new_server(bob.project, "web", img, h, (1, 128, 1)))
        .await
        .unwrap();

    let got = db.server(alice.project, web.id).await.unwrap();
    assert_eq!(got.name, "web");
    assert_eq!(got.created_at, web.created_at);
    assert_eq!(
        db.server_by_ref(alice.project, "db").await.unwrap().id,
        db_server.id
    );
    assert_eq!(
        db.server_by_ref(alice.project, &web.id.to_string())
            .await
            .unwrap()
            .id,
        web.id
    );
    assert_eq!(
        db.server_by_ref(bob.project, "web").await.unwrap().id,
        bobs.id
    );

    // Another project's server does not exist for you.
    assert_not_found(
        db.server(bob.project, web.id).await,
        "another project's server",
    );
    assert_not_found(
        db.server_by_ref(bob.project, "db").await,
        "another project's server by name",
    );
    assert_not_found(
        db.server_by_ref(bob.project, &web.id.to_string()).await,
        "another project's server by id",
    );
    assert_not_found(
        db.server(alice.project, ServerId::new()).await,
        "unknown server",
    );

    let mut mine: Vec<ServerId> = db
        .list_servers(alice.project)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    mine.sort();
    let mut expect = vec![web.id, db_server.id];
    expect.sort();
    assert_eq!(mine, expect);
    let bobs_list = db.list_servers(bob.project).await.unwrap();
    assert_eq!(bobs_list.len(), 1);
    assert_eq!(bobs_list[0].id, bobs.id);
    assert!(db.list_servers(ProjectId::new()).await.unwrap().is_empty());

    // The host sees every project's servers.
    assert_eq!(db.servers_on_host(h).await.unwrap().len(), 3);
    assert!(db.servers_on_host(HostId::new()).await.unwrap().is_empty());
}

async fn set_power_and_request_reboot(db: &Db) {
    let w = world(db).await;
    let other = user(db, "mallory").await;

    let stopped = db
        .set_power(w.project, w.server, PowerState::Stopped)
        .await
        .unwrap();
    assert_eq!(stopped.power, PowerState::Stopped);
    assert_eq!(get(db, &w).await.power, PowerState::Stopped);
    let started = db
        .set_power(w.project, w.server, PowerState::Running)
        .await
        .unwrap();
    assert_eq!(started.power, PowerState::Running);

    let once = db.request_reboot(w.project, w.server).await.unwrap();
    assert_eq!(once.reboot_generation, 1);
    let twice = db.request_reboot(w.project, w.server).await.unwrap();
    assert_eq!(twice.reboot_generation, 2);
    assert_eq!(twice.observed_reboot_generation, 0);

    // Another project cannot touch it.
    assert_not_found(
        db.set_power(other.project, w.server, PowerState::Stopped)
            .await,
        "set_power from another project",
    );
    assert_not_found(
        db.request_reboot(other.project, w.server).await,
        "request_reboot from another project",
    );
    assert_not_found(
        db.set_power(w.project, ServerId::new(), PowerState::Stopped)
            .await,
        "set_power on an unknown server",
    );
    let unchanged = get(db, &w).await;
    assert_eq!(unchanged.power, PowerState::Running);
    assert_eq!(unchanged.reboot_generation, 2);

    // A server being deleted takes no more power changes or reboots.
    db.mark_deleting(w.project, w.server).await.unwrap();
    assert_not_found(
        db.set_power(w.project, w.server, PowerState::Stopped).await,
        "set_power while deleting",
    );
    assert_not_found(
        db.request_reboot(w.project, w.server).await,
        "request_reboot while deleting",
    );
    let deleting = get(db, &w).await;
    assert_eq!(deleting.power, PowerState::Running);
    assert_eq!(deleting.reboot_generation, 2);
}

async fn mark_deleting(db: &Db) {
    let w = world(db).await;
    let other = user(db, "mallory").await;
    assert_not_found(
        db.mark_deleting(other.project, w.server).await,
        "deleting another project's server",
    );
    assert_not_found(
        db.mark_deleting(w.project, ServerId::new()).await,
        "deleting an unknown server",
    );
    assert!(!get(db, &w).await.deleting);

    // On a host, the server stays until the host no longer reports it.
    db.mark_deleting(w.project, w.server).await.unwrap();
    let marked = get(db, &w).await;
    assert!(marked.deleting);
    assert_eq!(marked.status(), ServerStatus::Deleting);
    assert_eq!(db.list_servers(w.project).await.unwrap().len(), 1);
    // Deleting twice is fine.
    db.mark_deleting(w.project, w.server).await.unwrap();

    // A server on no host (placement never happened, or its host was
    // removed) goes at once. The API cannot create one, so make it by hand.
    let loose = db
        .create_server(&new_server(
            w.project,
            "loose",
            w.image,
            w.host,
            (1, 128, 1),
        ))
        .await
        .unwrap();
    raw_execute(
        db,
        "UPDATE servers SET host_id = NULL WHERE id = $1",
        loose.id.to_string(),
    )
    .await;
    assert_eq!(db.server(w.project, loose.id).await.unwrap().host, None);
    db.mark_deleting(w.project, loose.id).await.unwrap();
    assert_not_found(
        db.server(w.project, loose.id).await,
        "hostless server after delete",
    );
    assert_eq!(db.list_servers(w.project).await.unwrap().len(), 1);
}

async fn host_report_records_observed_state(db: &Db) {
    let w = world(db).await;
    let launched = Utc::now() - Duration::seconds(5);
    let launched = chrono::DateTime::from_timestamp_millis(launched.timestamp_millis()).unwrap();

    db.apply_host_report(
        w.host,
        &full_report(vec![report(w.server, ObservedPower::Creating)]),
    )
    .await
    .unwrap();
    let s = get(db, &w).await;
    assert_eq!(s.observed_power, Some(ObservedPower::Creating));
    assert_eq!(s.status(), ServerStatus::Building);

    db.apply_host_report(
        w.host,
        &full_report(vec![InstanceReport {
            launched_at: Some(launched),
            ..report(w.server, ObservedPower::Running)
        }]),
    )
    .await
    .unwrap();
    let s = get(db, &w).await;
    assert_eq!(s.observed_power, Some(ObservedPower::Running));
    assert_eq!(s.launched_at, Some(launched));
    assert_eq!(s.status(), ServerStatus::Running);

    // A report without a launch time keeps the known one.
    db.apply_host_report(
        w.host,
        &full_report(vec![InstanceReport {
            reboot_generation: 3,
            ..report(w.server, ObservedPower::Running)
        }]),
    )
    .await
    .unwrap();
    let s = get(db, &w).await;
    assert_eq!(s.launched_at, Some(launched));
    assert_eq!(s.observed_reboot_generation, 3);

    // A failure with its reason.
    db.apply_host_report(
        w.host,
        &full_report(vec![InstanceReport {
            fault: Some("disk full".into()),
            ..report(w.server, ObservedPower::Error)
        }]),
    )
    .await
    .unwrap();
    let s = get(db, &w).await;
    assert_eq!(s.observed_power, Some(ObservedPower::Error));
    assert_eq!(s.fault.as_deref(), Some("disk full"));
    assert_eq!(s.status(), ServerStatus::Error);
    assert_eq!(api(&s).fault.as_deref(), Some("disk full"));
    assert_eq!(s.power, PowerState::Running, "a fault is not a stop");

    // The next good report clears the fault.
    db.apply_host_report(
        w.host,
        &full_report(vec![report(w.server, ObservedPower::Running)]),
    )
    .await
    .unwrap();
    let s = get(db, &w).await;
    assert_eq!(s.fault, None);
    assert_eq!(api(&s).fault, None);

    // Stopped by the host without a guest shutdown: desired state stays.
    db.apply_host_report(
        w.host,
        &full_report(vec![report(w.server, ObservedPower::Stopped)]),
    )
    .await
    .unwrap();
    let s = get(db, &w).await;
    assert_eq!(s.observed_power, Some(ObservedPower::Stopped));
    assert_eq!(s.power, PowerState::Running);

    // The guest powered itself off: recorded as a stop.
    db.apply_host_report(
        w.host,
        &full_report(vec![InstanceReport {
            guest_shutdown: true,
            ..report(w.server, ObservedPower::Stopped)
        }]),
    )
    .await
    .unwrap();
    let s = get(db, &w).await;
    assert_eq!(s.power, PowerState::Stopped);
    assert_eq!(s.status(), ServerStatus::Stopped);

    // guest_shutdown only counts together with an observed stop.
    db.set_power(w.project, w.server, PowerState::Running)
        .await
        .unwrap();
    db.apply_host_report(
        w.host,
        &full_report(vec![InstanceReport {
            guest_shutdown: true,
            ..report(w.server, ObservedPower::Running)
        }]),
    )
    .await
    .unwrap();
    assert_eq!(get(db, &w).await.power, PowerState::Running);

    // A report naming an unknown server is ignored.
    db.apply_host_report(
        w.host,
        &full_report(vec![report(ServerId::new(), ObservedPower::Running)]),
    )
    .await
    .unwrap();
}

async fn host_report_removes_deleted_servers(db: &Db) {
    let w = world(db).await;
    let s = |name: &'static str| new_server(w.project, name, w.image, w.host, (1, 128, 1));
    let going = db.create_server(&s("going")).await.unwrap();
    let gone = db.create_server(&s("gone")).await.unwrap();
    let quiet = db.create_server(&s("quiet")).await.unwrap();
    db.mark_deleting(w.project, going.id).await.unwrap();
    db.mark_deleting(w.project, gone.id).await.unwrap();

    // The host still has `going` (being torn down) and `web`, no longer `gone`;
    // `quiet` is missing too but not being deleted, so it stays.
    db.apply_host_report(
        w.host,
        &full_report(vec![
            report(w.server, ObservedPower::Running),
            report(going.id, ObservedPower::Stopped),
        ]),
    )
    .await
    .unwrap();
    assert_not_found(
        db.server(w.project, gone.id).await,
        "deleted and unreported",
    );
    let kept = db.server(w.project, going.id).await.unwrap();
    assert!(kept.deleting);
    assert_eq!(kept.status(), ServerStatus::Deleting);
    assert!(!db.server(w.project, quiet.id).await.unwrap().deleting);
    assert_eq!(get(db, &w).await.status(), ServerStatus::Running);

    // Once the host drops it, it goes.
    db.apply_host_report(
        w.host,
        &full_report(vec![report(w.server, ObservedPower::Running)]),
    )
    .await
    .unwrap();
    assert_not_found(db.server(w.project, going.id).await, "dropped by its host");
    let left: Vec<String> = db
        .list_servers(w.project)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&"web".to_string()) && left.contains(&"quiet".to_string()));
}

async fn host_report_for_another_host_changes_nothing(db: &Db) {
    let w = world(db).await;
    let intruder = host(db, "host-b").await;
    let doomed = db
        .create_server(&new_server(
            w.project,
            "doomed",
            w.image,
            w.host,
            (1, 128, 1),
        ))
        .await
        .unwrap();
    db.mark_deleting(w.project, doomed.id).await.unwrap();
    let before = get(db, &w).await;

    // Host B reports host A's server (stopped by the guest, even) and an
    // empty list otherwise: neither may touch host A's servers.
    db.apply_host_report(
        intruder,
        &full_report(vec![InstanceReport {
            fault: Some("not mine".into()),
            reboot_generation: 9,
            launched_at: Some(Utc::now()),
            guest_shutdown: true,
            ..report(w.server, ObservedPower::Stopped)
        }]),
    )
    .await
    .unwrap();
    db.apply_host_report(intruder, &full_report(vec![]))
        .await
        .unwrap();

    let after = get(db, &w).await;
    assert_eq!(after.power, before.power);
    assert_eq!(after.observed_power, None);
    assert_eq!(after.observed_reboot_generation, 0);
    assert_eq!(after.fault, None);
    assert_eq!(after.launched_at, None);
    assert_eq!(after.host, Some(w.host));
    assert!(
        db.server(w.project, doomed.id).await.unwrap().deleting,
        "host A's deleting server survives host B's report"
    );
}

/// Walks one server through its life, checking the status users see.
async fn status_follows_the_server_lifecycle(db: &Db) {
    let w = world(db).await;
    let now = Utc::now();
    let observe = |power: ObservedPower, generation: u64| InstanceReport {
        reboot_generation: generation,
        launched_at: matches!(power, ObservedPower::Running).then_some(now),
        ..report(w.server, power)
    };
    let apply = |inst: InstanceReport| async move {
        db.apply_host_report(w.host, &full_report(vec![inst]))
            .await
            .unwrap();
        get(db, &w).await.status()
    };

    assert_eq!(get(db, &w).await.status(), ServerStatus::Building);
    assert_eq!(
        apply(observe(ObservedPower::Creating, 0)).await,
        ServerStatus::Building
    );
    assert_eq!(
        apply(observe(ObservedPower::Running, 0)).await,
        ServerStatus::Running
    );

    // Stop: stopping until the host confirms.
    let s = db
        .set_power(w.project, w.server, PowerState::Stopped)
        .await
        .unwrap();
    assert_eq!(s.status(), ServerStatus::Stopping);
    assert_eq!(
        apply(observe(ObservedPower::Stopped, 0)).await,
        ServerStatus::Stopped
    );

    // Start again: shown stopped until the host confirms.
    let s = db
        .set_power(w.project, w.server, PowerState::Running)
        .await
        .unwrap();
    assert_eq!(s.status(), ServerStatus::Stopped);
    assert_eq!(
        apply(observe(ObservedPower::Running, 0)).await,
        ServerStatus::Running
    );

    // Reboot: rebooting until the host has carried it out.
    let s = db.request_reboot(w.project, w.server).await.unwrap();
    assert_eq!(s.status(), ServerStatus::Rebooting);
    assert_eq!(
        apply(observe(ObservedPower::Running, 0)).await,
        ServerStatus::Rebooting
    );
    assert_eq!(
        apply(observe(ObservedPower::Running, 1)).await,
        ServerStatus::Running
    );

    // A stop requested while the host is still creating it.
    db.set_power(w.project, w.server, PowerState::Stopped)
        .await
        .unwrap();
    assert_eq!(
        apply(observe(ObservedPower::Creating, 1)).await,
        ServerStatus::Stopping
    );
    db.set_power(w.project, w.server, PowerState::Running)
        .await
        .unwrap();

    // A failure shows as an error whatever was asked for.
    assert_eq!(
        apply(InstanceReport {
            fault: Some("qemu exited".into()),
            ..observe(ObservedPower::Error, 1)
        })
        .await,
        ServerStatus::Error
    );
    db.set_power(w.project, w.server, PowerState::Stopped)
        .await
        .unwrap();
    assert_eq!(get(db, &w).await.status(), ServerStatus::Error);
    db.set_power(w.project, w.server, PowerState::Running)
        .await
        .unwrap();
    assert_eq!(
        apply(observe(ObservedPower::Running, 1)).await,
        ServerStatus::Running
    );

    // Deleting wins over everything, even a fault.
    db.mark_deleting(w.project, w.server).await.unwrap();
    assert_eq!(get(db, &w).await.status(), ServerStatus::Deleting);
    assert_eq!(
        apply(InstanceReport {
            fault: Some("stuck".into()),
            ..observe(ObservedPower::Error, 1)
        })
        .await,
        ServerStatus::Deleting
    );
    db.apply_host_report(w.host, &full_report(vec![]))
        .await
        .unwrap();
    assert_not_found(db.server(w.project, w.server).await, "deleted server");
}

/// What a server's guest is configured with is stored as given.
async fn server_guest_config_round_trips(db: &Db) {
    let w = world(db).await;
    let plain = get(db, &w).await;
    assert_eq!(plain.key_name, None);
    assert_eq!(plain.key_data, None);
    assert_eq!(plain.user_data, None);
    assert!(!plain.config_drive);

    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBexample alice@laptop";
    let user_data = "I2Nsb3VkLWNvbmZpZwpob3N0bmFtZTogd2ViCg==".to_string();
    let configured = db
        .create_server(&NewServer {
            key_name: Some("laptop"),
            key_data: Some(key),
            user_data: Some(user_data.clone()),
            config_drive: true,
            ..new_server(w.project, "configured", w.image, w.host, (1, 128, 1))
        })
        .await
        .unwrap();
    for s in [
        configured.clone(),
        db.server(w.project, configured.id).await.unwrap(),
    ] {
        assert_eq!(s.key_name.as_deref(), Some("laptop"));
        assert_eq!(s.key_data.as_deref(), Some(key));
        assert_eq!(s.user_data.as_deref(), Some(user_data.as_str()));
        assert!(s.config_drive);
    }
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

/// Opens every connection of the pool, so the requests below really race.
async fn warm_pool(db: &Db) {
    let reads = (0..16).map(|_| db.list_flavors());
    for result in futures_util::future::join_all(reads).await {
        result.expect("warm-up read");
    }
}

/// Open registration: only one of many simultaneous first users may become an
/// admin, and none of them may fail.
async fn concurrent_first_registrations_make_one_admin(db: &Db) {
    warm_pool(db).await;
    let names: Vec<String> = (0..16).map(|i| format!("user{i}")).collect();
    let results =
        futures_util::future::join_all(names.iter().map(|n| db.create_user(n, "hash", false)))
            .await;
    let mut admins = 0;
    for (name, result) in names.iter().zip(results) {
        match result {
            Ok(user) => admins += usize::from(user.admin),
            Err(e) => panic!("registering {name} beside others failed: {e}"),
        }
    }
    assert_eq!(admins, 1, "exactly one of the first users is an admin");
}

/// An agent restarting while its previous registration is still in flight.
async fn concurrent_host_registrations_are_idempotent(db: &Db) {
    warm_pool(db).await;
    let req = register("host-a", 8);
    let results = futures_util::future::join_all((0..8).map(|_| db.register_host(&req))).await;
    let ids: Vec<HostId> = results
        .into_iter()
        .map(|r| r.expect("registering the same host concurrently").id)
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one host: {ids:?}");
    assert_eq!(db.list_hosts().await.unwrap().len(), 1);
}

/// A host report that removes deleted servers while users create and delete
/// servers on the same host.
async fn host_reports_beside_concurrent_writes(db: &Db) {
    let w = world(db).await;
    let reports = async {
        for _ in 0..100 {
            db.apply_host_report(w.host, &full_report(vec![]))
                .await
                .expect("host report beside concurrent writes");
            tokio::task::yield_now().await;
        }
    };
    let users = async {
        for i in 0..100 {
            let name = format!("tmp-{i}");
            let s = db
                .create_server(&new_server(w.project, &name, w.image, w.host, (1, 128, 1)))
                .await
                .expect("create server beside host reports");
            db.mark_deleting(w.project, s.id)
                .await
                .expect("delete server beside host reports");
        }
    };
    futures_util::future::join(reports, users).await;
    db.apply_host_report(w.host, &full_report(vec![]))
        .await
        .unwrap();
    let left = db.list_servers(w.project).await.unwrap();
    assert!(
        left.iter().all(|s| s.name == "web"),
        "only the world's server is left"
    );
}

// ---------------------------------------------------------------------------
// Usage records
// ---------------------------------------------------------------------------

fn at(s: &str) -> chrono::DateTime<Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("a time")
        .with_timezone(&Utc)
}

fn period(s: &str) -> nubis_api::traffic::Period {
    nubis_api::traffic::Period::parse(s).expect("a period")
}

/// (kind, name, size, quantity) of every record, in report order.
async fn usage(
    db: &Db,
    project: ProjectId,
    month: &str,
    now: &str,
) -> Vec<(String, String, String, f64)> {
    let report = db
        .usage_report(project, period(month), at(now))
        .await
        .expect("usage report");
    assert_eq!(report.project, project);
    assert_eq!(report.period, period(month));
    report
        .records
        .iter()
        .map(|r| {
            assert_eq!(r.unit, r.kind.unit());
            (
                r.kind.as_str().to_owned(),
                r.name.clone(),
                r.size.clone(),
                r.quantity,
            )
        })
        .collect()
}

fn rec(kind: &str, name: &str, size: &str, quantity: f64) -> (String, String, String, f64) {
    (kind.into(), name.into(), size.into(), quantity)
}

async fn insert_traffic(
    db: &Db,
    server: &str,
    project: ProjectId,
    hour: &str,
    inbound: i64,
    outbound: i64,
) {
    let mut conn = sqlx::AnyConnection::connect(&db.url)
        .await
        .expect("raw connection");
    sqlx::query(
        "INSERT INTO traffic_hourly (server_id, project_id, hour, inbound_bytes, outbound_bytes) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(server.to_owned())
    .bind(project.to_string())
    .bind(at(hour).timestamp_millis())
    .bind(inbound)
    .bind(outbound)
    .execute(&mut conn)
    .await
    .expect("insert traffic");
    conn.close().await.expect("close raw connection");
}

async fn usage_follows_the_server_lifecycle(db: &Db) {
    let owner = user(db, "alice").await;
    let other = user(db, "bob").await;
    let (p, image, host) = (
        owner.project,
        image(db, owner.project, "debian-12").await,
        host(db, "host-a").await,
    );
    let new = new_server(p, "web", image, host, (2, 2048, 20));
    let id = db
        .create_server_at(&new, at("2026-11-30T20:00:00Z"))
        .await
        .expect("create")
        .id;
    // Stopped for an hour; stopping twice and starting twice change nothing.
    for t in ["2026-11-30T22:00:00Z", "2026-11-30T22:30:00Z"] {
        db.set_power_at(p, id, PowerState::Stopped, at(t))
            .await
            .expect("stop");
    }
    for t in ["2026-11-30T23:00:00Z", "2026-11-30T23:30:00Z"] {
        db.set_power_at(p, id, PowerState::Running, at(t))
            .await
            .expect("start");
    }
    // The guest shuts itself down; started again; then deleted.
    let mut down = report(id, ObservedPower::Stopped);
    down.guest_shutdown = true;
    db.apply_host_report_at(host, &full_report(vec![down]), at("2026-12-01T05:00:00Z"))
        .await
        .expect("report");
    assert_eq!(get_server(db, p, id).await.power, PowerState::Stopped);
    db.set_power_at(p, id, PowerState::Running, at("2026-12-01T06:00:00Z"))
        .await
        .expect("start");
    db.mark_deleting_at(p, id, at("2026-12-01T10:00:00Z"))
        .await
        .expect("delete");
    // A start refused on a deleting server opens nothing.
    assert_not_found(
        db.set_power_at(p, id, PowerState::Running, at("2026-12-01T11:00:00Z"))
            .await,
        "start while deleting",
    );
    // The host no longer has it: the row goes, the usage stays.
    db.apply_host_report_at(host, &full_report(vec![]), at("2026-12-01T12:00:00Z"))
        .await
        .expect("report");
    assert_not_found(db.server(p, id).await, "deleted server");

    let intervals = db
        .usage_intervals(&id.to_string())
        .await
        .expect("intervals");
    let shape: Vec<(&str, &str, u64, String, Option<String>)> = intervals
        .iter()
        .map(|i| {
            (
                i.kind.as_str(),
                i.size.as_str(),
                i.quantity,
                i.started_at.to_rfc3339(),
                i.ended_at.map(|t| t.to_rfc3339()),
            )
        })
        .collect();
    let t = |s: &str| at(s).to_rfc3339();
    assert_eq!(
        shape,
        [
            (
                "disk",
                "20gib",
                20,
                t("2026-11-30T20:00:00Z"),
                Some(t("2026-12-01T10:00:00Z"))
            ),
            (
                "instance",
                "2vcpu-2048mib",
                1,
                t("2026-11-30T20:00:00Z"),
                Some(t("2026-11-30T22:00:00Z"))
            ),
            (
                "instance",
                "2vcpu-2048mib",
                1,
                t("2026-11-30T23:00:00Z"),
                Some(t("2026-12-01T05:00:00Z"))
            ),
            (
                "instance",
                "2vcpu-2048mib",
                1,
                t("2026-12-01T06:00:00Z"),
                Some(t("2026-12-01T10:00:00Z"))
            ),
        ]
    );
    assert!(intervals.iter().all(|i| i.project == p && i.name == "web"));

    // November: 2 h + 1 h running, 4 h of 20 GiB (clipped at the month's end).
    let later = "2027-02-01T00:00:00Z";
    assert_eq!(
        usage(db, p, "2026-11", later).await,
        [
            rec("instance", "web", "2vcpu-2048mib", 3.0),
            rec("disk", "web", "20gib", 80.0),
        ]
    );
    // December: 5 h + 4 h running, 10 h of 20 GiB (clipped at its start).
    assert_eq!(
        usage(db, p, "2026-12", later).await,
        [
            rec("instance", "web", "2vcpu-2048mib", 9.0),
            rec("disk", "web", "20gib", 200.0),
        ]
    );
    // Asked during December, at 02:30: counted up to now only.
    assert_eq!(
        usage(db, p, "2026-12", "2026-12-01T02:30:00Z").await,
        [
            rec("instance", "web", "2vcpu-2048mib", 2.5),
            rec("disk", "web", "20gib", 50.0),
        ]
    );
    // Before the server existed, after it went, and another project: nothing.
    assert_eq!(usage(db, p, "2026-10", later).await, []);
    assert_eq!(usage(db, p, "2027-01", later).await, []);
    assert_eq!(usage(db, other.project, "2026-11", later).await, []);
    assert_eq!(usage(db, other.project, "2026-12", later).await, []);
}

async fn usage_stops_with_expired_leases(db: &Db) {
    let owner = user(db, "alice").await;
    let p = owner.project;
    let (image, host) = (image(db, p, "debian-12").await, host(db, "host-a").await);
    let mut new = new_server(p, "web", image, host, (1, 1024, 10));
    new.lease_expires_at = Some(at("2026-11-01T01:00:00Z"));
    db.create_server_at(&new, at("2026-11-01T00:00:00Z"))
        .await
        .expect("create");
    let grace = Duration::hours(2);
    // Stopped by the sweep at 02:00 (an hour after expiry), deleted at 04:00.
    let sweep = db
        .sweep_leases(at("2026-11-01T02:00:00Z"), grace)
        .await
        .expect("sweep");
    assert_eq!(sweep.stopped.len(), 1);
    let sweep = db
        .sweep_leases(at("2026-11-01T04:00:00Z"), grace)
        .await
        .expect("sweep");
    assert_eq!(sweep.deleted.len(), 1);
    assert_eq!(
        usage(db, p, "2026-11", "2026-12-01T00:00:00Z").await,
        [
            rec("instance", "web", "1vcpu-1024mib", 2.0),
            rec("disk", "web", "10gib", 40.0),
        ]
    );
}

async fn get_server(db: &Db, project: ProjectId, id: ServerId) -> ServerRecord {
    db.server(project, id).await.expect("get server")
}

async fn usage_of_floating_ips_and_traffic(db: &Db) {
    let owner = user(db, "alice").await;
    let other = user(db, "bob").await;
    let p = owner.project;
    db.create_floating_ip_pool(
        "public",
        "203.0.113.10".parse().unwrap(),
        "203.0.113.20".parse().unwrap(),
    )
    .await
    .expect("pool");
    let first = db
        .allocate_floating_ip_at(p, None, at("2026-11-10T00:00:00Z"))
        .await
        .expect("allocate");
    assert_eq!(first.ip.to_string(), "203.0.113.10");
    let bobs = db
        .allocate_floating_ip_at(other.project, None, at("2026-11-10T00:00:00Z"))
        .await
        .expect("allocate for bob");
    db.release_floating_ip_at(p, first.id, at("2026-11-10T12:00:00Z"))
        .await
        .expect("release");
    assert_not_found(
        db.release_floating_ip_at(p, first.id, at("2026-11-10T13:00:00Z"))
            .await,
        "release twice",
    );
    // Bob's address cannot be released by alice, and stays billed to bob.
    assert_not_found(
        db.release_floating_ip_at(p, bobs.id, at("2026-11-11T00:00:00Z"))
            .await,
        "release another project's address",
    );
    // Held from the last two hours of November on.
    let second = db
        .allocate_floating_ip_at(p, None, at("2026-11-30T22:00:00Z"))
        .await
        .expect("allocate again");
    assert_eq!(
        second.ip.to_string(),
        "203.0.113.10",
        "the address is reused"
    );

    // Traffic of a server that is gone by the time of the report; its name
    // comes from its usage intervals.
    let image = image(db, p, "debian-12").await;
    let host = host(db, "host-a").await;
    let new = new_server(p, "db", image, host, (1, 512, 5));
    let server = db
        .create_server_at(&new, at("2026-12-05T00:00:00Z"))
        .await
        .expect("create")
        .id;
    db.mark_deleting_at(p, server, at("2026-12-05T01:00:00Z"))
        .await
        .expect("delete");
    db.apply_host_report_at(host, &full_report(vec![]), at("2026-12-05T02:00:00Z"))
        .await
        .expect("report");
    let sid = server.to_string();
    const GIB: i64 = 1 << 30;
    insert_traffic(db, &sid, p, "2026-12-05T00:00:00Z", 2 * GIB, GIB / 2).await;
    insert_traffic(db, &sid, p, "2026-12-31T23:00:00Z", GIB, GIB / 4).await;
    // Outside December, and another project's: not counted.
    insert_traffic(db, &sid, p, "2026-11-30T23:00:00Z", 7 * GIB, 7 * GIB).await;
    insert_traffic(db, &sid, p, "2027-01-01T00:00:00Z", 9 * GIB, 9 * GIB).await;
    let stranger = uuid::Uuid::new_v4().to_string();
    insert_traffic(
        db,
        &stranger,
        other.project,
        "2026-12-06T00:00:00Z",
        GIB,
        GIB,
    )
    .await;

    let later = "2027-02-01T00:00:00Z";
    let ip = "203.0.113.10";
    // November: one address in two allocations (two resources, in id
    // order), 12 h and 2 h; the traffic of the month's last hour.
    let mut fips = [(first.id.to_string(), 12.0), (second.id.to_string(), 2.0)];
    fips.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want: Vec<_> = fips
        .iter()
        .map(|(_, hours)| rec("floating_ip", ip, "ipv4", *hours))
        .collect();
    want.push(rec("traffic", "db", "inbound", 7.0));
    want.push(rec("traffic", "db", "outbound", 7.0));
    assert_eq!(usage(db, p, "2026-11", later).await, want);
    // December, asked on the 2nd at noon: the open address counts 36 h so
    // far; the server's hour on the 5th is still ahead. Traffic is what was
    // metered in the month.
    assert_eq!(
        usage(db, p, "2026-12", "2026-12-02T12:00:00Z").await,
        [
            rec("floating_ip", ip, "ipv4", 36.0),
            rec("traffic", "db", "inbound", 3.0),
            rec("traffic", "db", "outbound", 0.75),
        ]
    );
    assert_eq!(
        usage(db, p, "2026-12", later).await,
        [
            rec("instance", "db", "1vcpu-512mib", 1.0),
            rec("disk", "db", "5gib", 5.0),
            rec("floating_ip", ip, "ipv4", 31.0 * 24.0),
            rec("traffic", "db", "inbound", 3.0),
            rec("traffic", "db", "outbound", 0.75),
        ]
    );
    // Bob: his own address all along, and his own traffic (named by id,
    // since no interval or server knows it).
    assert_eq!(
        usage(db, other.project, "2026-12", later).await,
        [
            rec("floating_ip", "203.0.113.11", "ipv4", 31.0 * 24.0),
            rec("traffic", &stranger, "inbound", 1.0),
            rec("traffic", &stranger, "outbound", 1.0),
        ]
    );
}

// Rental terms: metered traffic, traffic quotas, leases
// ---------------------------------------------------------------------------

fn counter(w: &World, source: &str, inbound: u64, outbound: u64) -> TrafficCounter {
    TrafficCounter {
        server: w.server,
        // One fixed port id per test is enough: counters are keyed by source.
        port: "00000000-0000-4000-8000-000000000001"
            .parse()
            .expect("port id"),
        source: source.into(),
        inbound_bytes: inbound,
        outbound_bytes: outbound,
    }
}

async fn traffic(db: &Db, w: &World, now: chrono::DateTime<Utc>) -> (u64, u64) {
    let u = db
        .server_usage(w.project, w.server, Period::containing(now))
        .await
        .expect("usage");
    assert_eq!(u.total_bytes, u.inbound_bytes + u.outbound_bytes);
    (u.inbound_bytes, u.outbound_bytes)
}

async fn traffic_counts_each_byte_once(db: &Db) {
    let w = world(db).await;
    let now = Utc::now();
    db.record_traffic(w.host, &[counter(&w, "boot/7/ntap-a", 1000, 500)], now)
        .await
        .expect("record");
    assert_eq!(traffic(db, &w, now).await, (1000, 500));
    // The same report again (a retry, an agent restart) adds nothing.
    db.record_traffic(w.host, &[counter(&w, "boot/7/ntap-a", 1000, 500)], now)
        .await
        .expect("record");
    assert_eq!(traffic(db, &w, now).await, (1000, 500));
    // Growth adds only the difference.
    db.record_traffic(w.host, &[counter(&w, "boot/7/ntap-a", 1500, 700)], now)
        .await
        .expect("record");
    assert_eq!(traffic(db, &w, now).await, (1500, 700));
    // A new device counts from zero; a reset device counts what it shows.
    db.record_traffic(
        w.host,
        &[
            counter(&w, "boot/9/ntap-a", 100, 100),
            counter(&w, "boot/7/ntap-a", 50, 30),
        ],
        now,
    )
    .await
    .expect("record");
    assert_eq!(traffic(db, &w, now).await, (1650, 830));
    // Another host cannot bill this server.
    let other = host(db, "host-b").await;
    db.record_traffic(
        other,
        &[counter(&w, "boot/1/ntap-x", 1 << 30, 1 << 30)],
        now,
    )
    .await
    .expect("record");
    assert_eq!(traffic(db, &w, now).await, (1650, 830));
    // The project's view adds up, and another period is empty.
    let p = db
        .project_usage(w.project, Period::containing(now))
        .await
        .expect("project usage");
    assert_eq!((p.inbound_bytes, p.outbound_bytes), (1650, 830));
    assert_eq!(p.servers.len(), 1);
    assert_eq!(p.servers[0].name, "web");
    assert_eq!(p.series.len(), 1);
    let later = db
        .project_usage(w.project, Period::containing(now + Duration::days(40)))
        .await
        .expect("project usage");
    assert_eq!(later.total_bytes, 0);
}

async fn traffic_quota_throttles_suspends_and_lifts(db: &Db) {
    let w = world(db).await;
    let now = Utc::now();
    let quota = |mib: u64, policy| Some(Some(TrafficQuota::from_bytes(mib << 20, policy)));
    let set = |q| TermsUpdate {
        bandwidth: None,
        traffic_quota: q,
    };
    db.update_terms(w.server, &set(quota(1, QuotaPolicy::Throttle)), now)
        .await
        .expect("set quota");
    assert_eq!(get(db, &w).await.traffic_state, TrafficState::Normal);
    let changes = db
        .record_traffic(w.host, &[counter(&w, "b/1/t", 1 << 20, 1 << 20)], now)
        .await
        .expect("record");
    assert_eq!(changes.len(), 1);
    let s = get(db, &w).await;
    assert_eq!(s.traffic_state, TrafficState::Throttled);
    assert!(
        s.traffic_reason
            .as_deref()
            .unwrap_or("")
            .contains("throttled"),
        "{:?}",
        s.traffic_reason
    );
    assert!(!s.network_limits(RateLimit::average(1)).suspended);
    assert_eq!(
        s.network_limits(RateLimit::average(1)).bandwidth.inbound,
        Some(RateLimit::average(1))
    );
    // Raising the quota lifts it at once.
    let change = db
        .update_terms(w.server, &set(quota(10, QuotaPolicy::Throttle)), now)
        .await
        .expect("raise");
    assert_eq!(change.map(|c| c.state), Some(TrafficState::Normal));
    assert_eq!(get(db, &w).await.traffic_reason, None);
    // Suspend policy below usage: networking cut.
    db.update_terms(w.server, &set(quota(1, QuotaPolicy::Suspend)), now)
        .await
        .expect("lower");
    let s = get(db, &w).await;
    assert_eq!(s.traffic_state, TrafficState::Suspended);
    assert!(s.network_limits(RateLimit::average(1)).suspended);
    // Nothing changes within the month; the next month lifts it.
    assert!(db
        .recheck_traffic_states(now)
        .await
        .expect("recheck")
        .is_empty());
    let next_month = Period::containing(now).end + Duration::hours(1);
    let lifted = db
        .recheck_traffic_states(next_month)
        .await
        .expect("recheck");
    assert_eq!(lifted.len(), 1);
    assert_eq!(get(db, &w).await.traffic_state, TrafficState::Normal);
    let kinds: Vec<EventKind> = db
        .events(w.project, Some(w.server))
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    use EventKind::*;
    assert_eq!(
        kinds,
        [
            QuotaChanged,
            TrafficThrottled,
            QuotaChanged,
            TrafficRestored,
            QuotaChanged,
            TrafficSuspended,
            TrafficRestored
        ]
    );
}

async fn leases_stop_then_delete(db: &Db) {
    let w = world(db).await;
    let now = Utc::now();
    let grace = Duration::days(2);
    db.renew_lease(w.server, now + Duration::hours(1), now)
        .await
        .expect("lease");
    // An exempt server with an expired lease is left alone.
    let owner2 = user(db, "bob").await;
    let img2 = image(db, owner2.project, "img").await;
    let exempt = db
        .create_server(&NewServer {
            lease_expires_at: Some(now + Duration::minutes(5)),
            ..new_server(owner2.project, "kept", img2, w.host, (1, 128, 1))
        })
        .await
        .expect("server")
        .id;
    db.set_lease_exempt(exempt, true, now)
        .await
        .expect("exempt");

    let sweep = db
        .sweep_leases(now + Duration::minutes(30), grace)
        .await
        .expect("sweep");
    assert_eq!(sweep, LeaseSweep::default());
    let sweep = db
        .sweep_leases(now + Duration::hours(2), grace)
        .await
        .expect("sweep");
    assert_eq!(sweep.stopped, vec![w.server]);
    let s = get(db, &w).await;
    assert_eq!(s.power, PowerState::Stopped);
    assert!(s.lease_expired);
    assert_eq!(s.lease(grace).unwrap().state, LeaseState::Expired);
    // A second pass does not stop it again.
    let sweep = db
        .sweep_leases(now + Duration::hours(3), grace)
        .await
        .expect("sweep");
    assert_eq!(sweep, LeaseSweep::default());
    // Past the grace period it is deleted.
    let sweep = db
        .sweep_leases(
            now + Duration::hours(1) + grace + Duration::minutes(1),
            grace,
        )
        .await
        .expect("sweep");
    assert_eq!(sweep.deleted, vec![w.server]);
    assert!(get(db, &w).await.deleting);
    let kinds: Vec<EventKind> = db
        .events(w.project, None)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::LeaseRenewed,
            EventKind::LeaseExpired,
            EventKind::LeaseDeleted
        ]
    );
    let kept = db.server(owner2.project, exempt).await.expect("kept");
    assert!(!kept.deleting && !kept.lease_expired);
    assert_eq!(kept.power, PowerState::Running);
}

// ---------------------------------------------------------------------------
// Project quotas
// ---------------------------------------------------------------------------

/// In their own module (`quotas::sqlite::NAME`, `quotas::postgres::NAME`).
mod quotas {
    use super::*;
    use nubis_api::quotas::{QuotaLimits, UpdateQuotas};
    use nubis_controller::store::networks::NewNetwork;

    store_tests!(
        quotas_default_set_and_get,
        quotas_below_usage_are_refused,
        creates_beyond_the_quota_are_refused,
        default_network_is_outside_the_networks_quota,
        // Concurrency: the quota must hold under racing creates.
        concurrent_server_creates_never_exceed_the_servers_quota,
        concurrent_server_creates_never_exceed_the_vcpus_quota,
        concurrent_floating_ips_and_networks_never_exceed_their_quotas,
        lowering_a_quota_beside_concurrent_creates,
    );

    fn set(f: impl FnOnce(&mut UpdateQuotas)) -> UpdateQuotas {
        let mut u = UpdateQuotas::default();
        f(&mut u);
        u
    }

    fn assert_quota_exceeded<T: std::fmt::Debug>(
        result: Result<T, StoreError>,
        what: &str,
        mention: &str,
    ) {
        match result {
            Err(StoreError::QuotaExceeded(m)) if m.contains(mention) => {}
            other => panic!("{what}: expected QuotaExceeded mentioning {mention:?}, got {other:?}"),
        }
    }

    fn network(project: ProjectId, name: &str, third_octet: u8) -> NewNetwork<'_> {
        let cidr: nubis_api::networks::Cidr =
            format!("192.168.{third_octet}.0/24").parse().unwrap();
        NewNetwork {
            project,
            name,
            cidr,
            gateway: cidr.first_host(),
            dns_zone: "nubis.internal",
        }
    }

    async fn quotas_default_set_and_get(db: &Db) {
        let alice = user(db, "alice").await;
        let bob = user(db, "bob").await;
        let q = db.project_quotas(alice.project).await.unwrap();
        assert_eq!(q.project, alice.project);
        assert_eq!(q.limits, QuotaLimits::default());
        assert_eq!(q.in_use, QuotaLimits::default_zero());

        let set_q = db
            .set_quotas(alice.project, &set(|u| u.servers = Some(3)))
            .await
            .unwrap();
        let want = QuotaLimits {
            servers: 3,
            ..QuotaLimits::default()
        };
        assert_eq!(set_q.limits, want);
        assert_eq!(db.project_quotas(alice.project).await.unwrap().limits, want);
        // A second update keeps what the first set.
        db.set_quotas(
            alice.project,
            &set(|u| {
                u.vcpus = Some(0);
                u.networks = Some(1 << 40);
            }),
        )
        .await
        .unwrap();
        let want = QuotaLimits {
            servers: 3,
            vcpus: 0,
            networks: 1 << 40,
            ..QuotaLimits::default()
        };
        assert_eq!(db.project_quotas(alice.project).await.unwrap().limits, want);
        // An empty update changes nothing.
        let same = db
            .set_quotas(alice.project, &UpdateQuotas::default())
            .await
            .unwrap();
        assert_eq!(same.limits, want);
        // Other projects keep the defaults.
        let b = db.project_quotas(bob.project).await.unwrap();
        assert_eq!(b.limits, QuotaLimits::default());
        // No such project.
        let nobody = ProjectId::new();
        assert_not_found(db.project_quotas(nobody).await, "quotas of no project");
        assert_not_found(
            db.set_quotas(nobody, &set(|u| u.servers = Some(1))).await,
            "setting quotas of no project",
        );
        assert_eq!(
            raw_count(db, "SELECT COUNT(*) FROM project_quotas").await,
            1,
            "only alice's project has an override"
        );
    }

    async fn quotas_below_usage_are_refused(db: &Db) {
        let w = world(db).await; // one server: 2 vCPUs, 2048 MiB, 20 GiB
        db.create_server(&new_server(w.project, "db", w.image, w.host, (2, 2048, 20)))
            .await
            .unwrap();
        let before = db.project_quotas(w.project).await.unwrap();
        assert_eq!(
            before.in_use,
            QuotaLimits {
                servers: 2,
                vcpus: 4,
                memory_mib: 4096,
                disk_gib: 40,
                floating_ips: 0,
                networks: 0,
            }
        );
        let cases = [
            ("servers", set(|u| u.servers = Some(1))),
            ("vcpus", set(|u| u.vcpus = Some(3))),
            ("memory_mib", set(|u| u.memory_mib = Some(4095))),
            ("disk_gib", set(|u| u.disk_gib = Some(0))),
            // One good limit beside a bad one: nothing changes at all.
            (
                "servers",
                set(|u| {
                    u.vcpus = Some(100);
                    u.servers = Some(0);
                }),
            ),
        ];
        for (name, update) in cases {
            match db.set_quotas(w.project, &update).await {
                Err(StoreError::Conflict(m)) => {
                    assert!(m.contains(&format!("the {name} quota")), "{m}");
                    assert!(m.contains("already holds"), "{m}");
                }
                other => panic!("{update:?}: expected Conflict, got {other:?}"),
            }
            let now = db.project_quotas(w.project).await.unwrap();
            assert_eq!(now.limits, before.limits, "{update:?} changed the limits");
        }
        // Exactly the usage is fine; a server being deleted no longer counts.
        db.set_quotas(
            w.project,
            &set(|u| {
                u.servers = Some(2);
                u.vcpus = Some(4);
            }),
        )
        .await
        .unwrap();
        db.mark_deleting(w.project, w.server).await.unwrap();
        let q = db
            .set_quotas(w.project, &set(|u| u.servers = Some(1)))
            .await
            .unwrap();
        assert_eq!(
            (q.limits.servers, q.in_use.servers, q.in_use.vcpus),
            (1, 1, 2)
        );
    }

    async fn creates_beyond_the_quota_are_refused(db: &Db) {
        let w = world(db).await; // one server: 2 vCPUs, 2048 MiB, 20 GiB
        let other = user(db, "bob").await;
        db.create_floating_ip_pool("public", [203, 0, 113, 1].into(), [203, 0, 113, 100].into())
            .await
            .unwrap();
        db.set_quotas(
            w.project,
            &set(|u| {
                u.servers = Some(2);
                u.vcpus = Some(3);
                u.memory_mib = Some(4096);
                u.disk_gib = Some(30);
                u.floating_ips = Some(1);
                u.networks = Some(1);
            }),
        )
        .await
        .unwrap();
        let s = |name, size| new_server(w.project, name, w.image, w.host, size);
        assert_quota_exceeded(
            db.create_server(&s("big", (2, 128, 1))).await,
            "vcpus",
            "quota exceeded for vcpus: limit 3, in use 2, requested 2",
        );
        assert_quota_exceeded(
            db.create_server(&s("fat", (1, 2049, 1))).await,
            "memory",
            "memory_mib",
        );
        assert_quota_exceeded(
            db.create_server(&s("wide", (1, 128, 11))).await,
            "disk",
            "disk_gib",
        );
        db.create_server(&s("fits", (1, 2048, 10))).await.unwrap();
        assert_quota_exceeded(
            db.create_server(&s("more", (1, 64, 1))).await,
            "servers",
            "quota exceeded for servers: limit 2, in use 2, requested 1",
        );
        assert_eq!(db.list_servers(w.project).await.unwrap().len(), 2);

        db.allocate_floating_ip(w.project, None).await.unwrap();
        assert_quota_exceeded(
            db.allocate_floating_ip(w.project, None).await,
            "floating IPs",
            "floating_ips",
        );
        assert_eq!(db.list_floating_ips(w.project).await.unwrap().len(), 1);

        db.create_network(&network(w.project, "lan", 1))
            .await
            .unwrap();
        assert_quota_exceeded(
            db.create_network(&network(w.project, "lan2", 2)).await,
            "networks",
            "quota exceeded for networks: limit 1, in use 1, requested 1",
        );
        assert_eq!(db.list_networks(w.project).await.unwrap().len(), 1);

        // Another project is not limited by this one's quota.
        let bobs = image(db, other.project, "img").await;
        for i in 0..3 {
            let name = format!("b{i}");
            db.create_server(&new_server(other.project, &name, bobs, w.host, (1, 128, 1)))
                .await
                .unwrap();
        }
        db.allocate_floating_ip(other.project, None).await.unwrap();
        db.allocate_floating_ip(other.project, None).await.unwrap();

        // Freeing something makes room again.
        db.mark_deleting(w.project, w.server).await.unwrap();
        db.create_server(&s("again", (1, 128, 1))).await.unwrap();
        // A zero limit refuses everything of that kind.
        db.set_quotas(w.project, &set(|u| u.floating_ips = Some(1)))
            .await
            .unwrap();
        let zero = user(db, "carol").await;
        db.set_quotas(zero.project, &set(|u| u.floating_ips = Some(0)))
            .await
            .unwrap();
        assert_quota_exceeded(
            db.allocate_floating_ip(zero.project, None).await,
            "zero floating IPs",
            "limit 0",
        );
    }

    async fn default_network_is_outside_the_networks_quota(db: &Db) {
        let alice = user(db, "alice").await;
        db.set_quotas(alice.project, &set(|u| u.networks = Some(0)))
            .await
            .unwrap();
        let default = db
            .ensure_default_network(alice.project, "nubis.internal")
            .await
            .expect("the default network needs no networks quota");
        assert_eq!(default.name, "default");
        assert_quota_exceeded(
            db.create_network(&network(alice.project, "lan", 1)).await,
            "a network beyond a zero quota",
            "networks",
        );
        let q = db.project_quotas(alice.project).await.unwrap();
        assert_eq!(q.in_use.networks, 0, "the default network is not counted");
        // With room for one, the default network does not take it.
        db.set_quotas(alice.project, &set(|u| u.networks = Some(1)))
            .await
            .unwrap();
        db.create_network(&network(alice.project, "lan", 1))
            .await
            .unwrap();
        assert_eq!(db.list_networks(alice.project).await.unwrap().len(), 2);
    }

    /// Fires `n` creates of one-vCPU servers at once; returns how many
    /// succeeded. Every failure must be `QuotaExceeded`.
    async fn race_servers(db: &Db, w: &World, n: usize, size: (u64, u64, u64)) -> usize {
        warm_pool(db).await;
        let names: Vec<String> = (0..n).map(|i| format!("race-{i}")).collect();
        let news: Vec<NewServer<'_>> = names
            .iter()
            .map(|name| new_server(w.project, name, w.image, w.host, size))
            .collect();
        let creates = news.iter().map(|new| db.create_server(new));
        let results = futures_util::future::join_all(creates).await;
        let mut ok = 0;
        for (name, r) in names.iter().zip(results) {
            match r {
                Ok(_) => ok += 1,
                Err(StoreError::QuotaExceeded(_)) => {}
                Err(e) => panic!("creating {name} beside others failed otherwise: {e}"),
            }
        }
        ok
    }

    async fn concurrent_server_creates_never_exceed_the_servers_quota(db: &Db) {
        let w = world(db).await;
        db.mark_deleting(w.project, w.server).await.unwrap();
        db.set_quotas(w.project, &set(|u| u.servers = Some(3)))
            .await
            .unwrap();
        for round in 0..3 {
            let ok = race_servers(db, &w, 12, (1, 64, 1)).await;
            let q = db.project_quotas(w.project).await.unwrap();
            assert_eq!(
                (ok, q.in_use.servers),
                (if round == 0 { 3 } else { 0 }, 3),
                "round {round}: exactly the quota's room, never more"
            );
            for s in db.list_servers(w.project).await.unwrap() {
                if round < 2 && !s.deleting {
                    db.mark_deleting(w.project, s.id).await.unwrap();
                }
            }
            if round < 2 {
                // Names stay taken while being deleted: free them fully.
                db.apply_host_report(w.host, &full_report(vec![]))
                    .await
                    .unwrap();
                let ok = race_servers(db, &w, 12, (1, 64, 1)).await;
                assert_eq!(ok, 3, "round {round}: room again after deletes");
            }
        }
        let live = db
            .list_servers(w.project)
            .await
            .unwrap()
            .into_iter()
            .filter(|s| !s.deleting)
            .count();
        assert_eq!(live, 3);
    }

    async fn concurrent_server_creates_never_exceed_the_vcpus_quota(db: &Db) {
        let w = world(db).await; // 2 vCPUs in use
        db.set_quotas(
            w.project,
            &set(|u| {
                u.servers = Some(100);
                u.vcpus = Some(9);
            }),
        )
        .await
        .unwrap();
        // 7 vCPUs of room: three servers of 2, not four.
        let ok = race_servers(db, &w, 12, (2, 64, 1)).await;
        assert_eq!(ok, 3);
        let q = db.project_quotas(w.project).await.unwrap();
        assert_eq!((q.in_use.servers, q.in_use.vcpus), (4, 8));
        assert!(q.in_use.vcpus <= q.limits.vcpus);
    }

    async fn concurrent_floating_ips_and_networks_never_exceed_their_quotas(db: &Db) {
        let alice = user(db, "alice").await;
        db.create_floating_ip_pool("public", [203, 0, 113, 1].into(), [203, 0, 113, 100].into())
            .await
            .unwrap();
        db.set_quotas(
            alice.project,
            &set(|u| {
                u.floating_ips = Some(2);
                u.networks = Some(3);
            }),
        )
        .await
        .unwrap();
        warm_pool(db).await;
        let fips = (0..10).map(|_| db.allocate_floating_ip(alice.project, None));
        let names: Vec<String> = (0..10).map(|i| format!("lan{i}")).collect();
        let news: Vec<NewNetwork<'_>> = names
            .iter()
            .enumerate()
            .map(|(i, name)| network(alice.project, name, i as u8 + 1))
            .collect();
        let nets = news.iter().map(|new| db.create_network(new));
        let (fips, nets) = futures_util::future::join(
            futures_util::future::join_all(fips),
            futures_util::future::join_all(nets),
        )
        .await;
        let count = |results: Vec<Result<_, StoreError>>, what: &str| {
            let mut ok = 0;
            for r in results {
                match r {
                    Ok(_) => ok += 1,
                    Err(StoreError::QuotaExceeded(_)) => {}
                    Err(e) => panic!("{what} beside others failed otherwise: {e}"),
                }
            }
            ok
        };
        let fips: Vec<Result<(), StoreError>> = fips.into_iter().map(|r| r.map(|_| ())).collect();
        let nets: Vec<Result<(), StoreError>> = nets.into_iter().map(|r| r.map(|_| ())).collect();
        assert_eq!(count(fips, "allocating a floating IP"), 2);
        assert_eq!(count(nets, "creating a network"), 3);
        let q = db.project_quotas(alice.project).await.unwrap();
        assert_eq!((q.in_use.floating_ips, q.in_use.networks), (2, 3));
    }

    /// An admin lowering a quota while the project creates servers: either
    /// order is fine, but the project never ends above its limit.
    async fn lowering_a_quota_beside_concurrent_creates(db: &Db) {
        let w = world(db).await;
        for round in 0..5 {
            for s in db.list_servers(w.project).await.unwrap() {
                db.mark_deleting(w.project, s.id).await.unwrap();
            }
            db.apply_host_report(w.host, &full_report(vec![]))
                .await
                .unwrap();
            db.set_quotas(w.project, &set(|u| u.servers = Some(10)))
                .await
                .unwrap();
            let lower = async {
                // Let a few creates start first.
                for _ in 0..round {
                    tokio::task::yield_now().await;
                }
                db.set_quotas(w.project, &set(|u| u.servers = Some(2)))
                    .await
            };
            let (lowered, ok) =
                futures_util::future::join(lower, race_servers(db, &w, 8, (1, 64, 1))).await;
            let q = db.project_quotas(w.project).await.unwrap();
            assert!(
                q.in_use.servers <= q.limits.servers,
                "round {round}: {} servers over a limit of {}",
                q.in_use.servers,
                q.limits.servers
            );
            assert_eq!(q.in_use.servers as usize, ok, "round {round}");
            match lowered {
                Ok(_) => assert_eq!(q.limits.servers, 2, "round {round}"),
                Err(StoreError::Conflict(m)) => {
                    assert!(m.contains("servers"), "{m}");
                    assert_eq!(q.limits.servers, 10, "round {round}");
                    assert!(ok > 2, "round {round}: refused with {ok} servers");
                }
                Err(e) => panic!("round {round}: lowering failed otherwise: {e}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Installing from an ISO
// ---------------------------------------------------------------------------

async fn iso_servers_hold_the_cdrom_until_ejected(db: &Db) {
    let w = world(db).await;
    // A server from a disk image has no ISO to eject.
    assert!(!get(db, &w).await.cdrom_attached);
    assert_conflict(
        db.eject_cdrom(w.project, w.server).await,
        "ejecting a disk server",
    );
    let iso = db
        .create_image(&NewImage {
            format: ImageFormat::Iso,
            ..new_image(w.project, "installer", Visibility::Private)
        })
        .await
        .unwrap()
        .id;
    let server = db
        .create_server(&new_server(w.project, "inst", iso, w.host, (1, 128, 1)))
        .await
        .unwrap();
    assert!(server.cdrom_attached, "made from an ISO: in the drive");
    let other = user(db, "mallory").await;
    assert_not_found(
        db.eject_cdrom(other.project, server.id).await,
        "ejecting another project's server",
    );
    assert_not_found(
        db.eject_cdrom(w.project, ServerId::new()).await,
        "ejecting an unknown server",
    );
    assert!(get_server(db, w.project, server.id).await.cdrom_attached);
    let ejected = db.eject_cdrom(w.project, server.id).await.unwrap();
    assert!(!ejected.cdrom_attached);
    assert!(!get_server(db, w.project, server.id).await.cdrom_attached);
    assert_conflict(db.eject_cdrom(w.project, server.id).await, "ejecting twice");
}
