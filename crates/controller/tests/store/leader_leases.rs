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

/// A change announced by one store reaches another store's listener, which
/// tells it from its own announcements (PostgreSQL); SQLite has no
/// listener and announcing is a no-op there.
pub(crate) async fn changes_are_announced_to_other_stores(db: &Db) {
    let other = Store::connect(&db.url).await.expect("second store");
    let listener = other.change_listener().await.expect("listener");
    let Some(mut listener) = listener else {
        assert_eq!(db.backend(), Backend::Sqlite);
        db.announce_change().await.expect("a no-op");
        return;
    };
    db.announce_change().await.expect("announce");
    let note = tokio::time::timeout(std::time::Duration::from_secs(30), listener.recv())
        .await
        .expect("a notification")
        .expect("listener works");
    assert_eq!(note.channel(), nubis_controller::store::CHANGES_CHANNEL);
    assert!(
        !other.is_own_announcement(note.payload()),
        "from the first store"
    );
    assert!(db.is_own_announcement(note.payload()));
    // And the other way round: its own comes back to it, and is recognised.
    other.announce_change().await.expect("announce");
    let note = tokio::time::timeout(std::time::Duration::from_secs(30), listener.recv())
        .await
        .expect("a notification")
        .expect("listener works");
    assert!(other.is_own_announcement(note.payload()));
}
