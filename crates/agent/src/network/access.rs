//! Whether an unprivileged user can read a file: helpers such as dnsmasq
//! drop to `nobody` before they read their files (and again on every
//! reload), so a file under a private directory (root's home is 0700) is
//! invisible to them. Checked before each start or reload, so the failure
//! is a clear fault instead of a guest silently left without an address.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The identity a helper runs as after dropping privileges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// Checks that `who` can traverse every directory above `file` and read
/// `file`, from the owners and mode bits (the kernel's rule for a process
/// without supplementary groups; ACLs are not consulted). The error names
/// the first path that stops it.
pub fn check_readable(file: &Path, who: Identity) -> Result<(), String> {
    let file = std::path::absolute(file).map_err(|e| format!("{}: {e}", file.display()))?;
    for dir in file.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !allowed(&meta, who, EXECUTE) {
            return Err(format!(
                "uid {} cannot enter {} (mode {:o}, owner {}:{})",
                who.uid,
                dir.display(),
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid()
            ));
        }
    }
    let meta = std::fs::metadata(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    if !allowed(&meta, who, READ) {
        return Err(format!(
            "uid {} cannot read {} (mode {:o}, owner {}:{})",
            who.uid,
            file.display(),
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid()
        ));
    }
    Ok(())
}

const READ: u32 = 0o4;
const EXECUTE: u32 = 0o1;

/// The permission class that applies to `who` (owner, group, other) grants `bit`.
fn allowed(meta: &std::fs::Metadata, who: Identity, bit: u32) -> bool {
    if who.uid == 0 {
        return true;
    }
    let mode = meta.mode();
    let shift = if meta.uid() == who.uid {
        6
    } else if meta.gid() == who.gid {
        3
    } else {
        0
    };
    (mode >> shift) & bit != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const NOBODY: Identity = Identity {
        uid: 65534,
        gid: 65534,
    };

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_file_under_a_private_directory_is_refused_and_named() {
        let top = tempfile::tempdir().unwrap();
        chmod(top.path(), 0o755);
        let private = top.path().join("home");
        let data = private.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let file = data.join("dhcp-hosts");
        std::fs::write(&file, "x").unwrap();
        chmod(&data, 0o755);
        chmod(&file, 0o644);

        // Positive control: every directory open, the file is readable.
        chmod(&private, 0o755);
        assert_eq!(check_readable(&file, NOBODY), Ok(()));

        chmod(&private, 0o700);
        let err = check_readable(&file, NOBODY).unwrap_err();
        assert!(err.contains("cannot enter"), "{err}");
        assert!(err.contains(&private.display().to_string()), "{err}");
    }

    #[test]
    fn an_unreadable_file_is_refused() {
        let top = tempfile::tempdir().unwrap();
        chmod(top.path(), 0o755);
        let file = top.path().join("dns-hosts");
        std::fs::write(&file, "x").unwrap();
        chmod(&file, 0o600);
        let err = check_readable(&file, NOBODY).unwrap_err();
        assert!(err.contains("cannot read"), "{err}");
        // The group class applies when the file's group is the helper's.
        let group = Identity {
            uid: NOBODY.uid,
            gid: std::fs::metadata(&file).unwrap().gid(),
        };
        chmod(&file, 0o640);
        assert_eq!(check_readable(&file, group), Ok(()));
        assert!(check_readable(&file, NOBODY).is_err());
    }

    #[test]
    fn a_missing_file_is_refused() {
        let top = tempfile::tempdir().unwrap();
        chmod(top.path(), 0o755);
        let err = check_readable(&top.path().join("none"), NOBODY).unwrap_err();
        assert!(err.contains("none"), "{err}");
    }
}
