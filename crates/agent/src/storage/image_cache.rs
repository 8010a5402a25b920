//! The host's copy of each image an instance here uses, fetched from the
//! controller once and checked against the catalog's SHA-256.

use crate::controller_client::ControllerClient;
use anyhow::{bail, Context};
use futures_util::StreamExt;
use nubis_api::agent::ImageRef;
use nubis_api::ImageId;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// Downloads images into a directory, one download per image at a time.
#[derive(Clone)]
pub struct ImageCache {
    dir: PathBuf,
    client: ControllerClient,
    /// One lock per image, so concurrent instances share one download.
    locks: Arc<Mutex<HashMap<ImageId, Arc<Mutex<()>>>>>,
}

impl ImageCache {
    pub fn new(dir: PathBuf, client: ControllerClient) -> Self {
        Self {
            dir,
            client,
            locks: Arc::default(),
        }
    }

    /// Where an image is kept.
    pub fn path(&self, image: &ImageRef) -> PathBuf {
        self.dir
            .join(format!("{}.{}", image.id, image.format.as_str()))
    }

    /// Returns the local path of `image`, downloading it first if needed.
    pub async fn ensure(&self, image: &ImageRef) -> anyhow::Result<PathBuf> {
        let path = self.path(image);
        let lock = self.locks.lock().await.entry(image.id).or_default().clone();
        let _guard = lock.lock().await;
        if tokio::fs::metadata(&path).await.is_ok() {
            return Ok(path);
        }
        tokio::fs::create_dir_all(&self.dir).await?;
        let temp = self.dir.join(format!(".download-{}", image.id));
        let result = self.download(image, &temp).await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
        // Read-only: an instance only ever reads its base image.
        tokio::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o444)).await?;
        tokio::fs::rename(&temp, &path).await?;
        tracing::info!(image = %image.id, size = image.size, "image cached");
        Ok(path)
    }

    async fn download(&self, image: &ImageRef, temp: &Path) -> anyhow::Result<()> {
        let resp = self.client.image_file(image.id).await?;
        let mut out = tokio::fs::File::create(temp)
            .await
            .with_context(|| format!("creating {}", temp.display()))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.context("downloading image")?;
            size += chunk.len() as u64;
            if size > image.size {
                bail!("image {} is larger than the catalog says", image.id);
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await?;
        }
        out.sync_all().await?;
        let checksum = hex::encode(hasher.finalize());
        if size != image.size || checksum != image.checksum {
            bail!(
                "image {} does not match the catalog (size {size}, sha256 {checksum})",
                image.id
            );
        }
        Ok(())
    }
}
