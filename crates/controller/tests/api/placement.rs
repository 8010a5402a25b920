//! Placement under concurrency: the claim on a host is taken in the
//! transaction that creates the server, so concurrent creates onto a nearly
//! full cluster never overbook a host, on SQLite and on PostgreSQL (run
//! under `scripts/with-postgres.sh`; without `NUBIS_TEST_DATABASE_URL` the
//! PostgreSQL test passes with a note, except under CI, where it fails).
//!
//! Positive control (done by hand while writing this test): with the
//! PostgreSQL path taking the scheduler's first candidate without locking
//! its host row and reading its load again (the loads then being read at the
//! start of the transaction only, as good as outside it under READ
//! COMMITTED), the PostgreSQL test failed with "accepted 22 of 50 with room
//! for 20". Before issue 11 the loads were read before the transaction on
//! both backends; the issue measured 17 of 20 creates accepted on one host
//! with room for 8.

use super::*;
use std::collections::BTreeMap;

/// Registers `n` hosts `h1..hn` (2 vCPUs = 8 with overcommit, 4 GiB, 100 GiB).
pub(crate) async fn register_hosts(cloud: &Cloud, n: usize) -> Vec<Value> {
    let mut hosts = Vec::new();
    for i in 1..=n {
        let mut body = host_body();
        body["name"] = json!(format!("h{i}"));
        body["url"] = json!(format!("https://127.0.0.{i}:9"));
        let (host, client) = cloud.join(&body).await;
        *cloud.agent.lock().unwrap() = Some(client);
        hosts.push(host);
    }
    hosts
}

/// A user with an image `disk` and its default network and security group
/// made (so concurrent creates do not race to make them).
pub(crate) async fn tenant(cloud: &Cloud, name: &str) -> String {
    let token = cloud.user(name).await;
    cloud
        .active_image(&token, "disk", "raw", vec![0; 4096])
        .await;
    cloud.get_ok(&token, "/v1/networks").await;
    cloud.get_ok(&token, "/v1/security-groups").await;
    token
}

