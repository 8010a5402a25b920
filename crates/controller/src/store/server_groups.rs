//! Server groups of a project and their members. Creating one counts
//! against the project's `server_groups` quota inside the transaction that
//! inserts it; a group with members cannot be deleted.

use super::quotas::check_quota;
use super::rows::{parse, time};
use super::{found, now_ms, Backend, OrConflict, Store, StoreError, StoreResult};
use crate::scheduler::GroupContext;
use nubis_api::quotas::QuotaUsage;
use nubis_api::server_groups::{GroupPolicy, ServerGroup};
use nubis_api::{ProjectId, ServerGroupId, ServerId};
use sqlx::any::AnyRow;
use sqlx::Row;

impl Store {
    /// The group `server` is a member of as placement sees it, its own host
    /// left out (for choosing where it moves); `None` outside any group.
    pub async fn group_of_server(&self, server: ServerId) -> StoreResult<Option<GroupContext>> {
        let row = sqlx::query(
            "SELECT g.id, g.policy FROM server_group_members m \
             JOIN server_groups g ON g.id = m.group_id WHERE m.server_id = $1",
        )
        .bind(server.to_string())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let group: ServerGroupId = parse(&row, "id")?;
        let policy: String = row.try_get("policy")?;
        let policy = GroupPolicy::parse(&policy)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown policy '{policy}'")))?;
        let member_hosts = sqlx::query(
            "SELECT DISTINCT s.host_id FROM server_group_members m \
             JOIN servers s ON s.id = m.server_id \
             WHERE m.group_id = $1 AND m.server_id <> $2 AND s.host_id IS NOT NULL",
        )
        .bind(group.to_string())
        .bind(server.to_string())
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| parse(r, "host_id"))
        .collect::<StoreResult<_>>()?;
        Ok(Some(GroupContext {
            policy,
            member_hosts,
        }))
    }

    async fn server_group_from_row(&self, row: &AnyRow) -> StoreResult<ServerGroup> {
        let id: ServerGroupId = parse(row, "id")?;
        let policy: String = row.try_get("policy")?;
        let members = sqlx::query(
            "SELECT m.server_id FROM server_group_members m JOIN servers s ON s.id = m.server_id \
             WHERE m.group_id = $1 ORDER BY s.created_at, s.id",
        )
        .bind(id.to_string())
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| parse(r, "server_id"))
        .collect::<StoreResult<_>>()?;
        Ok(ServerGroup {
            id,
            project: parse(row, "project_id")?,
            name: row.try_get("name")?,
            policy: GroupPolicy::parse(&policy)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown policy '{policy}'")))?,
            members,
            created_at: time(row, "created_at")?,
        })
    }

    /// Creates a server group if the project's quota has room; a second
    /// group of the same name is a `Conflict`.
    pub async fn create_server_group(
        &self,
        project: ProjectId,
        name: &str,
        policy: GroupPolicy,
    ) -> StoreResult<ServerGroup> {
        let id = ServerGroupId::new();
        let mut tx = self.begin_write().await?;
        let one = QuotaUsage {
            server_groups: 1,
            ..QuotaUsage::default_zero()
        };
        check_quota(&mut tx, project, &one).await?;
        let res = sqlx::query(
            "INSERT INTO server_groups (id, project_id, name, policy, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.to_string())
        .bind(project.to_string())
        .bind(name)
        .bind(policy.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        res.or_conflict(|| {
            format!("a server group named '{name}' already exists in this project")
        })?;
        tx.commit().await?;
        self.server_group(project, &id.to_string()).await
    }

    /// A server group of `project` by id or name; another project's is
    /// `NotFound`.
    pub async fn server_group(
        &self,
        project: ProjectId,
        id_or_name: &str,
    ) -> StoreResult<ServerGroup> {
        let row = sqlx::query(
            "SELECT * FROM server_groups WHERE (id = $1 OR name = $1) AND project_id = $2",
        )
        .bind(id_or_name)
        .bind(project.to_string())
        .fetch_optional(self.pool())
        .await?;
        self.server_group_from_row(&found(row)?).await
    }

    pub async fn list_server_groups(&self, project: ProjectId) -> StoreResult<Vec<ServerGroup>> {
        let rows = sqlx::query(
            "SELECT * FROM server_groups WHERE project_id = $1 ORDER BY created_at, name",
        )
        .bind(project.to_string())
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.server_group_from_row(row).await?);
        }
        Ok(out)
    }

    /// Deletes a server group of `project`; `Conflict` while it has members
    /// (servers being deleted count until they are gone).
    pub async fn delete_server_group(
        &self,
        project: ProjectId,
        id: ServerGroupId,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM server_groups WHERE id = $1 AND project_id = $2{lock}"
        )))
        .bind(id.to_string())
        .bind(project.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        found(row)?;
        let members =
            sqlx::query("SELECT COUNT(*) AS n FROM server_group_members WHERE group_id = $1")
                .bind(id.to_string())
                .fetch_one(&mut *tx)
                .await?;
        let n: i64 = members.try_get("n")?;
        if n > 0 {
            return Err(StoreError::Conflict(format!(
                "the server group still has {n} member(s); delete them first"
            )));
        }
        sqlx::query("DELETE FROM server_groups WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
