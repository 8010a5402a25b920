//! The image catalog. Creating an image counts against the project's
//! `images` quota; activating it (its upload accepted) against `image_gib`,
//! by the bytes received; both inside the transaction that writes the row.

use super::quotas::{check_image_bytes, check_quota};
use super::rows::{big, count, count_opt, parse, parse_opt, time};
use super::{found, now_ms, OrConflict, Store, StoreError, StoreResult};
use nubis_api::images::{ConfigFormat, Image, ImageFormat, ImageStatus, Visibility};
use nubis_api::{ImageId, ProjectId};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A validated image record to insert.
pub struct NewImage<'a> {
    pub project: ProjectId,
    pub name: &'a str,
    pub os: &'a str,
    pub version: &'a str,
    pub format: ImageFormat,
    pub visibility: Visibility,
    pub kernel: Option<ImageId>,
    pub initrd: Option<ImageId>,
    pub cmdline: Option<&'a str>,
    pub config_format: ConfigFormat,
}

/// What an upload established about the bytes.
pub struct UploadedFile {
    pub size: u64,
    pub virtual_size: u64,
    pub checksum: String,
}

pub(super) fn image_from_row(row: &AnyRow) -> StoreResult<Image> {
    let format: String = row.try_get("format")?;
    let status: String = row.try_get("status")?;
    let visibility: String = row.try_get("visibility")?;
    Ok(Image {
        id: parse(row, "id")?,
        name: row.try_get("name")?,
        os: row.try_get("os")?,
        version: row.try_get("version")?,
        format: format.parse().map_err(StoreError::Corrupt)?,
        status: match status.as_str() {
            "active" => ImageStatus::Active,
            _ => ImageStatus::Queued,
        },
        visibility: match visibility.as_str() {
            "public" => Visibility::Public,
            _ => Visibility::Private,
        },
        project: parse(row, "project_id")?,
        kernel: parse_opt(row, "kernel_id")?,
        initrd: parse_opt(row, "initrd_id")?,
        cmdline: row.try_get("cmdline")?,
        config_format: {
            let f: String = row.try_get("config_format")?;
            if f == "nocloud" {
                ConfigFormat::Nocloud
            } else {
                ConfigFormat::ConfigDrive
            }
        },
        size: count_opt(row, "size")?,
        virtual_size: count_opt(row, "virtual_size")?,
        checksum: row.try_get("checksum")?,
        created_at: time(row, "created_at")?,
    })
}

fn visibility_str(v: Visibility) -> &'static str {
    match v {
        Visibility::Private => "private",
        Visibility::Public => "public",
    }
}

impl Store {
    pub async fn create_image(&self, new: &NewImage<'_>) -> StoreResult<Image> {
        let id = ImageId::new();
        let mut tx = self.begin_write().await?;
        let one = nubis_api::quotas::QuotaUsage {
            images: 1,
            ..nubis_api::quotas::QuotaUsage::default_zero()
        };
        check_quota(&mut tx, new.project, &one).await?;
        let res = sqlx::query(
            "INSERT INTO images (id, project_id, name, os, version, format, status, visibility, \
             kernel_id, initrd_id, cmdline, created_at, config_format) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(id.to_string())
        .bind(new.project.to_string())
        .bind(new.name)
        .bind(new.os)
        .bind(new.version)
        .bind(new.format.as_str())
        .bind(ImageStatus::Queued.as_str())
        .bind(visibility_str(new.visibility))
        .bind(new.kernel.map(|k| k.to_string()))
        .bind(new.initrd.map(|k| k.to_string()))
        .bind(new.cmdline)
        .bind(now_ms())
        .bind(new.config_format.as_str())
        .execute(&mut *tx)
        .await;
        res.or_conflict(|| {
            format!(
                "an image named '{}' already exists in this project",
                new.name
            )
        })?;
        tx.commit().await?;
        self.image_any_project(id).await
    }

    /// An image regardless of owner (for agents and internal use).
    pub async fn image_any_project(&self, id: ImageId) -> StoreResult<Image> {
        let row = sqlx::query("SELECT * FROM images WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        image_from_row(&found(row)?)
    }

    /// An image by id or name that `project` may see (its own, or public).
    /// Its own image wins when a public one has the same name.
    pub async fn image_visible(&self, project: ProjectId, id_or_name: &str) -> StoreResult<Image> {
        let row = sqlx::query(
            "SELECT * FROM images WHERE (id = $1 OR name = $1) \
             AND (project_id = $2 OR visibility = 'public') \
             ORDER BY CASE WHEN project_id = $2 THEN 0 ELSE 1 END LIMIT 1",
        )
        .bind(id_or_name)
        .bind(project.to_string())
        .fetch_optional(self.pool())
        .await?;
        image_from_row(&found(row)?)
    }

    /// Images `project` may see.
    pub async fn list_images(&self, project: ProjectId) -> StoreResult<Vec<Image>> {
        let rows = sqlx::query(
            "SELECT * FROM images WHERE project_id = $1 OR visibility = 'public' \
             ORDER BY created_at, name",
        )
        .bind(project.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(image_from_row).collect()
    }

    /// Records an accepted upload and makes the image usable, if its bytes
    /// fit the project's `image_gib` quota (else `QuotaExceeded`, and the
    /// image stays queued). `NotFound` if the image was deleted meanwhile.
    pub async fn activate_image(&self, id: ImageId, file: &UploadedFile) -> StoreResult<Image> {
        let mut tx = self.begin_write().await?;
        let project = image_project(&mut tx, id).await?;
        check_image_bytes(&mut tx, project, file.size).await?;
        let done = sqlx::query(
            "UPDATE images SET status = 'active', size = $2, virtual_size = $3, checksum = $4 \
             WHERE id = $1 AND status = 'queued'",
        )
        .bind(id.to_string())
        .bind(big(file.size))
        .bind(big(file.virtual_size))
        .bind(&file.checksum)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(
                "this image already has its file; images are immutable".into(),
            ));
        }
        tx.commit().await?;
        self.image_any_project(id).await
    }

    /// Fails with `QuotaExceeded` unless `bytes` more of image files fit the
    /// project's `image_gib` quota now (an upload's early check, against
    /// its declared length; the binding check is at activation).
    pub async fn check_image_room(&self, project: ProjectId, bytes: u64) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        check_image_bytes(&mut tx, project, bytes).await?;
        tx.rollback().await?;
        Ok(())
    }

