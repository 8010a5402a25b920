//! Moves of servers between hosts: the `migrations` table, each server's
//! placement generation, and what hosts report of the instances they hold
//! that are no longer theirs (leftovers, fenced). The rules deciding what
//! moves where are in `crate::app::moves`; this module only stores.

use super::rows::{big, json_or_default, parse, time, time_opt, to_json};
use super::{events, OrConflict, Store, StoreError, StoreResult};
use crate::scheduler::{Demand, Overcommit};
use chrono::{DateTime, Utc};
use nubis_api::events::EventKind;
use nubis_api::migrations::{Migration, MigrationKind, MigrationState};
use nubis_api::{HostId, MigrationId, ServerId};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::{HashMap, HashSet};

/// How the target host gets the server's disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArrivalKind {
    /// Pulled from the source agent.
    Copy,
    /// Already there: a store shared with the source.
    Shared,
    /// QEMU live migration (NBD + drive-mirror).
    Live,
    /// A fresh disk from the image: the data is lost.
    Rebuild,
}

impl ArrivalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Copy => "copy",
            Self::Shared => "shared",
            Self::Live => "live",
            Self::Rebuild => "rebuild",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Copy, Self::Shared, Self::Live, Self::Rebuild]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A migration row with what the agent protocol needs beside the API view.
#[derive(Clone, Debug)]
pub struct MoveRecord {
    pub migration: Migration,
    pub arrival: ArrivalKind,
    /// The server's placement generation on the target.
    pub generation: u64,
}

/// A move to start.
pub struct NewMove {
    pub server: ServerId,
    pub kind: MigrationKind,
    pub arrival: ArrivalKind,
    pub source: HostId,
    pub target: HostId,
    /// The events recorded with it (`migrating`, or `evacuated` and
    /// `rebuilt`) and their words.
    pub events: Vec<(EventKind, String)>,
    /// What the server needs: claimed on the target in the move's
    /// transaction, under the operator's overcommit ratios.
    pub demand: Demand,
    pub overcommit: Overcommit,
}

/// What a host's last report said about instances no longer its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostLeftovers {
    pub leftovers: Vec<ServerId>,
    pub fenced: Vec<ServerId>,
}

/// Where a server is, as the release rules need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub host: Option<HostId>,
    pub deleting: bool,
    pub generation: u64,
}

fn move_from_row(row: &AnyRow) -> StoreResult<MoveRecord> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let arrival: String = row.try_get("arrival")?;
    let corrupt = |what: &str, v: &str| StoreError::Corrupt(format!("migration {what} '{v}'"));
    let downtime: Option<i64> = row.try_get("downtime_ms")?;
    let generation: i64 = row.try_get("generation")?;
    Ok(MoveRecord {
        migration: Migration {
            id: parse(row, "id")?,
            server: parse(row, "server_id")?,
            kind: MigrationKind::parse(&kind).ok_or_else(|| corrupt("kind", &kind))?,
            source_host: parse(row, "source_host")?,
            target_host: parse(row, "target_host")?,
            state: MigrationState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
            started_at: time(row, "started_at")?,
            finished_at: time_opt(row, "finished_at")?,
            downtime_ms: downtime.map(|d| d.max(0) as u64),
            error: row.try_get("error")?,
        },
        arrival: ArrivalKind::parse(&arrival).ok_or_else(|| corrupt("arrival", &arrival))?,
        generation: generation.max(0) as u64,
    })
}

/// The leftovers and fenced servers `host` last reported.
async fn stored_leftovers<'e, E>(conn: E, host: HostId) -> StoreResult<HostLeftovers>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query("SELECT leftovers, fenced FROM hosts WHERE id = $1")
        .bind(host.to_string())
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(HostLeftovers {
        leftovers: json_or_default(&row, "leftovers")?,
        fenced: json_or_default(&row, "fenced")?,
    })
}

impl Store {
    /// Records the shared instance store a host declared (None: local disks).
    pub async fn set_host_shared_store(
        &self,
        host: HostId,
        store: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE hosts SET shared_store = $2 WHERE id = $1")
            .bind(host.to_string())
            .bind(store)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Every host's shared store id (absent: local disks only).
    pub async fn host_shared_stores(&self) -> StoreResult<HashMap<HostId, Option<String>>> {
        let rows = sqlx::query("SELECT id, shared_store FROM hosts")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((parse(r, "id")?, r.try_get("shared_store")?)))
            .collect()
    }

