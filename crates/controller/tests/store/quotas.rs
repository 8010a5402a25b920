//! Project quotas.
//!
//! In their own module (`quotas::sqlite::NAME`, `quotas::postgres::NAME`).

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
    let cidr: nubis_api::networks::Cidr = format!("10.65.{third_octet}.0/24").parse().unwrap();
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
            images: 1,
            ..QuotaLimits::default_zero()
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
