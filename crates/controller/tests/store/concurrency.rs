//! Concurrency: read-then-write transactions must be serialized.

use super::*;

/// Opens every connection of the pool, so the requests below really race.
pub(crate) async fn warm_pool(db: &Db) {
    let reads = (0..16).map(|_| db.list_flavors());
    for result in futures_util::future::join_all(reads).await {
        result.expect("warm-up read");
    }
}

/// Open registration: many simultaneous first users all get their
/// accounts, and none of them becomes an admin.
pub(crate) async fn concurrent_first_registrations_all_succeed_without_admins(db: &Db) {
    warm_pool(db).await;
    let names: Vec<String> = (0..16).map(|i| format!("user{i}")).collect();
    let results =
        futures_util::future::join_all(names.iter().map(|n| db.create_user(n, "hash", false)))
            .await;
    for (name, result) in names.iter().zip(results) {
        match result {
            Ok(user) => assert!(!user.admin, "{name} became an admin by registering"),
            Err(e) => panic!("registering {name} beside others failed: {e}"),
        }
    }
    // Positive control: the names were all taken.
    for name in &names {
        db.user_by_name(name).await.expect("registered");
    }
}

/// An agent restarting while its previous registration is still in flight.
pub(crate) async fn concurrent_host_registrations_are_idempotent(db: &Db) {
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
pub(crate) async fn host_reports_beside_concurrent_writes(db: &Db) {
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
