//! Leader leases: one holder at a time; a holder that stops renewing loses it.

use super::*;

pub(crate) async fn leader_lease_has_one_holder_until_it_expires(db: &Db) {
    let ttl = std::time::Duration::from_millis(300);
    let other = Store::connect(&db.url).await.expect("second store");
    assert!(db.hold_leader_lease("job", "a", ttl).await.unwrap());
    assert!(!other.hold_leader_lease("job", "b", ttl).await.unwrap());
    assert!(
        db.hold_leader_lease("job", "a", ttl).await.unwrap(),
        "renewed"
    );
    // Another job is another lease.
    assert!(other
        .hold_leader_lease("other-job", "b", ttl)
        .await
        .unwrap());
    // "a" stops renewing (it died): "b" takes over once the lease expired.
    tokio::time::sleep(ttl * 2).await;
    assert!(other.hold_leader_lease("job", "b", ttl).await.unwrap());
    assert!(!db.hold_leader_lease("job", "a", ttl).await.unwrap());
    assert_eq!(
        db.leader_lease("job")
            .await
            .unwrap()
            .map(|(h, _)| h)
            .as_deref(),
        Some("b")
    );
    // Released: free at once.
    other.release_leader_lease("job", "b").await.unwrap();
    assert!(db.hold_leader_lease("job", "a", ttl).await.unwrap());
    // Many contenders at once: exactly one wins.
    let long = std::time::Duration::from_secs(60);
    let contenders: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 {
                db.store.clone()
            } else {
                other.clone()
            };
            async move {
                store
                    .hold_leader_lease("race", &format!("c{i}"), long)
                    .await
                    .unwrap()
            }
        })
        .collect();
    let won = futures_util::future::join_all(contenders).await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}
