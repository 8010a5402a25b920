//! Server events: why a server was throttled, suspended, stopped or deleted.
//! Rows outlive their server, so a deleted server's history stays readable.

use super::rows::{parse, time};
use super::{Store, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use nubis_api::events::{EventKind, ServerEvent};
use nubis_api::{ProjectId, ServerId};
use sqlx::any::AnyRow;
use sqlx::Row;

/// Records an event inside a write transaction.
pub(crate) async fn record(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    server: ServerId,
    now: DateTime<Utc>,
    kind: EventKind,
    message: &str,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO server_events (id, server_id, server_name, project_id, kind, message, created_at) \
         SELECT $1, id, name, project_id, $2, $3, $4 FROM servers WHERE id = $5",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(kind.as_str())
    .bind(message)
    .bind(now.timestamp_millis())
    .bind(server.to_string())
    .execute(&mut **tx)
    .await?;
    tracing::info!(server = %server, kind = kind.as_str(), message, "server event");
    Ok(())
}

fn event_from_row(row: &AnyRow) -> StoreResult<ServerEvent> {
    let kind: String = row.try_get("kind")?;
    Ok(ServerEvent {
        server: parse(row, "server_id")?,
        server_name: row.try_get("server_name")?,
        kind: EventKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown event kind '{kind}'")))?,
        message: row.try_get("message")?,
        time: time(row, "created_at")?,
    })
}

impl Store {
    /// Events of a project, newest last; only one server's when `server` is given.
    pub async fn events(
        &self,
        project: ProjectId,
        server: Option<ServerId>,
    ) -> StoreResult<Vec<ServerEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM server_events WHERE project_id = $1 \
             AND ($2 = '' OR server_id = $2) ORDER BY created_at, id",
        )
        .bind(project.to_string())
        .bind(server.map(|s| s.to_string()).unwrap_or_default())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(event_from_row).collect()
    }
}