/// vCPUs placed per host name, from `GET /v1/hosts`.
pub(crate) async fn vcpus_by_host(cloud: &Cloud, admin: &str) -> BTreeMap<String, u64> {
    cloud
        .get_ok(admin, "/v1/hosts")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_owned(),
                h["allocated"]["vcpus"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Three hosts with room for 24 one-vCPU servers, 4 already placed; then 50
/// creates at once from 5 projects. Exactly the 20 that fit are accepted,
/// the rest get 409 `no_capacity`, and no host holds more than 8 vCPUs.
async fn fire_creates(cloud: Cloud) {
    const HOSTS: usize = 3;
    const ROOM_PER_HOST: u64 = 8; // 2 vCPUs x 4.0
    const PREFILLED: u64 = 4;
    const CONCURRENT: usize = 50;
    let admin = cloud.admin("root").await;
    register_hosts(&cloud, HOSTS).await;
    let one_vcpu = |name: String| json!({"name": name, "image": "disk", "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
    let filler = tenant(&cloud, "filler").await;
    for i in 0..PREFILLED {
        let resp = cloud
            .post(Some(&filler), "/v1/servers", &one_vcpu(format!("f{i}")))
            .await;
        ok_json(resp, StatusCode::ACCEPTED).await;
    }
    let mut tokens = Vec::new();
    for t in 0..5 {
        tokens.push(tenant(&cloud, &format!("tenant{t}")).await);
    }
    let creates = (0..CONCURRENT).map(|i| {
        let token = tokens[i % tokens.len()].clone();
        let body = one_vcpu(format!("c{i}"));
        let cloud = &cloud;
        async move {
            let resp = cloud.post(Some(&token), "/v1/servers", &body).await;
            let status = resp.status();
            let text = resp.text().await.unwrap();
            (status, text)
        }
    });
    let results = futures_util::future::join_all(creates).await;
    let mut accepted = 0;
    for (status, text) in &results {
        match *status {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::CONFLICT => assert!(text.contains("no_capacity"), "{text}"),
            other => panic!("unexpected {other}: {text}"),
        }
    }
    let capacity = HOSTS as u64 * ROOM_PER_HOST;
    assert_eq!(
        accepted,
        capacity - PREFILLED,
        "accepted {accepted} of {CONCURRENT} with room for {}",
        capacity - PREFILLED
    );
    let placed = vcpus_by_host(&cloud, &admin).await;
    assert_eq!(placed.len(), HOSTS, "{placed:?}");
    for (host, vcpus) in &placed {
        assert!(
            *vcpus <= ROOM_PER_HOST,
            "host {host} overbooked: {vcpus} vCPUs placed, room for {ROOM_PER_HOST}"
        );
    }
    assert_eq!(placed.values().sum::<u64>(), capacity, "{placed:?}");
    // The cluster is full: one more create is refused, saying why.
    let resp = cloud
        .post(Some(&tokens[0]), "/v1/servers", &one_vcpu("late".into()))
        .await;
    assert_error("full cluster", resp, NO_CAPACITY, "no host has room").await;
}

#[tokio::test]
async fn concurrent_creates_never_overbook_on_sqlite() {
    fire_creates(Cloud::start_with_settings(Duration::from_secs(3600), Settings::default()).await)
        .await;
}

#[tokio::test]
async fn concurrent_creates_never_overbook_on_postgres() {
    on_postgres(fire_creates).await;
}

/// Creates rank hosts by a copy of their loads read at most a second ago
/// (`store::load_hints`); the host taken is checked against its current
/// load. Here h2 shrinks (its agent registers again with less memory)
/// right after the copy was read: the copy still shows room on h2, the
/// create is refused, and h2 is not overbooked. Positive control (by hand):
/// with the claim trusting the copy, the create was accepted onto h2.
async fn stale_hints_never_overbook(cloud: Cloud) {
    let admin = cloud.admin("root").await;
    register_hosts(&cloud, 2).await;
    let alice = tenant(&cloud, "alice").await;
    let big = |name: &str| json!({"name": name, "image": "disk", "vcpus": 1, "memory_mib": 3072, "disk_gib": 1});
    // h1 and h2 have 4 GiB each: one such server fits on each.
    let first = cloud.post(Some(&alice), "/v1/servers", &big("a")).await;
    let first = ok_json(first, StatusCode::ACCEPTED).await;
    let hosts = cloud.get_ok(&admin, "/v1/hosts").await;
    let other = hosts
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] != first["host"])
        .expect("a second host")
        .clone();
    // The other host's agent registers again, now with 1 GiB.
    let mut body = host_body();
    body["name"] = other["name"].clone();
    body["url"] = other["url"].clone();
    body["memory_mib"] = json!(1024);
    let resp = cloud
        .agent_req(Method::POST, "/v1/agent/hosts")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let second = cloud.post(Some(&alice), "/v1/servers", &big("b")).await;
    let text = second.text().await.unwrap();
    assert!(
        text.contains("no_capacity"),
        "refused, not placed on the shrunk host: {text}"
    );
    // Positive control of the set-up: a server that fits the shrunk host
    // still lands there.
    let small = json!({"name": "c", "image": "disk", "vcpus": 1, "memory_mib": 512, "disk_gib": 1});
    let third = cloud.post(Some(&alice), "/v1/servers", &small).await;
    let third = ok_json(third, StatusCode::ACCEPTED).await;
    assert_eq!(third["host"], other["id"], "{third}");
}

#[tokio::test]
async fn stale_hints_never_overbook_on_sqlite() {
    stale_hints_never_overbook(
        Cloud::start_with_settings(Duration::from_secs(3600), Settings::default()).await,
    )
    .await;
}

#[tokio::test]
async fn stale_hints_never_overbook_on_postgres() {
    on_postgres(stale_hints_never_overbook).await;
}

/// Ten creates at once into one anti-affinity group on three hosts: the
/// group's row is locked by each create, so exactly three are accepted, on
/// three different hosts.
async fn fire_group_creates(cloud: Cloud) {
    let admin = cloud.admin("root").await;
    register_hosts(&cloud, 3).await;
    let alice = tenant(&cloud, "alice").await;
    let resp = cloud
        .post(
            Some(&alice),
            "/v1/server-groups",
            &json!({"name": "apart", "policy": "anti-affinity"}),
        )
        .await;
    let group = ok_json(resp, StatusCode::CREATED).await;
    let creates = (0..10).map(|i| {
        let body = json!({"name": format!("s{i}"), "image": "disk", "vcpus": 1,
            "memory_mib": 128, "disk_gib": 1, "scheduler_hints": {"group": id(&group)}});
        let (cloud, alice) = (&cloud, &alice);
        async move {
            let resp = cloud.post(Some(alice), "/v1/servers", &body).await;
            (resp.status(), resp.text().await.unwrap())
        }
    });
    let results = futures_util::future::join_all(creates).await;
    let mut accepted = 0;
    for (status, text) in &results {
        match *status {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::CONFLICT => assert!(text.contains("server group's policy"), "{text}"),
            other => panic!("unexpected {other}: {text}"),
        }
    }
    assert_eq!(accepted, 3, "{results:?}");
    let placed = vcpus_by_host(&cloud, &admin).await;
    assert!(placed.values().all(|v| *v == 1), "{placed:?}");
}

#[tokio::test]
async fn concurrent_anti_affinity_creates_hold_the_policy_on_sqlite() {
    fire_group_creates(Cloud::start().await).await;
}

#[tokio::test]
async fn concurrent_anti_affinity_creates_hold_the_policy_on_postgres() {
    on_postgres(fire_group_creates).await;
}

/// A fresh PostgreSQL database on the server `NUBIS_TEST_DATABASE_URL` names.
/// Runs `test` on a cloud on a throwaway PostgreSQL database (see
/// [`postgres::Database::create`] for when there is none).
async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Cloud) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(db) = postgres::Database::create().await else {
        return;
    };
    let cloud = Cloud::start_with_settings(
        Duration::from_secs(3600),
        Settings {
            database_url: Some(db.url.clone()),
            ..Default::default()
        },
    )
    .await;
    test(cloud).await;
    db.drop().await;
}

