//! Console tokens in the store: any controller redeems a link, once.

use super::*;
use nubis_controller::store::ConsoleGrant;

/// A grant for new ids; its time in whole milliseconds, as stored.
fn grant(expires_at: chrono::DateTime<Utc>) -> ConsoleGrant {
    ConsoleGrant {
        server: ServerId::new(),
        user: UserId::new(),
        project: ProjectId::new(),
        expires_at: chrono::DateTime::from_timestamp_millis(expires_at.timestamp_millis())
            .expect("a time"),
    }
}

pub(crate) async fn console_tokens_work_once_at_any_store(db: &Db) {
    let now = Utc::now();
    let g = grant(now + Duration::seconds(60));
    db.issue_console_token("hash-a", &g, now, 10).await.unwrap();
    // Another controller: its own store on the same database.
    let other = Store::connect(&db.url).await.expect("second store");
    assert_eq!(
        other.redeem_console_token("hash-a", now).await.unwrap(),
        Some(g),
        "redeemed at the other controller"
    );
    assert_eq!(db.redeem_console_token("hash-a", now).await.unwrap(), None);
    assert_eq!(
        other.redeem_console_token("hash-a", now).await.unwrap(),
        None
    );
    assert_eq!(db.redeem_console_token("unknown", now).await.unwrap(), None);
}

pub(crate) async fn console_tokens_expire_and_are_revoked(db: &Db) {
    let now = Utc::now();
    let short = grant(now + Duration::seconds(1));
    db.issue_console_token("short", &short, now, 10)
        .await
        .unwrap();
    assert_eq!(
        db.redeem_console_token("short", now + Duration::seconds(2))
            .await
            .unwrap(),
        None,
        "expired"
    );
    let g = grant(now + Duration::seconds(60));
    let kept = grant(now + Duration::seconds(60));
    db.issue_console_token("revoked", &g, now, 10)
        .await
        .unwrap();
    db.issue_console_token("kept", &kept, now, 10)
        .await
        .unwrap();
    db.revoke_console_tokens(g.server).await.unwrap();
    assert_eq!(db.redeem_console_token("revoked", now).await.unwrap(), None);
    assert_eq!(
        db.redeem_console_token("kept", now).await.unwrap(),
        Some(kept)
    );
    // The outstanding limit counts unexpired tokens only.
    db.issue_console_token("one", &grant(now + Duration::seconds(1)), now, 1)
        .await
        .unwrap();
    assert!(matches!(
        db.issue_console_token("two", &grant(now + Duration::seconds(60)), now, 1)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let later = now + Duration::seconds(5);
    db.issue_console_token("three", &grant(later + Duration::seconds(60)), later, 1)
        .await
        .expect("the expired one no longer counts");
    assert_eq!(
        raw_count(db, "SELECT COUNT(*) FROM console_tokens").await,
        1
    );
}

pub(crate) async fn concurrent_redemptions_of_a_console_token_succeed_once(db: &Db) {
    let now = Utc::now();
    let other = Store::connect(&db.url).await.expect("second store");
    for round in 0..10 {
        let hash = format!("race-{round}");
        db.issue_console_token(&hash, &grant(now + Duration::seconds(60)), now, 100)
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            db.redeem_console_token(&hash, now),
            other.redeem_console_token(&hash, now)
        );
        let wins = [a.unwrap(), b.unwrap()]
            .iter()
            .filter(|g| g.is_some())
            .count();
        assert_eq!(wins, 1, "round {round}");
    }
}
