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
    on_empty_postgres(|url| async move {
        let store = Store::connect(&url).await.expect("open PostgreSQL store");
        assert_eq!(store.backend(), Backend::Postgres);
        let db = Db { store, url };
        test(&db).await;
    })
    .await;
}

/// Runs `test` with the URL of a fresh, empty PostgreSQL database, dropped
/// afterwards (also when the test fails).
async fn on_empty_postgres<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
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
    let result = AssertUnwindSafe(test(url)).catch_unwind().await;

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

// The tests, by topic; declared after `store_tests!` so that `quotas` and
// `address_space` can use it.
mod address_space;
mod audit;
mod concurrency;
mod console_tokens;
mod flavors;
mod hosts;
mod images;
mod iso;
mod leader_leases;
mod legacy_runner;
mod live_targets;
mod moves;
mod overlay;
mod quotas;
mod resource_limits;
mod schema;
mod servers;
mod terms;
mod upgrade;
mod usage;
mod users;

use audit::*;
use concurrency::*;
use console_tokens::*;
use flavors::*;
use hosts::*;
use images::*;
use iso::*;
use leader_leases::*;
use live_targets::*;
use moves::*;
use schema::*;
use servers::*;
use terms::*;
use usage::*;
use users::*;

store_tests!(
    audit_records_filter_page_and_purge,
    migrations_are_idempotent,
    only_users_made_admins_are_admins,
    duplicate_user_name_conflicts,
    tokens_expire_and_are_revoked,
    default_flavors_are_idempotent,
    default_flavors_skip_a_cloud_with_flavors,
    flavors_create_and_look_up,
    images_create_and_activate,
    image_visibility,
    hosts_register_idempotently_by_name,
    moves_raise_generations_and_fail_back,
    a_live_move_holds_room_on_both_hosts,
    leftovers_record_one_fenced_event,
    concurrent_moves_never_overbook_the_target,
    auto_evacuation_places_on_hosts_up_by_the_usual_rule,
    host_loads_sum_placed_servers,
    servers_are_scoped_by_project,
    server_names_with_one_dns_label_conflict,
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
    concurrent_first_registrations_all_succeed_without_admins,
    concurrent_host_registrations_are_idempotent,
    host_reports_beside_concurrent_writes,
    // Rental terms.
    traffic_counts_each_byte_once,
    traffic_quota_throttles_suspends_and_lifts,
    leases_stop_then_delete,
    // Installing from an ISO.
    iso_servers_hold_the_cdrom_until_ejected,
    // Several controllers on one database.
    console_tokens_work_once_at_any_store,
    console_tokens_expire_and_are_revoked,
    concurrent_redemptions_of_a_console_token_succeed_once,
    leader_lease_has_one_holder_until_it_expires,
    changes_are_announced_to_other_stores,
    live_targets_are_recorded_and_forgotten,
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
        addressing: None,
        cpu_model: None,
        tunnel_ip: None,
        shared_store: None,
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
        host: host.into(),
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
        held: Vec::new(),
        addressing: None,
        ..HostReport::default()
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
