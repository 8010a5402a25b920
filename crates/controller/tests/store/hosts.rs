//! Hosts.

use super::*;

pub(crate) async fn hosts_register_idempotently_by_name(db: &Db) {
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

    // A heartbeat is written in a batch, later, and never moves time back.
    let before = db.host(b.id).await.unwrap().last_seen;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let long = std::time::Duration::from_secs(3600);
    let short = std::time::Duration::from_millis(1);
    db.saw_host(b.id, short).await.unwrap();
    let first = db.host(b.id).await.unwrap().last_seen;
    assert!(
        first > before,
        "a host that may look down is written at once"
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // Then in a batch (written by a task a moment later, or here).
    db.saw_host(b.id, long).await.unwrap();
    db.flush_seen_hosts().await.unwrap();
    assert!(db.host(b.id).await.unwrap().last_seen > first);
    assert_not_found(
        db.saw_host(HostId::new(), long).await,
        "a heartbeat of an unknown host",
    );
}

pub(crate) async fn host_loads_sum_placed_servers(db: &Db) {
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
