//! The host's copy of each image an instance here uses, fetched from the
//! controller once and checked against the catalog's SHA-256.
//!
//! A download that stalls (no byte for `DOWNLOAD_IDLE_TIMEOUT`) fails and
//! releases the image's lock; the partial file stays, and the next attempt
//! asks only for the rest (HTTP `Range`). A controller that answers with
//! the whole file instead (`200`) gets a clean restart from byte zero.
//!
//! The cache is bounded (see [`sweep`]): images the controller no longer
//! lists go, and past the size limit the least recently used images no
//! instance here uses go too. A file's modification time is its last use.

use crate::controller_client::ControllerClient;
use anyhow::Context;
use futures_util::StreamExt;
use nubis_api::agent::ImageRef;
use nubis_api::ImageId;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

/// How long an image download may go without receiving a byte. Not a limit
/// on the whole download (a big image over a slow link takes long, and
/// that is fine while bytes flow): the controller streams from its disk in
/// 1 MiB reads, so a minute of silence means a stalled peer or network.
pub const DOWNLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Downloads images into a directory, one download per image at a time.
#[derive(Clone)]
pub struct ImageCache {
    dir: PathBuf,
    client: ControllerClient,
    /// One lock per image, so concurrent instances share one download.
    locks: Arc<Mutex<HashMap<ImageId, Arc<Mutex<()>>>>>,
    idle_timeout: Duration,
    /// Past this many bytes, unused images are evicted.
    limit_bytes: u64,
}

/// The default `--image-cache-gib`.
pub const DEFAULT_LIMIT_GIB: u64 = 20;

/// Why a download attempt failed, which decides what happens to the partial
/// file: a broken transfer keeps it (the next attempt resumes), wrong bytes
/// do not.
enum Failure {
    /// The transfer stopped (stall, network error): keep what arrived.
    Interrupted(anyhow::Error),
    /// The bytes are wrong (too many, bad checksum): start over next time.
    Corrupt(anyhow::Error),
}

impl ImageCache {
    pub fn new(dir: PathBuf, client: ControllerClient) -> Self {
        Self {
            dir,
            client,
            locks: Arc::default(),
            idle_timeout: DOWNLOAD_IDLE_TIMEOUT,
            limit_bytes: DEFAULT_LIMIT_GIB << 30,
        }
    }

    /// The same cache with another size limit, in bytes.
    pub fn with_limit(mut self, bytes: u64) -> Self {
        self.limit_bytes = bytes;
        self
    }

    /// The same cache with another idle limit (tests use a short one).
    pub fn with_idle_timeout(mut self, limit: Duration) -> Self {
        self.idle_timeout = limit;
        self
    }

    /// Where an image is kept.
    pub fn path(&self, image: &ImageRef) -> PathBuf {
        self.dir
            .join(format!("{}.{}", image.id, image.format.as_str()))
    }

    /// Where the bytes of an image download in progress are kept.
    fn partial_path(&self, image: &ImageRef) -> PathBuf {
        self.dir.join(format!(".download-{}", image.id))
    }

    /// Returns the local path of `image`, downloading it first if needed.
    pub async fn ensure(&self, image: &ImageRef) -> anyhow::Result<PathBuf> {
        let path = self.path(image);
        let lock = self.locks.lock().await.entry(image.id).or_default().clone();
        let _guard = lock.lock().await;
        if let Ok(meta) = tokio::fs::metadata(&path).await {
            // Cached before images became root's alone (0400).
            if meta.permissions().mode() & 0o077 != 0 {
                tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).await?;
            }
            mark_used(&path);
            return Ok(path);
        }
        tokio::fs::create_dir_all(&self.dir).await?;
        let temp = self.partial_path(image);
        match self.download(image, &temp).await {
            Ok(()) => {}
            Err(Failure::Interrupted(e)) => return Err(e),
            Err(Failure::Corrupt(e)) => {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(e);
            }
        }
        // Read-only, and root's alone: a QEMU gets only a descriptor of the
        // images it uses (see `crate::jail`).
        tokio::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o400)).await?;
        tokio::fs::rename(&temp, &path).await?;
        tracing::info!(image = %image.id, size = image.size, "image cached");
        Ok(path)
    }

    async fn download(&self, image: &ImageRef, temp: &Path) -> Result<(), Failure> {
        use Failure::{Corrupt, Interrupted};
        // What an earlier, interrupted attempt left (too much is corrupt).
        let have = match tokio::fs::metadata(temp).await {
            Ok(m) if m.len() < image.size => m.len(),
            _ => 0,
        };
        let resp = self
            .client
            .image_file(image.id, have)
            .await
            .map_err(Interrupted)?;
        let resumed = have > 0 && resumes_at(&resp, have);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut out = if resumed {
            // The checksum covers the whole file: hash what is there first.
            let mut existing = tokio::fs::File::open(temp)
                .await
                .context("reading the partial image")
                .map_err(Interrupted)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = existing.read(&mut buf).await.map_err(|e| Interrupted(e.into()))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            tracing::info!(image = %image.id, from = size, "resuming image download");
            tokio::fs::OpenOptions::new().append(true).open(temp).await
        } else {
            if have > 0 {
                tracing::info!(image = %image.id, "controller does not resume; downloading from the start");
            }
            tokio::fs::File::create(temp).await
        }
        .with_context(|| format!("opening {}", temp.display()))
        .map_err(Interrupted)?;
        let mut stream = resp.bytes_stream();
        loop {
            let chunk = match tokio::time::timeout(self.idle_timeout, stream.next()).await {
                Ok(None) => break,
                Ok(Some(chunk)) => chunk.context("downloading image").map_err(Interrupted)?,
                Err(_) => {
                    // Keep what arrived; the next attempt resumes from there.
                    let _ = out.flush().await;
                    return Err(Interrupted(anyhow::anyhow!(
                        "image {} download stalled: nothing received for {} s",
                        image.id,
                        self.idle_timeout.as_secs_f64()
                    )));
                }
            };
            size += chunk.len() as u64;
            if size > image.size {
                return Err(Corrupt(anyhow::anyhow!(
                    "image {} is larger than the catalog says",
                    image.id
                )));
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|e| Interrupted(e.into()))?;
        }
        out.sync_all().await.map_err(|e| Interrupted(e.into()))?;
        let checksum = hex::encode(hasher.finalize());
        if size < image.size {
            return Err(Interrupted(anyhow::anyhow!(
                "image {} download ended early ({size} of {} bytes)",
                image.id,
                image.size
            )));
        }
        if checksum != image.checksum {
            return Err(Corrupt(anyhow::anyhow!(
                "image {} does not match the catalog (size {size}, sha256 {checksum})",
                image.id
            )));
        }
        Ok(())
    }
}

/// Whether `resp` carries the file from byte `from` on: `206 Partial
/// Content` with a `Content-Range: bytes FROM-...` (anything else, e.g. a
/// `200` with the whole file, means starting over).
fn resumes_at(resp: &reqwest::Response, from: u64) -> bool {
    resp.status() == StatusCode::PARTIAL_CONTENT
        && resp
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split_once('-'))
            .and_then(|(start, _)| start.parse::<u64>().ok())
            == Some(from)
}

/// Records a use of a cached image (its modification time), for the LRU.
fn mark_used(path: &Path) {
    let touched =
        std::fs::File::open(path).and_then(|f| f.set_modified(std::time::SystemTime::now()));
    if let Err(e) = touched {
        tracing::debug!(path = %path.display(), error = %e, "cannot record an image's use");
    }
}

pub mod sweep;
#[cfg(test)]
mod tests;
