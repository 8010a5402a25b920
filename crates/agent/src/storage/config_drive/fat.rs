//! Building the VFAT image in memory with fatfs, and mending the directory
//! entries fatfs 0.3.6 writes out of order.

use super::*;
use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::io::{Cursor, Write};

/// The image size for `files`: [`MIN_SIZE`] or, for more content, whole MiB
/// with room for cluster rounding and metadata.
pub(super) fn image_size(files: &[DriveFile]) -> anyhow::Result<u64> {
    let dirs: std::collections::BTreeSet<&str> = files
        .iter()
        .flat_map(|(path, _)| path.match_indices('/').map(move |(i, _)| &path[..i]))
        .collect();
    let mut needed = FS_OVERHEAD.saturating_add(PER_ENTRY_SLACK.saturating_mul(dirs.len() as u64));
    for (_, data) in files {
        let len = data.len() as u64;
        needed = needed.saturating_add(
            len.div_ceil(PER_ENTRY_SLACK)
                .saturating_mul(PER_ENTRY_SLACK),
        );
        needed = needed.saturating_add(PER_ENTRY_SLACK);
    }
    let size = needed.div_ceil(MIB).saturating_mul(MIB).max(MIN_SIZE);
    if size > MAX_SIZE {
        bail!(
            "the content needs a {} MiB image, more than the {} MiB a config drive may have",
            size / MIB,
            MAX_SIZE / MIB
        );
    }
    Ok(size)
}

/// Formats a VFAT image labelled `label` holding `files`.
pub(super) fn build_image(label: &str, files: &[DriveFile]) -> anyhow::Result<Vec<u8>> {
    let size = image_size(files)?;
    let len = usize::try_from(size).context("image size does not fit in memory")?;
    let mut image = vec![0u8; len];
    format_image(&mut image, label, volume_id(label, files))?;

    let options = fatfs::FsOptions::new().time_provider(&FIXED_TIME);
    let fs = fatfs::FileSystem::new(Cursor::new(&mut image[..]), options)
        .context("mounting the new image")?;
    {
        let root = fs.root_dir();
        for (path, data) in files {
            // Parents first: fatfs creates one level at a time.
            for (i, _) in path.match_indices('/') {
                root.create_dir(&path[..i])
                    .with_context(|| format!("creating directory {}", &path[..i]))?;
            }
            let mut file = root
                .create_file(path)
                .with_context(|| format!("creating {path}"))?;
            file.truncate()
                .with_context(|| format!("truncating {path}"))?;
            file.write_all(data)
                .with_context(|| format!("writing {path}"))?;
            file.flush().with_context(|| format!("writing {path}"))?;
        }
    }
    fs.unmount().context("unmounting the new image")?;
    fix_dot_entries(&mut image).context("fixing directory entries")?;
    Ok(image)
}

/// Stamps every file 1980-01-01 00:00 (the earliest FAT date), so images
/// are reproducible. fatfs's own default without chrono is the invalid
/// 1980-00-00.
#[derive(Debug)]
pub(super) struct FixedTime;

static FIXED_TIME: FixedTime = FixedTime;

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

/// Formats `image` as FAT12/16 with `label` both in the boot sector and as
/// the root directory's volume label entry, as mkfs.vfat does (Windows reads
/// only the latter; blkid prefers it and reports the boot sector's as
/// LABEL_FATBOOT).
pub(super) fn format_image(image: &mut [u8], label: &str, volume_id: u32) -> anyhow::Result<()> {
    let label = label_bytes(label)?;
    let options = fatfs::FormatVolumeOptions::new()
        .volume_label(label)
        .volume_id(volume_id);
    fatfs::format_volume(Cursor::new(image), options).context("formatting")
}

/// An 11-byte, space-padded FAT volume label.
pub(super) fn label_bytes(label: &str) -> anyhow::Result<[u8; 11]> {
    let mut out = [b' '; 11];
    if label.len() > out.len() || !label.is_ascii() {
        bail!("volume label {label:?} is not at most 11 ASCII characters");
    }
    for (slot, byte) in out.iter_mut().zip(label.bytes()) {
        *slot = byte;
    }
    Ok(out)
}

