//! Metered traffic. Agents report the raw byte counters of every NIC; the
//! store keeps the last values per counter source and adds only the
//! difference to hourly totals, in one transaction, so a repeated or
//! replayed report counts nothing twice and an agent restart loses nothing.
//! Each server's total in the current period (calendar month, UTC) is then
//! held against its traffic quota.

use super::events;
use super::rows::{count, parse};
use super::{found, Store, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use nubis_api::agent::TrafficCounter;
use nubis_api::events::EventKind;
use nubis_api::traffic::{
    Period, ProjectUsage, QuotaPolicy, ServerTotal, ServerUsage, TrafficState, UsagePoint,
};
use nubis_api::{HostId, ProjectId, ServerId};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};

const HOUR_MS: i64 = 3_600_000;

fn hour_of(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis().div_euclid(HOUR_MS) * HOUR_MS
}

fn saturating(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The last stored (inbound, outbound) values of a counter source.
async fn last_counter<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    c: &TrafficCounter,
) -> StoreResult<Option<(u64, u64)>> {
    let row = sqlx::query(
        "SELECT inbound_bytes, outbound_bytes FROM traffic_counters \
         WHERE server_id = $1 AND port_id = $2 AND source = $3",
    )
    .bind(c.server.to_string())
    .bind(c.port.to_string())
    .bind(&c.source)
    .fetch_optional(executor)
    .await?;
    row.map(|row| {
        Ok((
            count(&row, "inbound_bytes")?,
            count(&row, "outbound_bytes")?,
        ))
    })
    .transpose()
}

/// Whose traffic series to read.
#[derive(Clone, Copy)]
enum Series {
    Server,
    Project,
}

/// A server's traffic state changed (the host must enforce the new one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub server: ServerId,
    pub state: TrafficState,
}

