//! Per-instance uids: chosen once, recorded in the instance directory.

use super::Jails;
use crate::layout::InstanceFiles;
use nubis_api::ServerId;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The first uid (and gid) given to a QEMU: 0x7000_0000, above the ranges
/// systemd hands to users, dynamic users and containers, so no account or
/// user namespace of the host shares it.
pub const FIRST_UID: u32 = 0x7000_0000;
/// How many uids the range holds. An instance's uid starts at a hash of its
/// id, so agents of separate data dirs on one host (tests) rarely meet, and
/// one agent never gives a uid in use to a second instance.
pub const UID_COUNT: u32 = 1 << 24;

/// The agent's record of an instance's jail (`jail.json`, root-owned, in the
/// instance directory).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailRecord {
    pub uid: u32,
    pub gid: u32,
    /// The cgroup leaf directories made for it, removed with it.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
}

impl JailRecord {
    /// The record in `files`, if there is a readable one.
    pub fn load(files: &InstanceFiles) -> Option<Self> {
        let bytes = std::fs::read(files.jail_record()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes the record atomically (temp file + rename).
    pub fn save(&self, files: &InstanceFiles) -> std::io::Result<()> {
        let temp = files.dir.join("jail.json.tmp");
        std::fs::write(&temp, serde_json::to_vec(self).expect("record serializes"))?;
        std::fs::rename(&temp, files.jail_record())
    }
}

/// The uid/gid of instance `id`: the recorded one, else a new one no other
/// instance of this agent has, recorded before it is returned.
pub fn identity(jails: &Jails, id: ServerId, files: &InstanceFiles) -> std::io::Result<JailRecord> {
    if let Some(record) = JailRecord::load(files) {
        return Ok(record);
    }
    let _guard = jails.allocation_lock();
    let instances = files.dir.parent().unwrap_or(Path::new("."));
    let taken: HashSet<u32> = std::fs::read_dir(instances)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path() != files.dir)
        .filter_map(|e| JailRecord::load(&InstanceFiles { dir: e.path() }))
        .map(|r| r.uid)
        .collect();
    let uid = pick(id, &taken);
    let record = JailRecord {
        uid,
        gid: uid,
        cgroups: Vec::new(),
    };
    std::fs::create_dir_all(&files.dir)?;
    record.save(files)?;
    Ok(record)
}

/// The first free uid from the hash of `id` on (wrapping in the range).
fn pick(id: ServerId, taken: &HashSet<u32>) -> u32 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.to_string().as_bytes());
    let start = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % UID_COUNT;
    (0..UID_COUNT)
        .map(|i| FIRST_UID + (start + i) % UID_COUNT)
        .find(|uid| !taken.contains(uid))
        .expect("fewer instances than uids")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;

    #[test]
    fn uids_are_recorded_and_never_shared() {
        let data = tempfile::tempdir().unwrap();
        let layout = Layout::new(data.path());
        let jails = Jails::default();
        let a: ServerId = "0b7f9f51-5a4e-4b8e-9a51-3f0c2d6f4e11".parse().unwrap();
        let first = identity(&jails, a, &layout.instance(a)).unwrap();
        assert!(first.uid >= FIRST_UID && first.uid < FIRST_UID + UID_COUNT);
        assert_eq!(first.gid, first.uid);
        // Asked again (an agent restart): the same.
        assert_eq!(identity(&jails, a, &layout.instance(a)).unwrap(), first);
        // Another instance whose hash lands on the same uid moves on.
        let taken: HashSet<u32> = [first.uid].into();
        assert_ne!(pick(a, &taken), first.uid);
        assert_eq!(
            pick(a, &taken),
            FIRST_UID + (first.uid - FIRST_UID + 1) % UID_COUNT
        );
        let b: ServerId = "1b7f9f51-5a4e-4b8e-9a51-3f0c2d6f4e12".parse().unwrap();
        let second = identity(&jails, b, &layout.instance(b)).unwrap();
        assert_ne!(second.uid, first.uid);
    }
}