    /// How many more bytes of image files the project may store now.
    pub async fn image_bytes_left(&self, project: ProjectId) -> StoreResult<u64> {
        let quotas = self.project_quotas(project).await?;
        Ok(quotas
            .limits
            .image_gib
            .saturating_mul(nubis_api::quotas::GIB)
            .saturating_sub(quotas.image_bytes_in_use))
    }

    /// Deletes an image no server and no other image uses. `in_use`
    /// (`Conflict`) names the first user found; nothing changes then.
    /// Servers being deleted still count: their rows reference the image
    /// until their host has removed them.
    pub async fn delete_image(&self, id: ImageId) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let project = image_project(&mut tx, id).await?;
        // The project's lock orders this against its own creates; servers
        // of other projects (a public image) are caught by the foreign key.
        super::quotas::lock_project(&mut tx, project).await?;
        let servers = sqlx::query("SELECT COUNT(*) AS n FROM servers WHERE image_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        let servers = count(&servers, "n")?;
        if servers > 0 {
            return Err(StoreError::Conflict(format!(
                "{servers} server(s) still use this image; delete them first"
            )));
        }
        let parts = sqlx::query(
            "SELECT name FROM images WHERE kernel_id = $1 OR initrd_id = $1 ORDER BY name LIMIT 1",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = parts {
            let name: String = row.try_get("name")?;
            return Err(StoreError::Conflict(format!(
                "image '{name}' boots with this image as its kernel or initrd; delete it first"
            )));
        }
        let res = sqlx::query("DELETE FROM images WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await;
        match res {
            Err(e) if is_foreign_key_violation(&e) => Err(StoreError::Conflict(
                "a server was just created from this image; delete it first".into(),
            )),
            Err(e) => Err(e.into()),
            Ok(_) => {
                tx.commit().await?;
                Ok(())
            }
        }
    }

    /// Ids of every image with a file (for agents: a cached image not
    /// listed here was deleted).
    pub async fn active_image_ids(&self) -> StoreResult<Vec<ImageId>> {
        let rows = sqlx::query("SELECT id FROM images WHERE status = 'active' ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| parse(r, "id")).collect()
    }
}

/// The project owning an image; `NotFound` if there is none.
async fn image_project(conn: &mut sqlx::AnyConnection, id: ImageId) -> StoreResult<ProjectId> {
    let row = sqlx::query("SELECT project_id FROM images WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    parse(&found(row)?, "project_id")
}

/// Whether an error is a foreign-key violation (a row still referenced).
fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_foreign_key_violation()
                || db.message().contains("FOREIGN KEY constraint failed")
                || db.code().as_deref() == Some("23503")
        }
        _ => false,
    }
}
