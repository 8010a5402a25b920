//! Users and tokens.

use super::*;

pub(crate) async fn only_users_made_admins_are_admins(db: &Db) {
    let first = db.create_user("root", "h0", false).await.unwrap();
    let second = db.create_user("bob", "h1", false).await.unwrap();
    let third = db.create_user("carol", "h2", true).await.unwrap();
    assert!(!first.admin, "being first makes no admin");
    assert!(!second.admin);
    assert!(third.admin, "an explicit admin is one");

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

    let record = db.user_record(third.id).await.unwrap();
    assert_eq!(record.user.name, "carol");
    assert_eq!(record.password_hash, "h2");
    assert_not_found(
        db.user_record(UserId::new()).await.map(|r| r.user),
        "unknown user id, with hash",
    );
    assert_not_found(db.user(UserId::new()).await, "unknown user id");
    assert_not_found(
        db.user_by_name("nobody").await.map(|r| r.user),
        "unknown user name",
    );
}

pub(crate) async fn duplicate_user_name_conflicts(db: &Db) {
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

pub(crate) async fn tokens_expire_and_are_revoked(db: &Db) {
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
    // A token with its times (Keystone's validation shows them).
    let t = db.token("alice-1").await.unwrap();
    assert_eq!(t.user.id, alice.id);
    assert_eq!(t.expires_at.timestamp_millis(), now + hour);
    assert!((t.issued_at.timestamp_millis() - now).abs() < hour);
    assert_not_found(
        db.token("bob-expired").await.map(|t| t.user),
        "expired token",
    );
    assert_not_found(
        db.token("no-such-token").await.map(|t| t.user),
        "unknown token",
    );

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
