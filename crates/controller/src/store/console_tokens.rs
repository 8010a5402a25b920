//! Console tokens: single-use links to a server's graphical console, stored
//! by their SHA-256 (never the token itself), so that a link issued by one
//! controller is redeemed, once, at any controller on the same database.

use super::rows::{parse, time};
use super::{Store, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use nubis_api::{ProjectId, ServerId, UserId};

/// What a console token lets its holder do: open this server's screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleGrant {
    pub server: ServerId,
    pub user: UserId,
    pub project: ProjectId,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Records a token (by its hash) for `grant`, forgetting expired ones on
    /// the way. Refuses when `max_outstanding` unexpired tokens exist.
    pub async fn issue_console_token(
        &self,
        hash: &str,
        grant: &ConsoleGrant,
        now: DateTime<Utc>,
        max_outstanding: u64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM console_tokens WHERE expires_at <= $1")
            .bind(now.timestamp_millis())
            .execute(&mut *tx)
            .await?;
        let outstanding: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM console_tokens")
            .fetch_one(&mut *tx)
            .await?;
        if u64::try_from(outstanding).unwrap_or(0) >= max_outstanding {
            return Err(StoreError::Conflict(
                "too many console tokens outstanding".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO console_tokens (hash, server_id, user_id, project_id, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash)
        .bind(grant.server.to_string())
        .bind(grant.user.to_string())
        .bind(grant.project.to_string())
        .bind(grant.expires_at.timestamp_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Consumes a token: its grant if it is known and unexpired. Either way
    /// the row is gone afterwards. One statement deletes and returns it, so
    /// of two controllers redeeming the same token at once only one gets it.
    pub async fn redeem_console_token(
        &self,
        hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ConsoleGrant>> {
        let row = sqlx::query(
            "DELETE FROM console_tokens WHERE hash = $1 \
             RETURNING server_id, user_id, project_id, expires_at",
        )
        .bind(hash)
        .fetch_optional(self.writer())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let grant = ConsoleGrant {
            server: parse(&row, "server_id")?,
            user: parse(&row, "user_id")?,
            project: parse(&row, "project_id")?,
            expires_at: time(&row, "expires_at")?,
        };
        Ok((grant.expires_at > now).then_some(grant))
    }

    /// Forgets every console token of a server (it stopped or is being deleted).
    pub async fn revoke_console_tokens(&self, server: ServerId) -> StoreResult<()> {
        sqlx::query("DELETE FROM console_tokens WHERE server_id = $1")
            .bind(server.to_string())
            .execute(self.writer())
            .await?;
        Ok(())
    }
}
