//! Host credentials: join tokens (single-use, expiring, kept only as their
//! SHA-256) and the fingerprint of each host's current certificate.

use super::{Store, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use nubis_api::HostId;

impl Store {
    /// Records a join token by its hash, valid until `expires_at`; forgets
    /// tokens that expired a day ago or more on the way.
    pub async fn add_join_token(
        &self,
        hash: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query("DELETE FROM join_tokens WHERE expires_at <= $1")
            .bind((now - chrono::Duration::days(1)).timestamp_millis())
            .execute(self.writer())
            .await?;
        sqlx::query("INSERT INTO join_tokens (hash, expires_at) VALUES ($1, $2)")
            .bind(hash)
            .bind(expires_at.timestamp_millis())
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Spends a join token: true if it was known, unused and unexpired (it is
    /// used from now on). One guarded statement, so of two agents (or two
    /// controllers) presenting the same token at once only one gets it.
    pub async fn use_join_token(&self, hash: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE join_tokens SET used_at = $2 \
             WHERE hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(hash)
        .bind(now.timestamp_millis())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Binds a host to the certificate with this fingerprint: earlier ones
    /// stop being accepted.
    pub async fn set_host_certificate(&self, host: HostId, fingerprint: &str) -> StoreResult<()> {
        let done = sqlx::query("UPDATE hosts SET cert_fingerprint = $2 WHERE id = $1")
            .bind(host.to_string())
            .bind(fingerprint)
            .execute(self.writer())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The fingerprint of the host's current certificate (`None` before it
    /// joined; `NotFound` for an unknown host).
    pub async fn host_certificate(&self, host: HostId) -> StoreResult<Option<String>> {
        let row: Option<Option<String>> =
            sqlx::query_scalar("SELECT cert_fingerprint FROM hosts WHERE id = $1")
                .bind(host.to_string())
                .fetch_optional(self.pool())
                .await?;
        row.ok_or(StoreError::NotFound)
    }

    /// The id of the host called `name`, if any.
    pub async fn host_id_by_name(&self, name: &str) -> StoreResult<Option<HostId>> {
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM hosts WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        id.map(|id| {
            id.parse()
                .map_err(|_| StoreError::Corrupt(format!("bad host id {id}")))
        })
        .transpose()
    }
}
