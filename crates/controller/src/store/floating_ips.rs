//! Floating IP pools and floating IPs. Addresses are stored as BIGINT
//! (their u32 value), so ranges compare and sort as numbers.

use super::rows::{parse, parse_opt, time};
use super::{found, now_ms, usage, Backend, OrConflict, Store, StoreError, StoreResult};
use nubis_api::floating_ips::{FloatingIp, FloatingIpPool};
use nubis_api::{FloatingIpId, FloatingIpPoolId, HostId, ProjectId, ServerId};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::net::Ipv4Addr;

fn addr(row: &AnyRow, col: &str) -> StoreResult<Ipv4Addr> {
    let v: i64 = row.try_get(col)?;
    u32::try_from(v)
        .map(Ipv4Addr::from)
        .map_err(|_| StoreError::Corrupt(format!("column {col}: bad address {v}")))
}

fn pool_from_row(row: &AnyRow) -> StoreResult<FloatingIpPool> {
    Ok(FloatingIpPool {
        id: parse(row, "id")?,
        name: row.try_get("name")?,
        first: addr(row, "first_ip")?,
        last: addr(row, "last_ip")?,
    })
}

/// Selects a floating IP with its pool name and the server address it maps to.
macro_rules! floating_ip_select {
    () => {
        "SELECT f.id, f.project_id, f.ip, f.server_id, f.created_at, p.name AS pool_name, \
         (SELECT pt.ip FROM ports pt WHERE pt.server_id = f.server_id ORDER BY pt.nic_index LIMIT 1) AS fixed_ip \
         FROM floating_ips f JOIN floating_ip_pools p ON p.id = f.pool_id "
    };
}

fn floating_ip_from_row(row: &AnyRow) -> StoreResult<FloatingIp> {
    let fixed: Option<String> = row.try_get("fixed_ip")?;
    Ok(FloatingIp {
        id: parse(row, "id")?,
        project: parse(row, "project_id")?,
        pool: row.try_get("pool_name")?,
        ip: addr(row, "ip")?,
        server: parse_opt(row, "server_id")?,
        fixed_ip: fixed.and_then(|f| f.parse().ok()),
        created_at: time(row, "created_at")?,
    })
}

impl Store {
    /// Creates a pool; its range must not overlap another pool's.
    pub async fn create_floating_ip_pool(
        &self,
        name: &str,
        first: Ipv4Addr,
        last: Ipv4Addr,
    ) -> StoreResult<FloatingIpPool> {
        let mut tx = self.begin_write().await?;
        let networks = Self::network_cidrs_in(&mut tx).await?;
        crate::address_space::check_floating_pool(first, last, self.tenant_pools(), &networks)?;
        let overlapping: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM floating_ip_pools WHERE first_ip <= $2 AND last_ip >= $1",
        )
        .bind(i64::from(u32::from(first)))
        .bind(i64::from(u32::from(last)))
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if overlapping > 0 {
            return Err(StoreError::Conflict(format!(
                "{first}-{last} overlaps an existing pool"
            )));
        }
        let id = FloatingIpPoolId::new();
        let res = sqlx::query(
            "INSERT INTO floating_ip_pools (id, name, first_ip, last_ip, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.to_string())
        .bind(name)
        .bind(i64::from(u32::from(first)))
        .bind(i64::from(u32::from(last)))
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        res.or_conflict(|| format!("a pool named '{name}' already exists"))?;
        tx.commit().await?;
        let row = sqlx::query("SELECT * FROM floating_ip_pools WHERE id = $1")
            .bind(id.to_string())
            .fetch_one(self.pool())
            .await?;
        pool_from_row(&row)
    }

    /// Every floating-IP pool, read in `conn` (a create's transaction).
    pub(super) async fn floating_ip_pools_in(
        conn: &mut sqlx::AnyConnection,
    ) -> StoreResult<Vec<FloatingIpPool>> {
        let rows = sqlx::query("SELECT * FROM floating_ip_pools ORDER BY name")
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(pool_from_row).collect()
    }

