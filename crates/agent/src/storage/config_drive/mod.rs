//! Config drives: a small VFAT image attached to an instance from which
//! cloud-init (or any OpenStack-aware agent) reads the instance's metadata,
//! keys, user data and network configuration before it has a network.
//!
//! Two layouts are written:
//!
//! - [`DriveFlavor::ConfigDrive2`]: OpenStack's `config-2` layout, as Nova
//!   writes it with `mkfs.vfat -n config-2`.
//! - [`DriveFlavor::NoCloud`]: cloud-init's NoCloud seed, label `cidata`.
//!
//! The image is built in memory with `fatfs` (no `mkfs.vfat`/`mtools` at run
//! time) and then written atomically. Timestamps are fixed at 1980-01-01 and
//! the volume id is derived from the content, so the same content always gives
//! the same bytes.

use anyhow::Context;
use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What goes on a config drive (OpenStack config-2 layout).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigDrive {
    /// `openstack/{latest,2012-08-10}/meta_data.json`. Must be a JSON object
    /// with a string `uuid` (cloud-init refuses metadata without one); its
    /// `hostname` and `public_keys` also feed NoCloud's `meta-data`.
    pub meta_data: Value,
    /// `openstack/{latest,2012-08-10}/user_data`, raw; omitted when `None`.
    pub user_data: Option<Vec<u8>>,
    /// `openstack/{latest,2012-08-10}/network_data.json`. `null` or `{}`
    /// omits the file, so cloud-init falls back to DHCP on the first NIC.
    pub network_data: Value,
    /// `openstack/{latest,2012-08-10}/vendor_data.json` (`{}` usually;
    /// `null` is written as `{}`).
    pub vendor_data: Value,
}

/// The layout (and volume label) of the drive. Also the NoCloud seed (label
/// `cidata`: files `meta-data`, `user-data`, `network-config`) for images
/// that want it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriveFlavor {
    /// Label `config-2`, files under `openstack/`.
    ConfigDrive2,
    /// Label `cidata`, files `meta-data`, `user-data`, optionally
    /// `network-config` (netplan-style version 2, see [`write`]) and
    /// `vendor-data`.
    NoCloud,
}

impl DriveFlavor {
    /// The volume label. Lowercase, as Nova and cloud-localds write them:
    /// cloud-init matches labels case-sensitively against `config-2`/`CONFIG-2`
    /// and `cidata`/`CIDATA`, and blkid reports the bytes as stored.
    pub fn label(self) -> &'static str {
        match self {
            DriveFlavor::ConfigDrive2 => "config-2",
            DriveFlavor::NoCloud => "cidata",
        }
    }
}

/// Smallest image written. Nova's vfat drives are always 64 MiB, but a few
/// files need far less, and the image is built in memory and written in full.
const MIN_SIZE: u64 = 2 << 20;
/// Largest image written: Nova's config drive size. fatfs formats images
/// this small as FAT12/FAT16, which every guest reads.
const MAX_SIZE: u64 = 64 << 20;
const MIB: u64 = 1 << 20;
/// Space reserved per file and directory beyond its content: cluster
/// rounding (at most 2 KiB here) and directory entries.
const PER_ENTRY_SLACK: u64 = 4096;
/// Space for the boot sector, both FATs and the root directory.
const FS_OVERHEAD: u64 = MIB;

/// OpenStack metadata versions written. cloud-init reads every file from the
/// newest dated version present (falling back to `latest` only when none
/// is), so the dated directory carries the full set, not just
/// `meta_data.json`.
const OPENSTACK_VERSIONS: [&str; 2] = ["2012-08-10", "latest"];

/// Link types cloud-init treats as a physical NIC (its
/// `KNOWN_PHYSICAL_TYPES`; a missing type counts too).
const PHYSICAL_LINK_TYPES: &[&str] = &[
    "bgpovs",
    "bridge",
    "cascading",
    "dvs",
    "ethernet",
    "hw_veb",
    "hyperv",
    "ovs",
    "phy",
    "tap",
    "vhostuser",
    "vif",
];

/// Writes the drive image to `path`: built in `path.with_extension("tmp")`,
/// then renamed, so `path` is either absent, the old image or the complete
/// new one. The file is mode 0600: user data may hold secrets.
///
/// For [`DriveFlavor::NoCloud`], `network-config` is cloud-init network
/// config version 2 converted from `network_data` (links, static and DHCP
/// networks, routes, DNS; bonds are refused), written as JSON restricted to
/// what is also valid YAML (cloud-init parses the file as YAML). `meta-data`
/// holds `instance-id` (from `uuid`), `local-hostname` (from `hostname`) and
/// `public-keys` (from `public_keys`, an object or list of keys).
/// `vendor-data` is written when `vendor_data` is a string or has a string
/// `cloud-init` key, as cloud-init reads OpenStack vendor data.
pub fn write(path: &Path, drive: &ConfigDrive, flavor: DriveFlavor) -> anyhow::Result<()> {
    let files = match flavor {
        DriveFlavor::ConfigDrive2 => config_drive2_files(drive),
        DriveFlavor::NoCloud => nocloud_files(drive),
    }
    .with_context(|| format!("preparing {} config drive", flavor.label()))?;
    let image = build_image(flavor.label(), &files)
        .with_context(|| format!("building {} config drive image", flavor.label()))?;
    write_atomically(path, &image)
}

/// One file of the drive: a '/'-separated path and its content.
type DriveFile = (String, Vec<u8>);

fn config_drive2_files(drive: &ConfigDrive) -> anyhow::Result<Vec<DriveFile>> {
    instance_uuid(&drive.meta_data)?;
    let meta_data = serde_json::to_vec(&drive.meta_data).context("serializing meta_data")?;
    let vendor_data = if drive.vendor_data.is_null() {
        b"{}".to_vec()
    } else {
        serde_json::to_vec(&drive.vendor_data).context("serializing vendor_data")?
    };
    let network_data = if is_empty_json(&drive.network_data) {
        None
    } else {
        Some(serde_json::to_vec(&drive.network_data).context("serializing network_data")?)
    };
    let mut files = Vec::new();
    for version in OPENSTACK_VERSIONS {
        let dir = format!("openstack/{version}");
        files.push((format!("{dir}/meta_data.json"), meta_data.clone()));
        if let Some(user_data) = &drive.user_data {
            files.push((format!("{dir}/user_data"), user_data.clone()));
        }
        files.push((format!("{dir}/vendor_data.json"), vendor_data.clone()));
        if let Some(network_data) = &network_data {
            files.push((format!("{dir}/network_data.json"), network_data.clone()));
        }
    }
    Ok(files)
}

mod fat;
mod nocloud;
#[cfg(test)]
mod tests;

use fat::*;
use nocloud::*;

/// Writes `bytes` to a temporary sibling of `path` and renames it over
/// `path`. The temporary file is removed on failure. No fsync: the agent
/// writes the drive afresh before every boot, so a copy lost in a crash is
/// simply made again (and the sync cost milliseconds on every create).
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut temp = path.with_extension("tmp");
    if temp == path {
        temp = path.with_extension("tmp.tmp");
    }
    let result = (|| -> anyhow::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .with_context(|| format!("creating {}", temp.display()))?;
        file.write_all(bytes)
            .with_context(|| format!("writing {}", temp.display()))?;
        std::fs::rename(&temp, path)
            .with_context(|| format!("renaming {} to {}", temp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}