pub(crate) mod postgres {
    use sqlx::Connection;

    const PG_URL_VAR: &str = "NUBIS_TEST_DATABASE_URL";

    pub(crate) struct Database {
        pub(crate) url: String,
        admin_url: String,
        name: String,
    }

    impl Database {
        /// A new empty database; `None` (after a note) when no server is
        /// named, which under CI is a failure instead.
        pub(crate) async fn create() -> Option<Self> {
            let admin_url = match std::env::var(PG_URL_VAR) {
                Ok(url) if !url.trim().is_empty() => url,
                _ if std::env::var_os("CI").is_some() => panic!(
                    "{PG_URL_VAR} is not set, but CI is: run this test under scripts/with-postgres.sh"
                ),
                _ => {
                    eprintln!("note: {PG_URL_VAR} is not set; skipping this PostgreSQL test");
                    return None;
                }
            };
            let name = format!("api_{}", uuid::Uuid::new_v4().simple());
            let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .unwrap();
            let _ = admin.close().await;
            let (base, query) = match admin_url.split_once('?') {
                Some((b, q)) => (b, Some(q)),
                None => (admin_url.as_str(), None),
            };
            let prefix = &base[..base.rfind('/').expect("a database in the URL")];
            let url = match query {
                Some(q) => format!("{prefix}/{name}?{q}"),
                None => format!("{prefix}/{name}"),
            };
            Some(Self {
                url,
                admin_url,
                name,
            })
        }

        /// Drops the database (connections still open are closed by force).
        pub(crate) async fn drop(self) {
            let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut admin)
            .await
            .unwrap();
            let _ = admin.close().await;
        }
    }
}
