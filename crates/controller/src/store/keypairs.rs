//! SSH key pairs of a project.

use super::rows::{parse, time};
use super::{found, now_ms, OrConflict, Store, StoreError, StoreResult};
use nubis_api::keypairs::Keypair;
use nubis_api::{KeypairId, ProjectId};
use sqlx::any::AnyRow;
use sqlx::Row;

fn keypair_from_row(row: &AnyRow) -> StoreResult<Keypair> {
    Ok(Keypair {
        id: parse(row, "id")?,
        name: row.try_get("name")?,
        project: parse(row, "project_id")?,
        public_key: row.try_get("public_key")?,
        fingerprint: row.try_get("fingerprint")?,
        created_at: time(row, "created_at")?,
    })
}

impl Store {
    pub async fn create_keypair(
        &self,
        project: ProjectId,
        name: &str,
        public_key: &str,
        fingerprint: &str,
    ) -> StoreResult<Keypair> {
        let id = KeypairId::new();
        let res = sqlx::query(
            "INSERT INTO keypairs (id, project_id, name, public_key, fingerprint, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(project.to_string())
        .bind(name)
        .bind(public_key)
        .bind(fingerprint)
        .bind(now_ms())
        .execute(self.writer())
        .await;
        res.or_conflict(|| format!("a key pair named '{name}' already exists in this project"))?;
        self.keypair(project, name).await
    }

    /// A key pair of `project` by id or name.
    pub async fn keypair(&self, project: ProjectId, id_or_name: &str) -> StoreResult<Keypair> {
        let row =
            sqlx::query("SELECT * FROM keypairs WHERE (id = $1 OR name = $1) AND project_id = $2")
                .bind(id_or_name)
                .bind(project.to_string())
                .fetch_optional(self.pool())
                .await?;
        keypair_from_row(&found(row)?)
    }

    pub async fn list_keypairs(&self, project: ProjectId) -> StoreResult<Vec<Keypair>> {
        let rows = sqlx::query("SELECT * FROM keypairs WHERE project_id = $1 ORDER BY name")
            .bind(project.to_string())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(keypair_from_row).collect()
    }

    /// Deletes a key pair; servers keep the key they were created with.
    pub async fn delete_keypair(&self, project: ProjectId, id: KeypairId) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM keypairs WHERE id = $1 AND project_id = $2")
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