    /// Stores what a host reported of its leftovers; records a `fenced`
    /// event for each instance newly reported fenced. Whether anything
    /// changed (then the host's desired state may release more).
    pub async fn record_host_leftovers(
        &self,
        host: HostId,
        now: DateTime<Utc>,
        report: &HostLeftovers,
        host_name: &str,
    ) -> StoreResult<bool> {
        let mut after = report.clone();
        after.leftovers.sort();
        after.fenced.sort();
        // Nearly every report repeats the last: read it, write nothing.
        if stored_leftovers(self.pool(), host).await? == after {
            return Ok(false);
        }
        let mut tx = self.begin_write().await?;
        let before = stored_leftovers(&mut *tx, host).await?;
        if before == after {
            return Ok(false);
        }
        let known: HashSet<ServerId> = before.fenced.iter().copied().collect();
        for id in after.fenced.iter().filter(|id| !known.contains(id)) {
            let message = format!(
                "host {host_name} came back with this server's QEMU running although the \
                 server is placed elsewhere; the host stopped it (fencing)"
            );
            events::record(&mut tx, *id, now, EventKind::Fenced, &message).await?;
        }
        sqlx::query("UPDATE hosts SET leftovers = $2, fenced = $3 WHERE id = $1")
            .bind(host.to_string())
            .bind(to_json(&after.leftovers))
            .bind(to_json(&after.fenced))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The leftovers a host last reported.
    pub async fn host_leftovers(&self, host: HostId) -> StoreResult<Vec<ServerId>> {
        let row = sqlx::query("SELECT leftovers FROM hosts WHERE id = $1")
            .bind(host.to_string())
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(row) => json_or_default(&row, "leftovers"),
            None => Ok(Vec::new()),
        }
    }

    /// Where each of `ids` is placed; a server that no longer exists is absent.
    pub async fn placements(&self, ids: &[ServerId]) -> StoreResult<HashMap<ServerId, Placement>> {
        let mut out = HashMap::new();
        for id in ids {
            let row = sqlx::query(
                "SELECT host_id, deleting, placement_generation FROM servers WHERE id = $1",
            )
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
            if let Some(row) = row {
                let host: Option<String> = row.try_get("host_id")?;
                let deleting: i64 = row.try_get("deleting")?;
                let generation: i64 = row.try_get("placement_generation")?;
                out.insert(
                    *id,
                    Placement {
                        host: host.and_then(|h| h.parse().ok()),
                        deleting: deleting != 0,
                        generation: generation.max(0) as u64,
                    },
                );
            }
        }
        Ok(out)
    }

