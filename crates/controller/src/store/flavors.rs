//! Flavors.

use super::rows::{big, count, json_or_default, parse, to_json};
use super::{found, now_ms, OrConflict, Store, StoreError, StoreResult};
use nubis_api::flavors::{CreateFlavor, Flavor};
use nubis_api::FlavorId;
use sqlx::any::AnyRow;
use sqlx::Row;

/// The flavors a fresh cloud starts with.
const DEFAULT_FLAVORS: [(&str, u64, u64, u64); 4] = [
    ("tiny", 1, 128, 1),
    ("small", 1, 1024, 10),
    ("medium", 2, 4096, 40),
    ("large", 4, 8192, 80),
];

fn flavor_from_row(row: &AnyRow) -> StoreResult<Flavor> {
    Ok(Flavor {
        id: parse(row, "id")?,
        name: row.try_get("name")?,
        vcpus: count(row, "vcpus")?,
        memory_mib: count(row, "memory_mib")?,
        disk_gib: count(row, "disk_gib")?,
        bandwidth: json_or_default(row, "bandwidth")?,
    })
}

impl Store {
    /// Creates the default flavors when the cloud has none.
    pub async fn ensure_default_flavors(&self) -> StoreResult<()> {
        if !self.list_flavors().await?.is_empty() {
            return Ok(());
        }
        for (name, vcpus, memory_mib, disk_gib) in DEFAULT_FLAVORS {
            let req = CreateFlavor {
                name: name.parse().expect("default flavor names are valid"),
                vcpus: vcpus.try_into().expect("valid"),
                memory_mib: memory_mib.try_into().expect("valid"),
                disk_gib: disk_gib.try_into().expect("valid"),
                bandwidth: None,
            };
            match self.create_flavor(&req).await {
                Ok(_) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub async fn create_flavor(&self, req: &CreateFlavor) -> StoreResult<Flavor> {
        let id = FlavorId::new();
        let res = sqlx::query(
            "INSERT INTO flavors (id, name, vcpus, memory_mib, disk_gib, created_at, bandwidth) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.to_string())
        .bind(req.name.as_str())
        .bind(big(req.vcpus.get()))
        .bind(big(req.memory_mib.get()))
        .bind(big(req.disk_gib.get()))
        .bind(now_ms())
        .bind(req.bandwidth.as_ref().map(to_json))
        .execute(self.writer())
        .await;
        res.or_conflict(|| format!("a flavor named '{}' already exists", req.name))?;
        self.flavor(&id.to_string()).await
    }

    pub async fn list_flavors(&self) -> StoreResult<Vec<Flavor>> {
        let rows = sqlx::query("SELECT * FROM flavors ORDER BY vcpus, memory_mib, name")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(flavor_from_row).collect()
    }

    /// A flavor by id or name.
    pub async fn flavor(&self, id_or_name: &str) -> StoreResult<Flavor> {
        let row = sqlx::query("SELECT * FROM flavors WHERE id = $1 OR name = $1")
            .bind(id_or_name)
            .fetch_optional(self.pool())
            .await?;
        flavor_from_row(&found(row)?)
    }
}
