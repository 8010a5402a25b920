//! Hypervisor hosts (one per agent) and what is placed on them.

use super::rows::{big, count, flag, parse, time};
use super::{found, now_ms, Store, StoreError, StoreResult};
use crate::address_space::HostRanges;
use nubis_api::agent::{Accelerator, Host, HostAddressing, RegisterHost};
use nubis_api::{HostId, ProjectId};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A host with the resources already placed on it, for the scheduler.
#[derive(Clone, Debug)]
pub struct HostLoad {
    pub host: Host,
    pub used_vcpus: u64,
    pub used_memory_mib: u64,
    pub used_disk_gib: u64,
    /// Servers placed on it (being deleted included).
    pub instances: u64,
}

/// Every host beside the sums of its servers, in one set-based statement
/// (hosts with no server get zeros), the servers summed filtered by
/// `$servers` and the hosts by `$tail`. A server moving live is placed on
/// its target from the start but runs on its source until the switch-over
/// (and goes back there if the move fails): its size counts on both.
macro_rules! loads_sql {
    ($servers:literal, $tail:literal) => {
        concat!(
            "SELECT h.*, \
     CAST(COALESCE(s.v, 0) AS BIGINT) AS used_vcpus, \
     CAST(COALESCE(s.m, 0) AS BIGINT) AS used_memory_mib, \
     CAST(COALESCE(s.d, 0) AS BIGINT) AS used_disk_gib, \
     CAST(COALESCE(s.n, 0) AS BIGINT) AS instances \
     FROM hosts h LEFT JOIN (SELECT host_id, SUM(vcpus) AS v, SUM(memory_mib) AS m, \
     SUM(disk_gib) AS d, SUM(n) AS n FROM (\
     SELECT host_id, vcpus, memory_mib, disk_gib, 1 AS n FROM servers \
     UNION ALL \
     SELECT m.source_host AS host_id, s.vcpus, s.memory_mib, s.disk_gib, 0 AS n \
     FROM migrations m JOIN servers s ON s.id = m.server_id \
     WHERE m.state = 'running' AND m.arrival = 'live') u WHERE host_id IS NOT NULL ",
            $servers,
            " GROUP BY host_id) s ON s.host_id = h.id ",
            $tail
        )
    };
}

fn load_from_row(row: &AnyRow) -> StoreResult<HostLoad> {
    Ok(HostLoad {
        host: host_from_row(row)?,
        used_vcpus: count(row, "used_vcpus")?,
        used_memory_mib: count(row, "used_memory_mib")?,
        used_disk_gib: count(row, "used_disk_gib")?,
        instances: count(row, "instances")?,
    })
}

/// Every host's load, read in `conn` (a create's transaction).
pub(crate) async fn loads_in(conn: &mut sqlx::AnyConnection) -> StoreResult<Vec<HostLoad>> {
    let rows = sqlx::query(loads_sql!("", "ORDER BY h.name"))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(load_from_row).collect()
}

/// One host's load, read in `conn` (after its row was locked). Only its
/// own servers are summed (by index): a claim reads this for every create.
pub(crate) async fn load_in(conn: &mut sqlx::AnyConnection, id: HostId) -> StoreResult<HostLoad> {
    let row = sqlx::query(loads_sql!("AND host_id = $1", "WHERE h.id = $1"))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    load_from_row(&found(row)?)
}

fn host_from_row(row: &AnyRow) -> StoreResult<Host> {
    let accel: String = row.try_get("accel")?;
    Ok(Host {
        id: parse(row, "id")?,
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        vcpus: count(row, "vcpus")?,
        memory_mib: count(row, "memory_mib")?,
        disk_gib: count(row, "disk_gib")?,
        accel: match accel.as_str() {
            "kvm" => Accelerator::Kvm,
            "tcg" => Accelerator::Tcg,
            other => return Err(StoreError::Corrupt(format!("unknown accelerator {other}"))),
        },
        last_seen: time(row, "last_seen")?,
        cpu_model: row.try_get("cpu_model")?,
        enabled: flag(row, "enabled")?,
        disabled_reason: row.try_get("disabled_reason")?,
    })
}

