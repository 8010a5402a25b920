//! Usage records for billing: intervals during which a project held a
//! billable resource, and the per-period report built from them.
//!
//! Each row of `usage_intervals` says "this project held this resource, at
//! this size and quantity, from `started_at` until `ended_at`" (`ended_at` is
//! NULL while the interval is open). The hooks below open and close
//! intervals inside the transaction of the store operation that changes what
//! is held, so usage and state never disagree. Times are Unix milliseconds
//! given by the caller (the API passes its clock's "now").
//!
//! What is recorded:
//!
//! - `instance`: open while the server's *desired* power is running, from
//!   create (or start) until stop, a guest shutting itself down, or a delete
//!   request. Size `<vcpus>vcpu-<memory>mib`, quantity 1; billed in hours.
//! - `disk`: open from create until the delete request. Size `<gib>gib`,
//!   quantity the disk size in GiB; billed in GiB-hours.
//! - `floating_ip`: open from allocation until release. Name the address,
//!   size `ipv4`, quantity 1; billed in hours.
//!
//! Billing stops when deletion is *requested* (the user stopped paying when
//! they asked), not when the host has finished removing the server.
//!
//! Every hook is idempotent: opening an interval that is already open, or
//! closing one when none is open, does nothing. Traffic is not an interval:
//! the report sums `traffic_hourly` (filled by the traffic metering).

use super::rows::{time, time_opt};
use super::{Store, StoreResult};
use chrono::{DateTime, Utc};
use nubis_api::traffic::Period;
use nubis_api::usage_records::{UsageKind, UsageRecord, UsageReport};
use nubis_api::ProjectId;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};

type Tx<'t> = sqlx::Transaction<'t, sqlx::Any>;

const MS_PER_HOUR: f64 = 3_600_000.0;
const BYTES_PER_GIB: f64 = (1u64 << 30) as f64;

/// The size label of an instance: `2vcpu-1024mib` (the disk is billed on
/// its own, as a `disk` record).
pub fn instance_size(vcpus: u64, memory_mib: u64) -> String {
    format!("{vcpus}vcpu-{memory_mib}mib")
}

/// The size label of a disk: `20gib`.
pub fn disk_size(disk_gib: u64) -> String {
    format!("{disk_gib}gib")
}

/// What an interval records.
pub(crate) struct Held<'a> {
    pub project: ProjectId,
    pub kind: UsageKind,
    pub resource: &'a str,
    pub name: &'a str,
    pub size: &'a str,
    pub quantity: u64,
}