    /// The placement generation of every server on a host.
    pub async fn host_generations(&self, host: HostId) -> StoreResult<HashMap<ServerId, u64>> {
        let rows = sqlx::query("SELECT id, placement_generation FROM servers WHERE host_id = $1")
            .bind(host.to_string())
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let g: i64 = r.try_get("placement_generation")?;
                Ok((parse(r, "id")?, g.max(0) as u64))
            })
            .collect()
    }

    /// Starts a move in one transaction: the claim on the target (as a
    /// create's: see `store::placement`), the migration row, the server
    /// placed on the target with its generation raised, and the event.
    /// `NoValidHost` when the target cannot take the server (full, e.g.
    /// after concurrent moves or creates, or disabled); `Conflict` when the
    /// server is already moving or is no longer on the source (another move
    /// or a delete won the race).
    pub async fn start_move(&self, new: &NewMove, now: DateTime<Utc>) -> StoreResult<MoveRecord> {
        let mut tx = self.begin_write().await?;
        super::placement::claim_on(
            &mut tx,
            self.backend(),
            new.target,
            new.demand,
            &new.overcommit,
        )
        .await?;
        let placed = sqlx::query(
            "UPDATE servers SET host_id = $3, placement_generation = placement_generation + 1 \
             WHERE id = $1 AND host_id = $2 AND deleting = 0",
        )
        .bind(new.server.to_string())
        .bind(new.source.to_string())
        .bind(new.target.to_string())
        .execute(&mut *tx)
        .await?;
        if placed.rows_affected() == 0 {
            return Err(StoreError::Conflict(
                "the server is no longer on its host (moved or being deleted)".into(),
            ));
        }
        let generation: i64 = sqlx::query("SELECT placement_generation FROM servers WHERE id = $1")
            .bind(new.server.to_string())
            .fetch_one(&mut *tx)
            .await?
            .try_get("placement_generation")?;
        // Time-ordered, so moves started in the same millisecond list in order.
        let id = MigrationId(uuid::Uuid::now_v7());
        let inserted = sqlx::query(
            "INSERT INTO migrations (id, server_id, kind, arrival, source_host, target_host, \
             generation, state, started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8)",
        )
        .bind(id.to_string())
        .bind(new.server.to_string())
        .bind(new.kind.as_str())
        .bind(new.arrival.as_str())
        .bind(new.source.to_string())
        .bind(new.target.to_string())
        .bind(generation)
        .bind(now.timestamp_millis())
        .execute(&mut *tx)
        .await;
        inserted.or_conflict(|| "the server is already moving".into())?;
        for (kind, message) in &new.events {
            events::record(&mut tx, new.server, now, *kind, message).await?;
        }
        tx.commit().await?;
        self.migration(id).await
    }

    /// One migration.
    pub async fn migration(&self, id: MigrationId) -> StoreResult<MoveRecord> {
        let row = sqlx::query("SELECT * FROM migrations WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        move_from_row(&super::found(row)?)
    }

    /// A server's migrations, newest first.
    pub async fn server_migrations(&self, server: ServerId) -> StoreResult<Vec<Migration>> {
        let rows = sqlx::query(
            "SELECT * FROM migrations WHERE server_id = $1 ORDER BY started_at DESC, id DESC",
        )
        .bind(server.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| move_from_row(r).map(|m| m.migration))
            .collect()
    }

    /// The moves under way that a host is the source or the target of.
    pub async fn running_moves_of_host(&self, host: HostId) -> StoreResult<Vec<MoveRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM migrations WHERE state = 'running' \
             AND (source_host = $1 OR target_host = $1)",
        )
        .bind(host.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(move_from_row).collect()
    }

    /// Every move under way (for the timeout sweep).
    pub async fn running_moves(&self) -> StoreResult<Vec<MoveRecord>> {
        let rows = sqlx::query("SELECT * FROM migrations WHERE state = 'running'")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(move_from_row).collect()
    }

    /// Ends a running move as done (the target has the server); records
    /// `event`. False if it was no longer running.
    pub async fn finish_move(
        &self,
        id: MigrationId,
        now: DateTime<Utc>,
        downtime_ms: Option<u64>,
        event: (EventKind, &str),
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let row =
            sqlx::query("SELECT server_id FROM migrations WHERE id = $1 AND state = 'running'")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let server: ServerId = parse(&row, "server_id")?;
        sqlx::query(
            "UPDATE migrations SET state = 'done', finished_at = $2, downtime_ms = $3 \
             WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(now.timestamp_millis())
        .bind(downtime_ms.map(big))
        .execute(&mut *tx)
        .await?;
        events::record(&mut tx, server, now, event.0, event.1).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Ends a running move as failed: the server goes back to the source
    /// (generation raised again, so the target's copy is a leftover) unless
    /// `stay` (an evacuation: the source is down). False if it was no longer
    /// running.
    pub async fn fail_move(
        &self,
        id: MigrationId,
        now: DateTime<Utc>,
        error: &str,
        stay: bool,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT * FROM migrations WHERE id = $1 AND state = 'running'")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let record = move_from_row(&row)?;
        sqlx::query(
            "UPDATE migrations SET state = 'failed', finished_at = $2, error = $3 WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(now.timestamp_millis())
        .bind(error)
        .execute(&mut *tx)
        .await?;
        if !stay {
            sqlx::query(
                "UPDATE servers SET host_id = $2, placement_generation = placement_generation + 1 \
                 WHERE id = $1 AND host_id = $3",
            )
            .bind(record.migration.server.to_string())
            .bind(record.migration.source_host.to_string())
            .bind(record.migration.target_host.to_string())
            .execute(&mut *tx)
            .await?;
        }
        let message = if stay {
            format!("moving to another host failed: {error}")
        } else {
            format!("moving to another host failed, the server stays on its host: {error}")
        };
        events::record(
            &mut tx,
            record.migration.server,
            now,
            EventKind::MigrationFailed,
            &message,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