pub(super) const DIR_ENTRY: usize = 32;
pub(super) const ATTR_VOLUME_ID: u8 = 0x08;
pub(super) const ATTR_DIRECTORY: u8 = 0x10;
pub(super) const ATTR_LFN: u8 = 0x0F;
pub(super) const DELETED: u8 = 0xE5;
pub(super) const DOT: &[u8; 11] = b".          ";
pub(super) const DOTDOT: &[u8; 11] = b"..         ";

/// Where the parts of a FAT12/16 volume are, from its boot sector.
pub(super) struct FatLayout {
    fat12: bool,
    fat_start: usize,
    pub(super) root_start: usize,
    pub(super) root_len: usize,
    data_start: usize,
    cluster_size: usize,
    clusters: u32,
}

impl FatLayout {
    pub(super) fn read(image: &[u8]) -> anyhow::Result<Self> {
        let u16_at = |offset: usize| -> anyhow::Result<usize> {
            let bytes = image
                .get(offset..offset + 2)
                .context("image shorter than a boot sector")?;
            Ok(usize::from(u16::from_le_bytes([bytes[0], bytes[1]])))
        };
        let u8_at = |offset: usize| -> anyhow::Result<usize> {
            Ok(usize::from(
                *image
                    .get(offset)
                    .context("image shorter than a boot sector")?,
            ))
        };
        let bytes_per_sector = u16_at(11)?;
        let sectors_per_cluster = u8_at(13)?;
        let reserved_sectors = u16_at(14)?;
        let fats = u8_at(16)?;
        let root_entries = u16_at(17)?;
        let sectors_per_fat = u16_at(22)?;
        let total_sectors = match u16_at(19)? {
            0 => {
                let bytes = image
                    .get(32..36)
                    .context("image shorter than a boot sector")?;
                u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize
            }
            n => n,
        };
        if bytes_per_sector == 0 || sectors_per_cluster == 0 {
            bail!("boot sector has no geometry");
        }
        if root_entries == 0 || sectors_per_fat == 0 {
            bail!("not a FAT12/FAT16 volume");
        }
        let fat_start = reserved_sectors * bytes_per_sector;
        let root_start = fat_start + fats * sectors_per_fat * bytes_per_sector;
        let root_len = root_entries * DIR_ENTRY;
        let data_start = root_start + root_len.div_ceil(bytes_per_sector) * bytes_per_sector;
        let cluster_size = sectors_per_cluster * bytes_per_sector;
        let data_len = (total_sectors * bytes_per_sector).saturating_sub(data_start);
        let clusters = u32::try_from(data_len / cluster_size).context("cluster count")?;
        Ok(Self {
            // The FAT type follows from the cluster count alone.
            fat12: clusters < 4085,
            fat_start,
            root_start,
            root_len,
            data_start,
            cluster_size,
            clusters,
        })
    }

    /// The byte range of data cluster `cluster` (numbered from 2).
    pub(super) fn cluster(&self, cluster: u32) -> anyhow::Result<std::ops::Range<usize>> {
        if cluster < 2 || cluster - 2 >= self.clusters {
            bail!("cluster {cluster} is outside the volume");
        }
        let start = self.data_start + (cluster as usize - 2) * self.cluster_size;
        Ok(start..start + self.cluster_size)
    }

    /// The cluster after `cluster` in its chain, `None` at the end.
    fn next(&self, image: &[u8], cluster: u32) -> anyhow::Result<Option<u32>> {
        let n = cluster as usize;
        let (offset, end) = if self.fat12 {
            (n + n / 2, 0xFF8)
        } else {
            (n * 2, 0xFFF8)
        };
        let bytes = image
            .get(self.fat_start + offset..self.fat_start + offset + 2)
            .context("FAT entry outside the image")?;
        let raw = u32::from(u16::from_le_bytes([bytes[0], bytes[1]]));
        let value = match (self.fat12, n % 2) {
            (true, 0) => raw & 0xFFF,
            (true, _) => raw >> 4,
            (false, _) => raw,
        };
        Ok((value < end).then_some(value))
    }
}

