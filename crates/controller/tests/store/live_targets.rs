//! Live moves' target endpoints: recorded once, changed, read back, forgotten.

use super::*;
use nubis_api::agent::LiveTarget;
use nubis_api::MigrationId;

pub(crate) async fn live_targets_are_recorded_and_forgotten(db: &Db) {
    let (one, two) = (MigrationId::new(), MigrationId::new());
    let target = LiveTarget {
        migration_uri: "tcp:172.31.0.12:40002".into(),
        nbd_uri: "nbd://172.31.0.12:40001/disk0".into(),
    };
    assert!(db.live_targets(&[one, two]).await.unwrap().is_empty());
    assert!(db.record_live_target(one, &target).await.unwrap(), "new");
    assert!(
        !db.record_live_target(one, &target).await.unwrap(),
        "the same again changes nothing"
    );
    let moved = LiveTarget {
        migration_uri: "tcp:172.31.0.12:40005".into(),
        ..target.clone()
    };
    assert!(db.record_live_target(one, &moved).await.unwrap(), "changed");
    let found = db.live_targets(&[one, two]).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[&one], moved);
    db.forget_live_target(one).await.unwrap();
    assert!(db.live_targets(&[one]).await.unwrap().is_empty());
}