    pub async fn list_floating_ip_pools(&self) -> StoreResult<Vec<FloatingIpPool>> {
        let rows = sqlx::query("SELECT * FROM floating_ip_pools ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(pool_from_row).collect()
    }

    /// Allocates the lowest free address of `pool` (by name), or of the
    /// first pool with room. Usage is recorded from the system time; see
    /// [`Self::allocate_floating_ip_at`].
    pub async fn allocate_floating_ip(
        &self,
        project: ProjectId,
        pool: Option<&str>,
    ) -> StoreResult<FloatingIp> {
        self.allocate_floating_ip_at(project, pool, chrono::Utc::now())
            .await
    }

    /// [`Self::allocate_floating_ip`], opening its usage interval at `now`.
    pub async fn allocate_floating_ip_at(
        &self,
        project: ProjectId,
        pool: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<FloatingIp> {
        let mut tx = self.begin_write().await?;
        let extra = nubis_api::quotas::QuotaUsage {
            floating_ips: 1,
            ..nubis_api::quotas::QuotaUsage::default_zero()
        };
        super::quotas::check_quota(&mut tx, project, &extra).await?;
        if self.backend() == Backend::Postgres {
            sqlx::query("LOCK TABLE floating_ips IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
        }
        let pools = sqlx::query("SELECT * FROM floating_ip_pools ORDER BY name")
            .fetch_all(&mut *tx)
            .await?;
        let pools: Vec<FloatingIpPool> = pools
            .iter()
            .map(pool_from_row)
            .collect::<StoreResult<_>>()?;
        let candidates: Vec<&FloatingIpPool> = match pool {
            Some(name) => vec![pools
                .iter()
                .find(|p| p.name == name || p.id.to_string() == name)
                .ok_or(StoreError::NotFound)?],
            None => pools.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(StoreError::Conflict(
                "no floating IP pool exists; an admin must create one".into(),
            ));
        }
        for p in candidates {
            let used: std::collections::HashSet<u32> =
                sqlx::query("SELECT ip FROM floating_ips WHERE pool_id = $1")
                    .bind(p.id.to_string())
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .filter_map(|r| r.try_get::<i64, _>("ip").ok())
                    .filter_map(|v| u32::try_from(v).ok())
                    .collect();
            let Some(ip) = (u32::from(p.first)..=u32::from(p.last)).find(|ip| !used.contains(ip))
            else {
                continue;
            };
            let id = FloatingIpId::new();
            sqlx::query(
                "INSERT INTO floating_ips (id, pool_id, project_id, ip, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id.to_string())
            .bind(p.id.to_string())
            .bind(project.to_string())
            .bind(i64::from(ip))
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            let address = Ipv4Addr::from(ip).to_string();
            let (resource, at) = (id.to_string(), now.timestamp_millis());
            usage::floating_ip_allocated(&mut tx, project, &resource, &address, at).await?;
            tx.commit().await?;
            return self.floating_ip(project, id).await;
        }
        Err(StoreError::Conflict("no free floating IP left".into()))
    }

    pub async fn floating_ip(
        &self,
        project: ProjectId,
        id: FloatingIpId,
    ) -> StoreResult<FloatingIp> {
        let row = sqlx::query(concat!(
            floating_ip_select!(),
            "WHERE f.id = $1 AND f.project_id = $2"
        ))
        .bind(id.to_string())
        .bind(project.to_string())
        .fetch_optional(self.pool())
        .await?;
        floating_ip_from_row(&found(row)?)
    }

    pub async fn list_floating_ips(&self, project: ProjectId) -> StoreResult<Vec<FloatingIp>> {
        let rows = sqlx::query(concat!(
            floating_ip_select!(),
            "WHERE f.project_id = $1 ORDER BY f.ip"
        ))
        .bind(project.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(floating_ip_from_row).collect()
    }

    /// Associates (or with `None`, disassociates) a floating IP. The server
    /// must belong to the same project (checked by the caller).
    pub async fn set_floating_ip_server(
        &self,
        project: ProjectId,
        id: FloatingIpId,
        server: Option<ServerId>,
    ) -> StoreResult<FloatingIp> {
        let done =
            sqlx::query("UPDATE floating_ips SET server_id = $3 WHERE id = $1 AND project_id = $2")
                .bind(id.to_string())
                .bind(project.to_string())
                .bind(server.map(|s| s.to_string()))
                .execute(self.writer())
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.floating_ip(project, id).await
    }

    /// Releases a floating IP. Usage is recorded from the system time; see
    /// [`Self::release_floating_ip_at`].
    pub async fn release_floating_ip(
        &self,
        project: ProjectId,
        id: FloatingIpId,
    ) -> StoreResult<()> {
        self.release_floating_ip_at(project, id, chrono::Utc::now())
            .await
    }

    /// [`Self::release_floating_ip`], closing its usage interval at `now`.
    pub async fn release_floating_ip_at(
        &self,
        project: ProjectId,
        id: FloatingIpId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM floating_ips WHERE id = $1 AND project_id = $2")
            .bind(id.to_string())
            .bind(project.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        usage::floating_ip_released(&mut tx, &id.to_string(), now.timestamp_millis()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// (floating ip, fixed ip) of every associated floating IP of a host's servers.
    pub async fn host_floating_ips(&self, host: HostId) -> StoreResult<Vec<(Ipv4Addr, Ipv4Addr)>> {
        let rows = sqlx::query(concat!(
            floating_ip_select!(),
            "JOIN servers s ON s.id = f.server_id WHERE s.host_id = $1 AND s.deleting = 0 ORDER BY f.ip"
        ))
        .bind(host.to_string())
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::new();
        for row in rows {
            let f = floating_ip_from_row(&row)?;
            if let Some(fixed) = f.fixed_ip {
                out.push((f.ip, fixed));
            }
        }
        Ok(out)
    }
}