impl Store {
    /// Registers a host, or updates the one with the same name (agents call
    /// this at every start, so it must be idempotent).
    pub async fn register_host(&self, req: &RegisterHost) -> StoreResult<Host> {
        // One statement, so concurrent registrations of a name cannot race.
        sqlx::query(
            "INSERT INTO hosts (id, name, vcpus, memory_mib, disk_gib, accel, last_seen, url, addressing, \
             cpu_model) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10, '')) \
             ON CONFLICT (name) DO UPDATE SET vcpus = excluded.vcpus, \
             memory_mib = excluded.memory_mib, disk_gib = excluded.disk_gib, \
             accel = excluded.accel, last_seen = excluded.last_seen, url = excluded.url, \
             addressing = COALESCE(excluded.addressing, hosts.addressing), \
             cpu_model = CASE WHEN $10 IS NULL THEN hosts.cpu_model ELSE excluded.cpu_model END",
        )
        .bind(HostId::new().to_string())
        .bind(&req.name)
        .bind(big(req.vcpus))
        .bind(big(req.memory_mib))
        .bind(big(req.disk_gib))
        .bind(req.accel.as_str())
        .bind(now_ms())
        .bind(&req.url)
        .bind(addressing_json(req.addressing.as_ref())?)
        .bind(req.cpu_model.as_deref())
        .execute(self.writer())
        .await?;
        let row = sqlx::query("SELECT * FROM hosts WHERE name = $1")
            .bind(&req.name)
            .fetch_optional(self.pool())
            .await?;
        host_from_row(&found(row)?)
    }

    pub async fn host(&self, id: HostId) -> StoreResult<Host> {
        let row = sqlx::query("SELECT * FROM hosts WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        host_from_row(&found(row)?)
    }

    pub async fn list_hosts(&self) -> StoreResult<Vec<Host>> {
        let rows = sqlx::query("SELECT * FROM hosts ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(host_from_row).collect()
    }

    /// Marks a host as alive now.
    pub async fn touch_host(&self, id: HostId) -> StoreResult<()> {
        let done = sqlx::query("UPDATE hosts SET last_seen = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(now_ms())
            .execute(self.writer())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Records the addresses and routes a host reported for itself.
    pub async fn set_host_addressing(
        &self,
        id: HostId,
        addressing: &HostAddressing,
    ) -> StoreResult<()> {
        let json = addressing_json(Some(addressing))?;
        // Agents send the same addressing in every report: read, and write
        // only a change.
        let stored: Option<Option<String>> =
            sqlx::query_scalar("SELECT addressing FROM hosts WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(self.pool())
                .await?;
        if stored.flatten() == json {
            return Ok(());
        }
        sqlx::query("UPDATE hosts SET addressing = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(json)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// The addresses and routes every host reported (hosts that reported
    /// none are left out), read in `conn` (a create's transaction).
    pub(super) async fn host_ranges_in(
        conn: &mut sqlx::AnyConnection,
    ) -> StoreResult<Vec<HostRanges>> {
        let rows = sqlx::query(
            "SELECT name, addressing FROM hosts WHERE addressing IS NOT NULL ORDER BY name",
        )
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|row| {
                let text: String = row.try_get("addressing")?;
                Ok(HostRanges {
                    host: row.try_get("name")?,
                    addressing: serde_json::from_str(&text)
                        .map_err(|e| StoreError::Corrupt(format!("column addressing: {e}")))?,
                })
            })
            .collect()
    }

    /// Every host with what its servers (including those being deleted, whose
    /// resources are not yet free) take: one statement, whatever the number
    /// of hosts.
    pub async fn host_loads(&self) -> StoreResult<Vec<HostLoad>> {
        let mut conn = self.pool().acquire().await?;
        loads_in(&mut conn).await
    }

    /// One host's load; `NotFound` if there is no such host.
    pub async fn host_load(&self, id: HostId) -> StoreResult<HostLoad> {
        let mut conn = self.pool().acquire().await?;
        load_in(&mut conn, id).await
    }

    /// The hosts that hold a server of `project` (being deleted included),
    /// and the sources of its servers' moves under way (a departing server
    /// keeps its networks and groups there): those whose desired state may
    /// name the project's servers, through their networks' DNS records and
    /// overlay peers, or their security groups' remote-group members
    /// (networks and groups are per project).
    pub async fn project_hosts(&self, project: ProjectId) -> StoreResult<Vec<HostId>> {
        let rows = sqlx::query(
            "SELECT host_id FROM servers WHERE project_id = $1 AND host_id IS NOT NULL \
             UNION \
             SELECT m.source_host AS host_id FROM migrations m \
             JOIN servers s ON s.id = m.server_id \
             WHERE s.project_id = $1 AND m.state = 'running'",
        )
        .bind(project.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| parse(row, "host_id")).collect()
    }

    /// Lets new servers be placed on a host (`enabled`), or not, with a
    /// reason (cleared on enable); `NotFound` if there is no such host.
    pub async fn set_host_enabled(
        &self,
        id: HostId,
        enabled: bool,
        reason: Option<&str>,
    ) -> StoreResult<Host> {
        let done = sqlx::query("UPDATE hosts SET enabled = $2, disabled_reason = $3 WHERE id = $1")
            .bind(id.to_string())
            .bind(i64::from(enabled))
            .bind(if enabled { None } else { reason })
            .execute(self.writer())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.host(id).await
    }
}

/// A host's addressing as stored (JSON), or NULL.
fn addressing_json(addressing: Option<&HostAddressing>) -> StoreResult<Option<String>> {
    addressing
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("host addressing: {e}")))
}
