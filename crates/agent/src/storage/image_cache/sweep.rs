//! Keeping the image cache bounded. A sweep removes, in this order:
//!
//! 1. images the controller no longer lists (deleted), and their partial
//!    downloads, unless an instance here still uses them;
//! 2. while the cache holds more than its limit, the least recently used
//!    image that no instance here uses.
//!
//! An image is never removed while an instance in the desired state uses
//! it (as base, kernel, initrd or ISO; a stopped instance's overlay needs
//! its base too), nor while its lock is held (a download, or an instance
//! being handed its path): the sweep only *tries* each image's lock and
//! skips it when busy, and holds the lock while it removes the file, so
//! a concurrent `ensure` either finds the file or downloads it again.

use super::ImageCache;
use nubis_api::agent::InstanceSpec;
use nubis_api::ImageId;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::SystemTime;

/// What one sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Images removed because the controller no longer lists them.
    pub deleted: Vec<ImageId>,
    /// Images evicted to bring the cache under its limit.
    pub evicted: Vec<ImageId>,
    /// Bytes the cache holds afterwards.
    pub bytes: u64,
}

/// The images the given instances use.
pub fn images_in_use(instances: &[InstanceSpec]) -> HashSet<ImageId> {
    let mut used = HashSet::new();
    for spec in instances {
        used.insert(spec.disk_image.id);
        used.extend(spec.kernel.iter().map(|i| i.id));
        used.extend(spec.initrd.iter().map(|i| i.id));
        used.extend(spec.cdrom.iter().map(|i| i.id));
    }
    used
}

/// A file in the cache directory: a cached image or a partial download.
struct Entry {
    id: ImageId,
    path: PathBuf,
    bytes: u64,
    last_use: SystemTime,
    partial: bool,
}