/// First clusters of the subdirectories listed in `entries` (not `.`/`..`).
pub(super) fn subdirectories(entries: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in entries.chunks_exact(DIR_ENTRY) {
        match entry[0] {
            0 => break,
            DELETED | b'.' => continue,
            _ => {}
        }
        let attr = entry[11];
        if attr == ATTR_LFN || attr & ATTR_VOLUME_ID != 0 || attr & ATTR_DIRECTORY == 0 {
            continue;
        }
        out.push(u32::from(u16::from_le_bytes([entry[26], entry[27]])));
    }
    out
}

/// fatfs 0.3 writes a long-name entry before each subdirectory's `.` and
/// `..`, which must be its first two entries: fsck.vfat calls the result
/// broken (and with `-a` deletes the directories), Windows too. This moves
/// `.` and `..` into the first two slots and marks the two long-name slots
/// deleted.
pub(super) fn fix_dot_entries(image: &mut [u8]) -> anyhow::Result<()> {
    let layout = FatLayout::read(image)?;
    let root = image
        .get(layout.root_start..layout.root_start + layout.root_len)
        .context("root directory outside the image")?;
    let mut pending = subdirectories(root);
    let mut visited = 0u32;
    while let Some(dir) = pending.pop() {
        visited += 1;
        if visited > layout.clusters {
            bail!("directory tree has a cycle");
        }
        let first = layout.cluster(dir)?;
        let entries = image
            .get_mut(first)
            .context("directory outside the image")?;
        fix_dots(entries).with_context(|| format!("directory at cluster {dir}"))?;
        // Walk the whole chain for deeper directories.
        let mut cluster = Some(dir);
        let mut length = 0u32;
        while let Some(c) = cluster {
            length += 1;
            if length > layout.clusters {
                bail!("cluster chain of directory {dir} has a cycle");
            }
            let range = layout.cluster(c)?;
            let entries = image.get(range).context("directory outside the image")?;
            pending.extend(subdirectories(entries));
            cluster = layout.next(image, c)?;
        }
    }
    Ok(())
}

pub(super) fn fix_dots(entries: &mut [u8]) -> anyhow::Result<()> {
    let name = |i: usize| entries.get(i * DIR_ENTRY..i * DIR_ENTRY + 11);
    let attr = |i: usize| entries.get(i * DIR_ENTRY + 11).copied();
    if name(0) == Some(DOT) && name(1) == Some(DOTDOT) {
        return Ok(());
    }
    let expected = attr(0) == Some(ATTR_LFN)
        && name(1) == Some(DOT)
        && attr(2) == Some(ATTR_LFN)
        && name(3) == Some(DOTDOT);
    if !expected {
        bail!("unexpected layout of the . and .. entries");
    }
    entries.copy_within(DIR_ENTRY..2 * DIR_ENTRY, 0);
    entries.copy_within(3 * DIR_ENTRY..4 * DIR_ENTRY, DIR_ENTRY);
    let freed = &mut entries[2 * DIR_ENTRY..4 * DIR_ENTRY];
    freed.fill(0);
    freed[0] = DELETED;
    freed[DIR_ENTRY] = DELETED;
    Ok(())
}

/// The volume serial number (blkid's UUID): a hash of the content, so
/// drives differ between instances but a rebuild gives the same bytes.
pub(super) fn volume_id(label: &str, files: &[DriveFile]) -> u32 {
    let mut hash = Sha256::new();
    hash.update(label.as_bytes());
    for (path, data) in files {
        hash.update((path.len() as u64).to_le_bytes());
        hash.update(path.as_bytes());
        hash.update((data.len() as u64).to_le_bytes());
        hash.update(data);
    }
    let digest = hash.finalize();
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}
