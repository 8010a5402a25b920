//! Schema migrations.

use super::*;

pub(crate) async fn migrations_are_idempotent(db: &Db) {
    let alice = user(db, "alice").await;
    // Opening the same database again runs the migrations again: a no-op.
    for _ in 0..2 {
        let again = Store::connect(&db.url).await.expect("reopen the store");
        assert_eq!(again.backend(), db.backend());
        assert_eq!(
            again.user(alice.id).await.expect("user survives").name,
            "alice"
        );
        again.ensure_default_flavors().await.expect("schema usable");
    }
    assert_eq!(
        // (Versions may have gaps: numbers are handed out to branches.)
        raw_count(db, "SELECT COUNT(*) FROM _sqlx_migrations").await,
        nubis_controller::store::migrations::files(db.backend()).len() as i64,
        "every version is recorded once"
    );
    assert_eq!(
        raw_count(db, "SELECT COUNT(*) FROM _sqlx_migrations WHERE success").await,
        nubis_controller::store::migrations::files(db.backend()).len() as i64,
        "every embedded migration is applied"
    );
    assert_eq!(db.list_flavors().await.unwrap().len(), 4);
}