/// Opens an interval at `at_ms` unless one of the same kind is already open
/// for the resource.
pub(crate) async fn open(tx: &mut Tx<'_>, held: &Held<'_>, at_ms: i64) -> StoreResult<()> {
    let open = sqlx::query(
        "SELECT id FROM usage_intervals WHERE resource_id = $1 AND kind = $2 AND ended_at IS NULL",
    )
    .bind(held.resource)
    .bind(held.kind.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    if open.is_some() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO usage_intervals (id, project_id, kind, resource_id, name, size, quantity, \
         started_at, ended_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(held.project.to_string())
    .bind(held.kind.as_str())
    .bind(held.resource)
    .bind(held.name)
    .bind(held.size)
    .bind(super::rows::big(held.quantity))
    .bind(at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Closes the open interval of `kind` for the resource at `at_ms` (never
/// before it started); nothing when none is open.
pub(crate) async fn close(
    tx: &mut Tx<'_>,
    kind: UsageKind,
    resource: &str,
    at_ms: i64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE usage_intervals SET ended_at = CASE WHEN started_at > $3 THEN started_at ELSE $3 END \
         WHERE resource_id = $1 AND kind = $2 AND ended_at IS NULL",
    )
    .bind(resource)
    .bind(kind.as_str())
    .bind(at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A server's desired power became running (created or started): opens its
/// `instance` interval, read from the server row. Nothing for a server that
/// does not exist or is being deleted.
pub(crate) async fn server_running(tx: &mut Tx<'_>, server: &str, at_ms: i64) -> StoreResult<()> {
    let row = sqlx::query(
        "SELECT project_id, name, vcpus, memory_mib FROM servers \
         WHERE id = $1 AND deleting = 0 AND power = 'running'",
    )
    .bind(server)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(());
    };
    let project: ProjectId = super::rows::parse(&row, "project_id")?;
    let name: String = row.try_get("name")?;
    let size = instance_size(
        super::rows::count(&row, "vcpus")?,
        super::rows::count(&row, "memory_mib")?,
    );
    let held = Held {
        project,
        kind: UsageKind::Instance,
        resource: server,
        name: &name,
        size: &size,
        quantity: 1,
    };
    open(tx, &held, at_ms).await
}

/// A server was created: opens its `instance` (it starts desired running)
/// and `disk` intervals.
pub(crate) async fn server_created(tx: &mut Tx<'_>, server: &str, at_ms: i64) -> StoreResult<()> {
    server_running(tx, server, at_ms).await?;
    let row = sqlx::query("SELECT project_id, name, disk_gib FROM servers WHERE id = $1")
        .bind(server)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else {
        return Ok(());
    };
    let project: ProjectId = super::rows::parse(&row, "project_id")?;
    let name: String = row.try_get("name")?;
    let gib = super::rows::count(&row, "disk_gib")?;
    let size = disk_size(gib);
    let held = Held {
        project,
        kind: UsageKind::Disk,
        resource: server,
        name: &name,
        size: &size,
        quantity: gib,
    };
    open(tx, &held, at_ms).await
}

/// A server's desired power became stopped (by its user or by the guest
/// shutting itself down): closes its `instance` interval.
pub(crate) async fn server_stopped(tx: &mut Tx<'_>, server: &str, at_ms: i64) -> StoreResult<()> {
    close(tx, UsageKind::Instance, server, at_ms).await
}

/// A server's deletion was requested (or its row removed): closes its
/// `instance` and `disk` intervals.
pub(crate) async fn server_deleted(tx: &mut Tx<'_>, server: &str, at_ms: i64) -> StoreResult<()> {
    close(tx, UsageKind::Instance, server, at_ms).await?;
    close(tx, UsageKind::Disk, server, at_ms).await
}

/// A floating IP was allocated: opens its `floating_ip` interval.
pub(crate) async fn floating_ip_allocated(
    tx: &mut Tx<'_>,
    project: ProjectId,
    id: &str,
    address: &str,
    at_ms: i64,
) -> StoreResult<()> {
    let held = Held {
        project,
        kind: UsageKind::FloatingIp,
        resource: id,
        name: address,
        size: "ipv4",
        quantity: 1,
    };
    open(tx, &held, at_ms).await
}

/// A floating IP was released: closes its `floating_ip` interval.
pub(crate) async fn floating_ip_released(tx: &mut Tx<'_>, id: &str, at_ms: i64) -> StoreResult<()> {
    close(tx, UsageKind::FloatingIp, id, at_ms).await
}

/// One interval as stored.
#[derive(Clone, Debug)]
pub struct UsageInterval {
    pub project: ProjectId,
    pub kind: String,
    pub resource: String,
    pub name: String,
    pub size: String,
    pub quantity: u64,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

fn parse_kind(s: &str) -> Option<UsageKind> {
    [
        UsageKind::Instance,
        UsageKind::Disk,
        UsageKind::FloatingIp,
        UsageKind::Traffic,
    ]
    .into_iter()
    .find(|k| k.as_str() == s)
}

impl Store {
    /// Every interval of a resource, oldest first (for inspection and tests).
    pub async fn usage_intervals(&self, resource: &str) -> StoreResult<Vec<UsageInterval>> {
        let rows = sqlx::query(
            "SELECT * FROM usage_intervals WHERE resource_id = $1 ORDER BY started_at, kind",
        )
        .bind(resource)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UsageInterval {
                    project: super::rows::parse(row, "project_id")?,
                    kind: row.try_get("kind")?,
                    resource: row.try_get("resource_id")?,
                    name: row.try_get("name")?,
                    size: row.try_get("size")?,
                    quantity: super::rows::count(row, "quantity")?,
                    started_at: time(row, "started_at")?,
                    ended_at: time_opt(row, "ended_at")?,
                })
            })
            .collect()
    }

    /// The name in the newest interval of a resource.
    async fn last_interval_name(&self, resource: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query(
            "SELECT name FROM usage_intervals WHERE resource_id = $1 \
             ORDER BY started_at DESC LIMIT 1",
        )
        .bind(resource)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.try_get("name")).transpose()?)
    }

    /// The usage records of `project` for `period`, as of `now`.
    ///
    /// Every interval is clipped to `[period.start, min(period.end, now))`
    /// and summed per (kind, resource, size): instances in hours, disks in
    /// GiB-hours, floating IPs in hours. Traffic is summed from the hourly
    /// totals whose hour starts in the period, two records per server
    /// (`inbound`, `outbound`) in GiB. Names come from the intervals (the
    /// server may be gone), else from the server, else the id. Records are
    /// sorted by kind, name, resource, size; empty ones are left out.
    pub async fn usage_report(
        &self,
        project: ProjectId,
        period: Period,
        now: DateTime<Utc>,
    ) -> StoreResult<UsageReport> {
        let from = period.start.timestamp_millis();
        let until = period.end.min(now).timestamp_millis();
        // (kind, resource, size) -> (name, milliseconds x quantity, latest start)
        let mut held: BTreeMap<(UsageKind, String, String), (String, i128, i64)> = BTreeMap::new();
        // The newest name of every resource, for traffic records.
        let mut names: HashMap<String, (i64, String)> = HashMap::new();
        let rows = sqlx::query(
            "SELECT kind, resource_id, name, size, quantity, started_at, ended_at \
             FROM usage_intervals WHERE project_id = $1 AND started_at < $3 \
             AND (ended_at IS NULL OR ended_at > $2)",
        )
        .bind(project.to_string())
        .bind(from)
        .bind(period.end.timestamp_millis())
        .fetch_all(self.pool())
        .await?;
        for row in &rows {
            let kind: String = row.try_get("kind")?;
            let resource: String = row.try_get("resource_id")?;
            let name: String = row.try_get("name")?;
            let started: i64 = row.try_get("started_at")?;
            let ended: Option<i64> = row.try_get("ended_at")?;
            let newest = names
                .entry(resource.clone())
                .or_insert((started, name.clone()));
            if started >= newest.0 {
                *newest = (started, name.clone());
            }
            let Some(kind) = parse_kind(&kind) else {
                continue;
            };
            let ms = (ended.unwrap_or(i64::MAX).min(until) - started.max(from)).max(0);
            let quantity = super::rows::count(row, "quantity")?;
            let entry = held
                .entry((kind, resource, row.try_get("size")?))
                .or_insert((name.clone(), 0, started));
            entry.1 += i128::from(ms) * i128::from(quantity);
            if started >= entry.2 {
                entry.0 = name;
                entry.2 = started;
            }
        }
        let mut records: Vec<UsageRecord> = held
            .into_iter()
            .filter(|(_, (_, ms, _))| *ms > 0)
            .map(|((kind, resource, size), (name, ms, _))| UsageRecord {
                kind,
                resource,
                name,
                size,
                quantity: ms as f64 / MS_PER_HOUR,
                unit: kind.unit().to_owned(),
            })
            .collect();

        let traffic = sqlx::query(
            "SELECT t.server_id, s.name AS server_name, \
             CAST(SUM(t.inbound_bytes) AS BIGINT) AS inbound, \
             CAST(SUM(t.outbound_bytes) AS BIGINT) AS outbound \
             FROM traffic_hourly t LEFT JOIN servers s ON s.id = t.server_id \
             WHERE t.project_id = $1 AND t.hour >= $2 AND t.hour < $3 \
             GROUP BY t.server_id, s.name",
        )
        .bind(project.to_string())
        .bind(from)
        .bind(period.end.timestamp_millis())
        .fetch_all(self.pool())
        .await?;
        for row in &traffic {
            let server: String = row.try_get("server_id")?;
            let current: Option<String> = row.try_get("server_name")?;
            let name = match names.get(&server) {
                Some((_, name)) => name.clone(),
                None => match self.last_interval_name(&server).await? {
                    Some(name) => name,
                    None => current.unwrap_or_else(|| server.clone()),
                },
            };
            for (direction, column) in [("inbound", "inbound"), ("outbound", "outbound")] {
                let bytes: Option<i64> = row.try_get(column)?;
                records.push(UsageRecord {
                    kind: UsageKind::Traffic,
                    resource: server.clone(),
                    name: name.clone(),
                    size: direction.to_owned(),
                    quantity: bytes.unwrap_or(0).max(0) as f64 / BYTES_PER_GIB,
                    unit: UsageKind::Traffic.unit().to_owned(),
                });
            }
        }
        records.sort_by(|a, b| {
            (a.kind, &a.name, &a.resource, &a.size).cmp(&(b.kind, &b.name, &b.resource, &b.size))
        });
        Ok(UsageReport {
            project,
            period,
            records,
        })
    }
}