impl Store {
    /// Adds the growth of `counters` since their last report to the hourly
    /// totals at `now`, then re-checks the quotas of the servers that sent or
    /// received anything. Only servers placed on `host` are counted: a host
    /// cannot bill another host's servers. Returns the servers whose traffic
    /// state changed.
    pub async fn record_traffic(
        &self,
        host: HostId,
        counters: &[TrafficCounter],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StateChange>> {
        // Most reports repeat the last values (idle guests, heartbeats):
        // those need no write transaction at all.
        let mut moved = Vec::new();
        for c in counters {
            if last_counter(self.pool(), c).await? != Some((c.inbound_bytes, c.outbound_bytes)) {
                moved.push(c);
            }
        }
        if moved.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let mut grew = BTreeSet::new();
        for c in moved {
            // Read again under the write lock: this is what counts.
            let last = last_counter(&mut *tx, c).await?;
            if last == Some((c.inbound_bytes, c.outbound_bytes)) {
                continue;
            }
            // A new source is a new device: it counted from zero.
            let (last_in, last_out) = last.unwrap_or((0, 0));
            // A counter that went backwards was reset under the same name:
            // everything it shows now is new.
            let delta = |now: u64, last: u64| if now >= last { now - last } else { now };
            let (d_in, d_out) = (
                delta(c.inbound_bytes, last_in),
                delta(c.outbound_bytes, last_out),
            );
            sqlx::query(
                "INSERT INTO traffic_counters (server_id, port_id, source, inbound_bytes, \
                 outbound_bytes, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (server_id, port_id, source) DO UPDATE SET \
                 inbound_bytes = excluded.inbound_bytes, outbound_bytes = excluded.outbound_bytes, \
                 updated_at = excluded.updated_at",
            )
            .bind(c.server.to_string())
            .bind(c.port.to_string())
            .bind(&c.source)
            .bind(saturating(c.inbound_bytes))
            .bind(saturating(c.outbound_bytes))
            .bind(now.timestamp_millis())
            .execute(&mut *tx)
            .await?;
            if d_in == 0 && d_out == 0 {
                continue;
            }
            let added = sqlx::query(
                "INSERT INTO traffic_hourly (server_id, project_id, hour, inbound_bytes, outbound_bytes) \
                 SELECT id, project_id, $2, $3, $4 FROM servers WHERE id = $1 AND host_id = $5 \
                 ON CONFLICT (server_id, hour) DO UPDATE SET \
                 inbound_bytes = traffic_hourly.inbound_bytes + excluded.inbound_bytes, \
                 outbound_bytes = traffic_hourly.outbound_bytes + excluded.outbound_bytes",
            )
            .bind(c.server.to_string())
            .bind(hour_of(now))
            .bind(saturating(d_in))
            .bind(saturating(d_out))
            .bind(host.to_string())
            .execute(&mut *tx)
            .await?;
            if added.rows_affected() > 0 {
                grew.insert(c.server);
            }
        }
        let mut changes = Vec::new();
        for server in grew {
            if let Some(change) = enforce_quota(&mut tx, server, now).await? {
                changes.push(change);
            }
        }
        tx.commit().await?;
        Ok(changes)
    }

    /// Re-checks every server that is throttled or suspended (a new period
    /// lifts them). Returns the servers whose state changed.
    pub async fn recheck_traffic_states(
        &self,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StateChange>> {
        let rows = sqlx::query("SELECT id FROM servers WHERE traffic_state <> 'normal'")
            .fetch_all(self.pool())
            .await?;
        let mut changes = Vec::new();
        for row in rows {
            let server: ServerId = parse(&row, "id")?;
            let mut tx = self.begin_write().await?;
            if let Some(change) = enforce_quota(&mut tx, server, now).await? {
                changes.push(change);
            }
            tx.commit().await?;
        }
        Ok(changes)
    }

    /// A server's traffic in `period`, with its hourly series.
    pub async fn server_usage(
        &self,
        project: ProjectId,
        server: ServerId,
        period: Period,
    ) -> StoreResult<ServerUsage> {
        let record = self.server(project, server).await?;
        let series = self
            .traffic_series(Series::Server, &server.to_string(), period)
            .await?;
        let (inbound, outbound) = totals(series.values());
        Ok(ServerUsage {
            server,
            period,
            inbound_bytes: inbound,
            outbound_bytes: outbound,
            total_bytes: inbound + outbound,
            quota: record.traffic_quota,
            traffic_state: record.traffic_state,
            series: to_points(series),
        })
    }

    /// A project's traffic in `period`: per server (deleted ones included)
    /// and as an hourly series.
    pub async fn project_usage(
        &self,
        project: ProjectId,
        period: Period,
    ) -> StoreResult<ProjectUsage> {
        let series = self
            .traffic_series(Series::Project, &project.to_string(), period)
            .await?;
        let rows = sqlx::query(
            "SELECT t.server_id, \
             COALESCE(MAX(s.name), MAX(e.server_name), t.server_id) AS name, \
             CAST(SUM(t.inbound_bytes) AS BIGINT) AS inbound, CAST(SUM(t.outbound_bytes) AS BIGINT) AS outbound \
             FROM traffic_hourly t \
             LEFT JOIN servers s ON s.id = t.server_id \
             LEFT JOIN server_events e ON e.server_id = t.server_id \
             WHERE t.project_id = $1 AND t.hour >= $2 AND t.hour < $3 \
             GROUP BY t.server_id ORDER BY t.server_id",
        )
        .bind(project.to_string())
        .bind(period.start.timestamp_millis())
        .bind(period.end.timestamp_millis())
        .fetch_all(self.pool())
        .await?;
        let servers = rows
            .iter()
            .map(|row| {
                Ok(ServerTotal {
                    server: parse(row, "server_id")?,
                    name: row.try_get("name")?,
                    inbound_bytes: count(row, "inbound")?,
                    outbound_bytes: count(row, "outbound")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let (inbound, outbound) = totals(series.values());
        Ok(ProjectUsage {
            project,
            period,
            inbound_bytes: inbound,
            outbound_bytes: outbound,
            total_bytes: inbound + outbound,
            servers,
            series: to_points(series),
        })
    }

    /// Hourly (inbound, outbound) sums of one server's or project's rows.
    async fn traffic_series(
        &self,
        column: Series,
        value: &str,
        period: Period,
    ) -> StoreResult<BTreeMap<i64, (u64, u64)>> {
        let sql = match column {
            Series::Server => {
                "SELECT hour, CAST(SUM(inbound_bytes) AS BIGINT) AS inbound, CAST(SUM(outbound_bytes) AS BIGINT) AS outbound \
                 FROM traffic_hourly WHERE server_id = $1 AND hour >= $2 AND hour < $3 \
                 GROUP BY hour ORDER BY hour"
            }
            Series::Project => {
                "SELECT hour, CAST(SUM(inbound_bytes) AS BIGINT) AS inbound, CAST(SUM(outbound_bytes) AS BIGINT) AS outbound \
                 FROM traffic_hourly WHERE project_id = $1 AND hour >= $2 AND hour < $3 \
                 GROUP BY hour ORDER BY hour"
            }
        };
        let rows = sqlx::query(sql)
            .bind(value)
            .bind(period.start.timestamp_millis())
            .bind(period.end.timestamp_millis())
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| {
                let hour: i64 = row.try_get("hour")?;
                Ok((hour, (count(row, "inbound")?, count(row, "outbound")?)))
            })
            .collect()
    }
}

fn totals<'a>(values: impl Iterator<Item = &'a (u64, u64)>) -> (u64, u64) {
    values.fold((0, 0), |(a, b), (i, o)| (a + i, b + o))
}

fn to_points(series: BTreeMap<i64, (u64, u64)>) -> Vec<UsagePoint> {
    series
        .into_iter()
        .filter_map(|(hour, (i, o))| {
            Some(UsagePoint {
                start: DateTime::from_timestamp_millis(hour)?,
                inbound_bytes: i,
                outbound_bytes: o,
            })
        })
        .collect()
}

/// Sets a server's traffic state from its quota and its total in the period
/// containing `now`, recording an event when it changes.
pub(crate) async fn enforce_quota(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    server: ServerId,
    now: DateTime<Utc>,
) -> StoreResult<Option<StateChange>> {
    let row = sqlx::query(
        "SELECT traffic_quota_bytes, traffic_policy, traffic_state FROM servers WHERE id = $1",
    )
    .bind(server.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let quota: Option<i64> = row.try_get("traffic_quota_bytes")?;
    let policy: Option<String> = row.try_get("traffic_policy")?;
    let current: String = row.try_get("traffic_state")?;
    let current = TrafficState::parse(&current)
        .ok_or_else(|| StoreError::Corrupt(format!("bad traffic_state '{current}'")))?;
    let period = Period::containing(now);
    let used = found(
        sqlx::query(
            "SELECT CAST(COALESCE(SUM(inbound_bytes), 0) + COALESCE(SUM(outbound_bytes), 0) AS BIGINT) AS used \
             FROM traffic_hourly WHERE server_id = $1 AND hour >= $2 AND hour < $3",
        )
        .bind(server.to_string())
        .bind(period.start.timestamp_millis())
        .bind(period.end.timestamp_millis())
        .fetch_optional(&mut **tx)
        .await?,
    )?;
    let used: i64 = used.try_get("used")?;
    let (wanted, reason) = match (quota, policy.as_deref().and_then(QuotaPolicy::parse)) {
        (Some(q), Some(policy)) if used >= q => {
            let state = match policy {
                QuotaPolicy::Throttle => TrafficState::Throttled,
                QuotaPolicy::Suspend => TrafficState::Suspended,
            };
            let reason = format!(
                "monthly traffic quota of {} used up ({} used in {}): {}",
                human_bytes(q),
                human_bytes(used),
                period.label(),
                match policy {
                    QuotaPolicy::Throttle =>
                        "bandwidth throttled until the quota is raised or the month ends",
                    QuotaPolicy::Suspend =>
                        "networking suspended until the quota is raised or the month ends",
                }
            );
            (state, Some(reason))
        }
        _ => (TrafficState::Normal, None),
    };
    if wanted == current {
        return Ok(None);
    }
    sqlx::query("UPDATE servers SET traffic_state = $2, traffic_reason = $3 WHERE id = $1")
        .bind(server.to_string())
        .bind(wanted.as_str())
        .bind(reason.as_deref())
        .execute(&mut **tx)
        .await?;
    let (kind, message) = match wanted {
        TrafficState::Throttled => (EventKind::TrafficThrottled, reason.unwrap_or_default()),
        TrafficState::Suspended => (EventKind::TrafficSuspended, reason.unwrap_or_default()),
        TrafficState::Normal => (
            EventKind::TrafficRestored,
            format!(
                "traffic within quota ({} used in {}): full service restored",
                human_bytes(used),
                period.label()
            ),
        ),
    };
    events::record(tx, server, now, kind, &message).await?;
    Ok(Some(StateChange {
        server,
        state: wanted,
    }))
}

/// Bytes for people: `1.50 GiB`, `12.0 MiB`, `900 B`.
fn human_bytes(b: i64) -> String {
    let b = b.max(0) as u64;
    nubis_api::traffic::format_bytes(b, if b >= 1 << 30 { 2 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_and_sizes() {
        let t = DateTime::from_timestamp_millis(HOUR_MS * 5 + 1234).unwrap();
        assert_eq!(hour_of(t), HOUR_MS * 5);
        assert_eq!(human_bytes(900), "900 B");
        assert_eq!(human_bytes(3 << 29), "1.50 GiB");
        assert_eq!(human_bytes(12 << 20), "12.0 MiB");
    }
}
