//! Hypervisor hosts (one per agent) and what is placed on them.

use super::rows::{big, count, parse, time};
use super::{found, now_ms, Store, StoreError, StoreResult};
use crate::address_space::HostRanges;
use nubis_api::agent::{Accelerator, Host, HostAddressing, RegisterHost};
use nubis_api::HostId;
use sqlx::any::AnyRow;
use sqlx::Row;

/// A host with the resources already placed on it, for the scheduler.
#[derive(Clone, Debug)]
pub struct HostLoad {
    pub host: Host,
    pub used_vcpus: u64,
    pub used_memory_mib: u64,
    pub used_disk_gib: u64,
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
    })
}

impl Store {
    /// Registers a host, or updates the one with the same name (agents call
    /// this at every start, so it must be idempotent).
    pub async fn register_host(&self, req: &RegisterHost) -> StoreResult<Host> {
        // One statement, so concurrent registrations of a name cannot race.
        sqlx::query(
            "INSERT INTO hosts (id, name, vcpus, memory_mib, disk_gib, accel, last_seen, url, addressing) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (name) DO UPDATE SET vcpus = excluded.vcpus, \
             memory_mib = excluded.memory_mib, disk_gib = excluded.disk_gib, \
             accel = excluded.accel, last_seen = excluded.last_seen, url = excluded.url, \
             addressing = COALESCE(excluded.addressing, hosts.addressing)",
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
        .execute(self.pool())
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
            .execute(self.pool())
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
        sqlx::query("UPDATE hosts SET addressing = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(addressing_json(Some(addressing))?)
            .execute(self.pool())
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
    /// resources are not yet free) take.
    pub async fn host_loads(&self) -> StoreResult<Vec<HostLoad>> {
        let mut loads = Vec::new();
        for host in self.list_hosts().await? {
            let row = sqlx::query(
                "SELECT CAST(COALESCE(SUM(vcpus), 0) AS BIGINT) AS v, \
                 CAST(COALESCE(SUM(memory_mib), 0) AS BIGINT) AS m, \
                 CAST(COALESCE(SUM(disk_gib), 0) AS BIGINT) AS d \
                 FROM servers WHERE host_id = $1",
            )
            .bind(host.id.to_string())
            .fetch_one(self.pool())
            .await?;
            loads.push(HostLoad {
                host,
                used_vcpus: count(&row, "v")?,
                used_memory_mib: count(&row, "m")?,
                used_disk_gib: count(&row, "d")?,
            });
        }
        Ok(loads)
    }
}

/// A host's addressing as stored (JSON), or NULL.
fn addressing_json(addressing: Option<&HostAddressing>) -> StoreResult<Option<String>> {
    addressing
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("host addressing: {e}")))
}