impl ImageCache {
    /// Sweeps the cache against the controller's catalog and the images
    /// `instances` (the host's desired state) use; logs what it cannot do.
    pub async fn tidy(&self, instances: &[InstanceSpec]) {
        let catalog = match self.client.image_catalog().await {
            Ok(ids) => Some(ids.into_iter().collect::<HashSet<_>>()),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot fetch the image catalog; evicting by size only");
                None
            }
        };
        if let Err(e) = self
            .sweep(&images_in_use(instances), catalog.as_ref())
            .await
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot sweep the image cache");
        }
    }

    /// Sweeps the cache (see the module documentation). `catalog` is the
    /// controller's list of images; `None` (it did not answer) skips step 1.
    pub async fn sweep(
        &self,
        in_use: &HashSet<ImageId>,
        catalog: Option<&HashSet<ImageId>>,
    ) -> std::io::Result<Swept> {
        let mut entries = self.entries().await?;
        let mut swept = Swept::default();
        let deleted = |e: &Entry| catalog.is_some_and(|c| !c.contains(&e.id));
        let mut kept = Vec::new();
        for entry in entries.drain(..) {
            if deleted(&entry) && !in_use.contains(&entry.id) && self.remove(&entry).await {
                if !entry.partial {
                    swept.deleted.push(entry.id);
                }
            } else {
                kept.push(entry);
            }
        }
        let mut bytes: u64 = kept.iter().map(|e| e.bytes).sum();
        // Oldest use first; partial downloads are never evicted for size
        // (they are being fetched for an instance that needs them).
        kept.sort_by_key(|e| e.last_use);
        for entry in &kept {
            if bytes <= self.limit_bytes {
                break;
            }
            if entry.partial || in_use.contains(&entry.id) {
                continue;
            }
            if self.remove(entry).await {
                bytes -= entry.bytes;
                swept.evicted.push(entry.id);
            }
        }
        swept.bytes = bytes;
        Ok(swept)
    }

    /// Removes an entry if its image's lock is free; whether it did.
    async fn remove(&self, entry: &Entry) -> bool {
        let lock = self.locks.lock().await.entry(entry.id).or_default().clone();
        let Ok(_guard) = lock.try_lock() else {
            return false; // Downloading or being handed out: not now.
        };
        match tokio::fs::remove_file(&entry.path).await {
            Ok(()) => {
                tracing::info!(image = %entry.id, bytes = entry.bytes, partial = entry.partial,
                    "removed an image from the cache");
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => {
                tracing::warn!(path = %entry.path.display(), error = %e, "cannot remove a cached image");
                false
            }
        }
    }

    /// Every cached image and partial download, with size and last use.
    async fn entries(&self) -> std::io::Result<Vec<Entry>> {
        let mut dir = match tokio::fs::read_dir(&self.dir).await {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        while let Some(item) = dir.next_entry().await? {
            let name = item.file_name().to_string_lossy().into_owned();
            // `{id}.{format}`, or `.download-{id}` (see `path`, `partial_path`).
            let (id, partial) = match name.strip_prefix(".download-") {
                Some(id) => (id, true),
                None => (
                    name.split_once('.').map_or(name.as_str(), |(id, _)| id),
                    false,
                ),
            };
            let Ok(id) = id.parse::<ImageId>() else {
                continue; // Not ours.
            };
            let Ok(meta) = item.metadata().await else {
                continue; // Removed meanwhile.
            };
            out.push(Entry {
                id,
                path: item.path(),
                bytes: meta.len(),
                last_use: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                partial,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller_client::ControllerClient;
    use std::time::Duration;

    /// A cache over `dir` (nothing is downloaded in these tests).
    fn cache(dir: &std::path::Path, limit: u64) -> ImageCache {
        let client =
            ControllerClient::with_http("http://127.0.0.1:9", reqwest::Client::new()).unwrap();
        ImageCache::new(dir.to_owned(), client).with_limit(limit)
    }

    /// Puts a cached image of `bytes` bytes, last used `age` ago.
    fn put(dir: &std::path::Path, bytes: usize, age: Duration) -> (ImageId, PathBuf) {
        let id = ImageId::new();
        let path = dir.join(format!("{id}.qcow2"));
        std::fs::write(&path, vec![0u8; bytes]).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
        (id, path)
    }

    #[tokio::test]
    async fn evicts_least_recently_used_unused_images_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        let (oldest, oldest_path) = put(dir.path(), 1000, 4 * hour);
        let (used, used_path) = put(dir.path(), 1000, 5 * hour);
        let (middle, middle_path) = put(dir.path(), 1000, 2 * hour);
        let (newest, newest_path) = put(dir.path(), 1000, hour);
        let cache = cache(dir.path(), 2500);
        let in_use = HashSet::from([used]);
        let swept = cache.sweep(&in_use, None).await.unwrap();
        // 4000 bytes > 2500: the oldest unused two go; the older but used
        // one stays, and so does the newest.
        assert_eq!(swept.evicted, vec![oldest, middle]);
        assert_eq!(swept.bytes, 2000);
        assert!(!oldest_path.exists() && !middle_path.exists());
        assert!(used_path.exists() && newest_path.exists());
        // Positive control: under the limit nothing more goes.
        let again = cache.sweep(&in_use, None).await.unwrap();
        assert_eq!(
            again,
            Swept {
                bytes: 2000,
                ..Swept::default()
            }
        );
        let _ = newest;
    }

    #[tokio::test]
    async fn a_use_makes_an_image_recent() {
        let dir = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        let (a, a_path) = put(dir.path(), 1000, 3 * hour);
        let (b, _) = put(dir.path(), 1000, 2 * hour);
        super::super::mark_used(&a_path);
        let swept = cache(dir.path(), 1500)
            .sweep(&HashSet::new(), None)
            .await
            .unwrap();
        assert_eq!(swept.evicted, vec![b], "a was used just now");
        assert!(a_path.exists());
        let _ = a;
    }

    #[tokio::test]
    async fn deleted_images_go_unless_in_use_or_locked() {
        let dir = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        let (kept, kept_path) = put(dir.path(), 10, hour);
        let (gone, gone_path) = put(dir.path(), 10, hour);
        let (used, used_path) = put(dir.path(), 10, hour);
        let (busy, busy_path) = put(dir.path(), 10, hour);
        let partial_id = ImageId::new();
        let partial = dir.path().join(format!(".download-{partial_id}"));
        std::fs::write(&partial, b"half").unwrap();
        std::fs::write(dir.path().join("unrelated"), b"x").unwrap();
        let cache = cache(dir.path(), 1 << 30);
        // An image being downloaded holds its lock.
        let lock = cache.locks.lock().await.entry(busy).or_default().clone();
        let guard = lock.lock().await;
        let catalog = HashSet::from([kept]);
        let swept = cache
            .sweep(&HashSet::from([used]), Some(&catalog))
            .await
            .unwrap();
        assert_eq!(swept.deleted, vec![gone]);
        assert!(!gone_path.exists() && !partial.exists());
        assert!(kept_path.exists() && used_path.exists() && busy_path.exists());
        assert!(
            dir.path().join("unrelated").exists(),
            "not ours: left alone"
        );
        // Once the lock is free, the deleted image goes too.
        drop(guard);
        let swept = cache
            .sweep(&HashSet::from([used]), Some(&catalog))
            .await
            .unwrap();
        assert_eq!(swept.deleted, vec![busy]);
        assert!(!busy_path.exists());
        // The controller not answering (None) removes nothing.
        let swept = cache.sweep(&HashSet::new(), None).await.unwrap();
        assert!(swept.deleted.is_empty() && used_path.exists());
    }
}
