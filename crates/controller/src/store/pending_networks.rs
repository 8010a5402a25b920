//! Networks made through OpenStack's Network API before their subnet.
//! A Nubis network always has a range, but `openstack network create`
//! comes before `subnet create`: the network waits here (visible only to
//! the Neutron API) and becomes a Nubis network with the same id when its
//! subnet is created (`Store::create_network_with_id`, which deletes the
//! pending row in its transaction). See docs/openstack.md, "Network".

use super::rows::{parse, time};
use super::{found, now_ms, OrConflict, Store, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use nubis_api::{NetworkId, ProjectId};
use sqlx::any::AnyRow;
use sqlx::Row;

/// The most networks without a subnet a project may hold: they use no
/// address range and count against no quota, so they are bounded here.
pub const MAX_PENDING_PER_PROJECT: i64 = 16;

/// A network without its subnet yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingNetwork {
    pub id: NetworkId,
    pub project: ProjectId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

fn pending_from_row(row: &AnyRow) -> StoreResult<PendingNetwork> {
    Ok(PendingNetwork {
        id: parse(row, "id")?,
        project: parse(row, "project_id")?,
        name: row.try_get("name")?,
        created_at: time(row, "created_at")?,
    })
}

/// Deletes the pending row of `id` (if any) in `tx`: it became a network.
pub(super) async fn forget_pending_in(
    tx: &mut sqlx::AnyConnection,
    id: NetworkId,
) -> StoreResult<()> {
    sqlx::query("DELETE FROM neutron_pending_networks WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

impl Store {
    /// Records a network without a subnet. Its name (already validated)
    /// must be free among the project's networks, pending or not.
    pub async fn create_pending_network(
        &self,
        project: ProjectId,
        name: &str,
    ) -> StoreResult<PendingNetwork> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM neutron_pending_networks WHERE project_id = $1) AS pending, \
             (SELECT COUNT(*) FROM networks WHERE project_id = $1 AND name = $2) AS same_name",
        )
        .bind(project.to_string())
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        let pending: i64 = row.try_get("pending")?;
        let same_name: i64 = row.try_get("same_name")?;
        if same_name > 0 {
            return Err(StoreError::Conflict(format!(
                "a network named '{name}' already exists in this project"
            )));
        }
        if pending >= MAX_PENDING_PER_PROJECT {
            return Err(StoreError::Conflict(format!(
                "the project already has {pending} networks without a subnet \
                 (at most {MAX_PENDING_PER_PROJECT}); create their subnets or delete them"
            )));
        }
        let id = NetworkId::new();
        sqlx::query(
            "INSERT INTO neutron_pending_networks (id, project_id, name, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(project.to_string())
        .bind(name)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .or_conflict(|| format!("a network named '{name}' already exists in this project"))?;
        tx.commit().await?;
        self.pending_network(project, id).await
    }

    /// A pending network of `project`.
    pub async fn pending_network(
        &self,
        project: ProjectId,
        id: NetworkId,
    ) -> StoreResult<PendingNetwork> {
        let row = sqlx::query(
            "SELECT * FROM neutron_pending_networks WHERE id = $1 AND project_id = $2 \
             AND id NOT IN (SELECT id FROM networks)",
        )
        .bind(id.to_string())
        .bind(project.to_string())
        .fetch_optional(self.pool())
        .await?;
        pending_from_row(&found(row)?)
    }

    /// The project's pending networks, oldest first.
    pub async fn list_pending_networks(
        &self,
        project: ProjectId,
    ) -> StoreResult<Vec<PendingNetwork>> {
        sqlx::query(
            "SELECT * FROM neutron_pending_networks WHERE project_id = $1 \
             AND id NOT IN (SELECT id FROM networks) ORDER BY created_at, name",
        )
        .bind(project.to_string())
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(pending_from_row)
        .collect()
    }

    /// Deletes a pending network of `project`.
    pub async fn delete_pending_network(
        &self,
        project: ProjectId,
        id: NetworkId,
    ) -> StoreResult<()> {
        let done =
            sqlx::query("DELETE FROM neutron_pending_networks WHERE id = $1 AND project_id = $2")
                .bind(id.to_string())
                .bind(project.to_string())
                .execute(self.writer())
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

impl Store {
    /// Names the one subnet of network `id` (Neutron's `subnet create`).
    pub async fn set_subnet_name(&self, id: NetworkId, name: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM neutron_subnet_names WHERE network_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO neutron_subnet_names (network_id, name) VALUES ($1, $2)")
            .bind(id.to_string())
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The subnet names given to the project's networks.
    pub async fn subnet_names(
        &self,
        project: ProjectId,
    ) -> StoreResult<std::collections::HashMap<NetworkId, String>> {
        sqlx::query(
            "SELECT s.network_id, s.name FROM neutron_subnet_names s \
             JOIN networks n ON n.id = s.network_id WHERE n.project_id = $1",
        )
        .bind(project.to_string())
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| Ok((parse(r, "network_id")?, r.try_get("name")?)))
        .collect()
    }
}

impl Store {
    /// Takes the range back from network `id` of `project` (Neutron's
    /// subnet delete): in one transaction the network, which no port may
    /// use, becomes a pending network with the same id and name.
    pub async fn demote_to_pending(&self, project: ProjectId, id: NetworkId) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT name, created_at, (SELECT COUNT(*) FROM ports WHERE network_id = $1) AS used \
             FROM networks WHERE id = $1 AND project_id = $2",
        )
        .bind(id.to_string())
        .bind(project.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let row = found(row)?;
        let used: i64 = row.try_get("used")?;
        if used > 0 {
            return Err(StoreError::Conflict(format!(
                "the subnet still has {used} server port(s); delete those servers first"
            )));
        }
        let name: String = row.try_get("name")?;
        let created_at: i64 = row.try_get("created_at")?;
        for sql in [
            "DELETE FROM neutron_subnet_names WHERE network_id = $1",
            "DELETE FROM networks WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO neutron_pending_networks (id, project_id, name, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(project.to_string())
        .bind(&name)
        .bind(created_at)
        .execute(&mut *tx)
        .await
        .or_conflict(|| format!("a network named '{name}' is already pending"))?;
        tx.commit().await?;
        Ok(())
    }
}
