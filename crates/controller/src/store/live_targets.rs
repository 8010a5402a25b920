//! Where the targets of live moves wait for their guests (see
//! `crate::live_migration`): reported by the target agent, handed to the
//! source agent in its desired state.

use super::{Store, StoreResult};
use nubis_api::agent::LiveTarget;
use nubis_api::MigrationId;
use sqlx::Row;
use std::collections::HashMap;

impl Store {
    /// Records the endpoints the target of live move `id` reported. Whether
    /// they are new (then the source's desired state changed).
    pub async fn record_live_target(
        &self,
        id: MigrationId,
        target: &LiveTarget,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let row =
            sqlx::query("SELECT migration_uri, nbd_uri FROM live_targets WHERE migration_id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let same = row.as_ref().is_some_and(|r| {
            r.try_get::<String, _>("migration_uri").ok().as_deref()
                == Some(target.migration_uri.as_str())
                && r.try_get::<String, _>("nbd_uri").ok().as_deref()
                    == Some(target.nbd_uri.as_str())
        });
        if same {
            return Ok(false);
        }
        if row.is_some() {
            sqlx::query(
                "UPDATE live_targets SET migration_uri = $2, nbd_uri = $3 WHERE migration_id = $1",
            )
        } else {
            sqlx::query(
                "INSERT INTO live_targets (migration_id, migration_uri, nbd_uri) VALUES ($1, $2, $3)",
            )
        }
        .bind(id.to_string())
        .bind(&target.migration_uri)
        .bind(&target.nbd_uri)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The endpoints recorded for the live moves `ids` (those with none yet
    /// are absent).
    pub async fn live_targets(
        &self,
        ids: &[MigrationId],
    ) -> StoreResult<HashMap<MigrationId, LiveTarget>> {
        let mut out = HashMap::new();
        // A host has a handful of moves under way at most: one query each.
        for id in ids {
            let row = sqlx::query(
                "SELECT migration_uri, nbd_uri FROM live_targets WHERE migration_id = $1",
            )
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
            if let Some(row) = row {
                out.insert(
                    *id,
                    LiveTarget {
                        migration_uri: row.try_get("migration_uri")?,
                        nbd_uri: row.try_get("nbd_uri")?,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Forgets the endpoints of a live move that ended.
    pub async fn forget_live_target(&self, id: MigrationId) -> StoreResult<()> {
        sqlx::query("DELETE FROM live_targets WHERE migration_id = $1")
            .bind(id.to_string())
            .execute(self.writer())
            .await?;
        Ok(())
    }
}
