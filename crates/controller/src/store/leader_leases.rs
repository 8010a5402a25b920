//! Leader leases: which controller runs a cluster-wide periodic job (such as
//! the terms keeper), so that with several controllers on one database the
//! job runs in one of them at a time. A holder renews its lease on every
//! round; one that dies loses it when it expires, and another takes over.
//!
//! Times here are the system clock's, not the rental clock's (which tests
//! shift): a lease is about controllers being alive, not about billing.

use super::{now_ms, Store, StoreResult};
use std::time::Duration;

impl Store {
    /// Takes or renews the lease `name` for `holder` until `ttl` from now,
    /// if it is free, expired, or already `holder`'s. Whether `holder`
    /// holds it afterwards. Safe under concurrency: the upsert's condition is
    /// evaluated on the row as committed (PostgreSQL re-checks it under the
    /// row lock; SQLite has one writer).
    pub async fn hold_leader_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let now = now_ms();
        let expires_at = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let done = sqlx::query(
            "INSERT INTO leader_leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at \
             WHERE leader_leases.holder = excluded.holder OR leader_leases.expires_at <= $4",
        )
        .bind(name)
        .bind(holder)
        .bind(expires_at)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease up (on shutdown), so another controller takes over at once.
    pub async fn release_leader_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM leader_leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// The current holder of a lease and its expiry (Unix ms), if any.
    pub async fn leader_lease(&self, name: &str) -> StoreResult<Option<(String, i64)>> {
        Ok(
            sqlx::query_as("SELECT holder, expires_at FROM leader_leases WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?,
        )
    }
}
