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
//! server never fails for want of a network. The same holds for the
//! `default` security group (made on demand, not counted as a group); its
//! rules do count as rules.
//!
//! Images count from their creation (queued ones too); their files count by
//! the bytes actually stored (`images.size`), held to the byte against
//! `image_gib` GiB by [`check_image_bytes`] (the generic check only sees
//! whole units).

use super::rows::{big, count, count_opt};
use super::{Store, StoreError, StoreResult};
use nubis_api::quotas::{
    image_bytes_exceeded, ProjectQuotas, QuotaLimits, QuotaUsage, UpdateQuotas, GIB,
};
use nubis_api::ProjectId;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

/// The network every project gets on first use; outside the networks quota.
pub const DEFAULT_NETWORK: &str = "default";

/// The security group every project gets on first use; outside the groups
/// quota (its rules count).
pub const DEFAULT_SECURITY_GROUP: &str = "default";

fn limits_from_row(row: &AnyRow) -> StoreResult<QuotaLimits> {
    // Columns added later are NULL in older rows: the default then.
    let d = QuotaLimits::default();
    let or = |col: &str, default: u64| -> StoreResult<u64> {
        Ok(count_opt(row, col)?.unwrap_or(default))
    };
    Ok(QuotaLimits {
        images: or("images", d.images)?,
        image_gib: or("image_gib", d.image_gib)?,
        security_groups: or("security_groups", d.security_groups)?,
        security_group_rules: or("security_group_rules", d.security_group_rules)?,
        server_groups: or("server_groups", d.server_groups)?,
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

/// Bytes of the project's stored image files.
async fn image_bytes(conn: &mut AnyConnection, project: ProjectId) -> StoreResult<u64> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes \
         FROM images WHERE project_id = $1",
    )
    .bind(project.to_string())
    .fetch_one(&mut *conn)
    .await?;
    count(&row, "bytes")
}

/// What the project holds now, and the exact bytes of its image files.
async fn usage(conn: &mut AnyConnection, project: ProjectId) -> StoreResult<(QuotaUsage, u64)> {
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
    let images = sqlx::query("SELECT COUNT(*) AS n FROM images WHERE project_id = $1")
        .bind(&p)
        .fetch_one(&mut *conn)
        .await?;
    let groups = sqlx::query(
        "SELECT COUNT(*) AS n FROM security_groups WHERE project_id = $1 AND name <> $2",
    )
    .bind(&p)
    .bind(DEFAULT_SECURITY_GROUP)
    .fetch_one(&mut *conn)
    .await?;
    let rules = sqlx::query(
        "SELECT COUNT(*) AS n FROM security_group_rules r \
         JOIN security_groups g ON g.id = r.group_id WHERE g.project_id = $1",
    )
    .bind(&p)
    .fetch_one(&mut *conn)
    .await?;
    let server_groups =
        sqlx::query("SELECT COUNT(*) AS n FROM server_groups WHERE project_id = $1")
            .bind(&p)
            .fetch_one(&mut *conn)
            .await?;
    let bytes = image_bytes(conn, project).await?;
    let usage = QuotaUsage {
        servers: count(&servers, "servers")?,
        vcpus: count(&servers, "vcpus")?,
        memory_mib: count(&servers, "memory_mib")?,
        disk_gib: count(&servers, "disk_gib")?,
        floating_ips: count(&floating_ips, "n")?,
        networks: count(&networks, "n")?,
        images: count(&images, "n")?,
        image_gib: bytes.div_ceil(GIB),
        security_groups: count(&groups, "n")?,
        security_group_rules: count(&rules, "n")?,
        server_groups: count(&server_groups, "n")?,
    };
    Ok((usage, bytes))
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
    let (used, _) = usage(conn, project).await?;
    match limits.exceeded_by(&used, extra) {
        Some(message) => Err(StoreError::QuotaExceeded(message)),
        None => Ok(()),
    }
}

/// Inside a write transaction: locks the project and fails with
/// `QuotaExceeded` if `extra` more bytes of image files would not fit under
/// its `image_gib` limit beside the files it already holds.
pub(crate) async fn check_image_bytes(
    conn: &mut AnyConnection,
    project: ProjectId,
    extra: u64,
) -> StoreResult<()> {
    lock_project(conn, project).await?;
    let limits = limits(conn, project).await?;
    let used = image_bytes(conn, project).await?;
    match image_bytes_exceeded(limits.image_gib, used, extra) {
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
        let (in_use, image_bytes_in_use) = usage(&mut tx, project).await?;
        tx.commit().await?;
        Ok(ProjectQuotas {
            project,
            limits,
            in_use,
            image_bytes_in_use,
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
        let (used, image_bytes_in_use) = usage(&mut tx, project).await?;
        // Only the limits being set: one already below usage (say, a project
        // older than its quota) does not block changing another.
        for (name, limit, in_use) in new.pairs(&used) {
            let below = if name == "image_gib" {
                image_bytes_exceeded(limit, image_bytes_in_use, 0).is_some()
            } else {
                limit < in_use
            };
            if update.sets(name) && below {
                return Err(StoreError::Conflict(format!(
                    "cannot set the {name} quota to {limit}: the project already holds {in_use}; \
                     free some first"
                )));
            }
        }
        sqlx::query(
            "INSERT INTO project_quotas \
             (project_id, servers, vcpus, memory_mib, disk_gib, floating_ips, networks, \
             images, image_gib, security_groups, security_group_rules, server_groups) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (project_id) DO UPDATE SET servers = excluded.servers, \
             vcpus = excluded.vcpus, memory_mib = excluded.memory_mib, \
             disk_gib = excluded.disk_gib, floating_ips = excluded.floating_ips, \
             networks = excluded.networks, images = excluded.images, \
             image_gib = excluded.image_gib, security_groups = excluded.security_groups, \
             security_group_rules = excluded.security_group_rules, \
             server_groups = excluded.server_groups",
        )
        .bind(project.to_string())
        .bind(big(new.servers))
        .bind(big(new.vcpus))
        .bind(big(new.memory_mib))
        .bind(big(new.disk_gib))
        .bind(big(new.floating_ips))
        .bind(big(new.networks))
        .bind(big(new.images))
        .bind(big(new.image_gib))
        .bind(big(new.security_groups))
        .bind(big(new.security_group_rules))
        .bind(big(new.server_groups))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ProjectQuotas {
            project,
            limits: new,
            in_use: used,
            image_bytes_in_use,
        })
    }
}
