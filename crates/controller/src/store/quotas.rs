//! Project quotas: the limits of each project (an override row in
//! `project_quotas`, or the defaults), what it holds now, and the check that
//! every create transaction runs before it inserts anything.
//!
//! Atomicity: a create checks and inserts in one write transaction, after
//! [`lock_project`] took the project's lock. On SQLite the transaction already
//! holds the database's write lock (`BEGIN IMMEDIATE`), so writers are
//! serialized anyway. On PostgreSQL, `lock_project` updates the project's row
//! (`quota_generation + 1`), which holds that row's lock until commit: every
//! other create (or quota change) of the same project waits for it, and, under
//! READ COMMITTED, counts usage in a statement that starts after the first one
//! committed, so it sees what that one inserted. Two creates can therefore
//! never both fit into the last unit of a quota.
//!
//! What counts: servers not being deleted (and their vCPUs, memory and disk),
//! floating IPs allocated to the project, and networks other than the
//! project's `default` one. That network is made on demand (by listing
//! networks or creating a server), so it is neither counted nor checked: the
//! networks quota is about networks users create, and a project's first
//! server never fails for want of a network.

use super::rows::{big, count};
use super::{Store, StoreError, StoreResult};
use nubis_api::quotas::{ProjectQuotas, QuotaLimits, QuotaUsage, UpdateQuotas};
use nubis_api::ProjectId;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

/// The network every project gets on first use; outside the networks quota.
pub const DEFAULT_NETWORK: &str = "default";

fn limits_from_row(row: &AnyRow) -> StoreResult<QuotaLimits> {
    Ok(QuotaLimits {
        servers: count(row, "servers")?,
        vcpus: count(row, "vcpus")?,
        memory_mib: count(row, "memory_mib")?,
        disk_gib: count(row, "disk_gib")?,
        floating_ips: count(row, "floating_ips")?,
        networks: count(row, "networks")?,
    })
}

/// Takes the project's quota lock for the rest of the transaction (see the
/// module documentation); `NotFound` if there is no such project.
pub(crate) async fn lock_project(conn: &mut AnyConnection, project: ProjectId) -> StoreResult<()> {
    let done =
        sqlx::query("UPDATE projects SET quota_generation = quota_generation + 1 WHERE id = $1")
            .bind(project.to_string())
            .execute(&mut *conn)
            .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// The project's limits: its override row, or the defaults.
async fn limits(conn: &mut AnyConnection, project: ProjectId) -> StoreResult<QuotaLimits> {
    let row = sqlx::query("SELECT * FROM project_quotas WHERE project_id = $1")
        .bind(project.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => limits_from_row(&row),
        None => Ok(QuotaLimits::default()),
    }
}

/// What the project holds now.
async fn usage(conn: &mut AnyConnection, project: ProjectId) -> StoreResult<QuotaUsage> {
    let p = project.to_string();
    // SUM of BIGINT is NUMERIC on PostgreSQL: cast back.
    let servers = sqlx::query(
        "SELECT COUNT(*) AS servers, \
         CAST(COALESCE(SUM(vcpus), 0) AS BIGINT) AS vcpus, \
         CAST(COALESCE(SUM(memory_mib), 0) AS BIGINT) AS memory_mib, \
         CAST(COALESCE(SUM(disk_gib), 0) AS BIGINT) AS disk_gib \
         FROM servers WHERE project_id = $1 AND deleting = 0",
    )
    .bind(&p)
    .fetch_one(&mut *conn)
    .await?;
    let floating_ips = sqlx::query("SELECT COUNT(*) AS n FROM floating_ips WHERE project_id = $1")
        .bind(&p)
        .fetch_one(&mut *conn)
        .await?;
    let networks =
        sqlx::query("SELECT COUNT(*) AS n FROM networks WHERE project_id = $1 AND name <> $2")
            .bind(&p)
            .bind(DEFAULT_NETWORK)
            .fetch_one(&mut *conn)
            .await?;
    Ok(QuotaUsage {
        servers: count(&servers, "servers")?,
        vcpus: count(&servers, "vcpus")?,
        memory_mib: count(&servers, "memory_mib")?,
        disk_gib: count(&servers, "disk_gib")?,
        floating_ips: count(&floating_ips, "n")?,
        networks: count(&networks, "n")?,
    })
}

/// Inside a write transaction, before inserting: locks the project and fails
/// with `QuotaExceeded` (naming the resource) if `extra` would not fit.
pub(crate) async fn check_quota(
    conn: &mut AnyConnection,
    project: ProjectId,
    extra: &QuotaUsage,
) -> StoreResult<()> {
    lock_project(conn, project).await?;
    let limits = limits(conn, project).await?;
    let used = usage(conn, project).await?;
    match limits.exceeded_by(&used, extra) {
        Some(message) => Err(StoreError::QuotaExceeded(message)),
        None => Ok(()),
    }
}

impl Store {
    /// A project's limits beside what it holds; `NotFound` if no such project.
    pub async fn project_quotas(&self, project: ProjectId) -> StoreResult<ProjectQuotas> {
        // One read transaction: limits and usage from the same moment.
        let mut tx = self.pool().begin().await?;
        let exists = sqlx::query("SELECT id FROM projects WHERE id = $1")
            .bind(project.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let limits = limits(&mut tx, project).await?;
        let in_use = usage(&mut tx, project).await?;
        tx.commit().await?;
        Ok(ProjectQuotas {
            project,
            limits,
            in_use,
        })
    }

    /// Changes the limits `update` names (the others stay). A limit below
    /// what the project holds now is refused with `Conflict` naming the
    /// resource, and nothing changes.
    pub async fn set_quotas(
        &self,
        project: ProjectId,
        update: &UpdateQuotas,
    ) -> StoreResult<ProjectQuotas> {
        let mut tx = self.begin_write().await?;
        lock_project(&mut tx, project).await?;
        let current = limits(&mut tx, project).await?;
        let new = update.apply(current);
        let used = usage(&mut tx, project).await?;
        // Only the limits being set: one already below usage (say, a project
        // older than its quota) does not block changing another.
        for (name, limit, in_use) in new.pairs(&used) {
            if is_set(update, name) && limit < in_use {
                return Err(StoreError::Conflict(format!(
                    "cannot set the {name} quota to {limit}: the project already holds {in_use}; \
                     free some first"
                )));
            }
        }
        sqlx::query(
            "INSERT INTO project_quotas \
             (project_id, servers, vcpus, memory_mib, disk_gib, floating_ips, networks) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (project_id) DO UPDATE SET servers = excluded.servers, \
             vcpus = excluded.vcpus, memory_mib = excluded.memory_mib, \
             disk_gib = excluded.disk_gib, floating_ips = excluded.floating_ips, \
             networks = excluded.networks",
        )
        .bind(project.to_string())
        .bind(big(new.servers))
        .bind(big(new.vcpus))
        .bind(big(new.memory_mib))
        .bind(big(new.disk_gib))
        .bind(big(new.floating_ips))
        .bind(big(new.networks))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ProjectQuotas {
            project,
            limits: new,
            in_use: used,
        })
    }
}

/// Whether `update` sets the limit called `name` (as in `QuotaLimits::pairs`).
fn is_set(update: &UpdateQuotas, name: &str) -> bool {
    match name {
        "servers" => update.servers.is_some(),
        "vcpus" => update.vcpus.is_some(),
        "memory_mib" => update.memory_mib.is_some(),
        "disk_gib" => update.disk_gib.is_some(),
        "floating_ips" => update.floating_ips.is_some(),
        "networks" => update.networks.is_some(),
        _ => false,
    }
}
