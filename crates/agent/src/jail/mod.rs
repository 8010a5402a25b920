//! QEMU's jail: what each instance's QEMU runs as and what it can reach.
//!
//! Like Firecracker's jailer, the agent itself sets the jail up between
//! fork and exec (see [`spawn::Confinement`]): a new session, the
//! instance's cgroup leaf, a private mount namespace in which only the
//! instance's `vm/` directory appears (at [`JAIL_DIR`]), then no
//! supplementary groups (only `kvm` under KVM) and the instance's own
//! uid/gid. QEMU then enables its full seccomp sandbox, which forbids
//! changing ids and spawning, so it could not daemonize itself.
//!
//! **One uid/gid per instance** ([`FIRST_UID`] onwards), not one shared
//! `nubis-qemu` user: with a shared uid, plain file modes cannot keep one
//! QEMU out of another's disk (libvirt needs SELinux/AppArmor labels on top
//! of its dynamic ownership for that). The uid is recorded in the
//! instance directory ([`JailRecord`], root-owned), so an agent adopting a
//! running QEMU after a restart, or booting the instance again, uses the
//! same one.
//!
//! **Files.** The instance directory stays root's (0700): the agent's notes
//! in it (state, pidfile, this record, the serial console log the agent
//! writes) must not be forgeable by a QEMU. QEMU's own files — disk,
//! config drive, kernel and initrd copies, serial, QMP and VNC sockets —
//! are in `vm/`, owned by the instance
//! uid (0700, files 0600), bind-mounted at [`JAIL_DIR`] in QEMU's mount
//! namespace (the real path may sit under a 0700 directory such as
//! root's home). Cached base images stay root's (0600) and reach QEMU only
//! as read-only file descriptors (`-add-fd` + `/dev/fdset/N`), as do the
//! TAP devices (`-netdev tap,fd=N`), so a QEMU can read exactly the images
//! it was given. The agent never follows a link QEMU could have planted in
//! `vm/`: it writes files next to it and renames them in, and opens or
//! connects to what is there with `O_NOFOLLOW` ([`safe_fs`]).

pub mod cgroup;
pub mod fds;
pub mod ids;
pub mod safe_fs;
pub mod spawn;

pub use cgroup::{Cgroups, Leaf, Limits};
pub use ids::{JailRecord, FIRST_UID, UID_COUNT};

use std::sync::{Arc, OnceLock};

/// Where a QEMU sees its instance's `vm/` directory, inside its own mount
/// namespace (an empty directory in the host's).
pub const JAIL_DIR: &str = "/run/nubis/jail";

/// What every instance's jail shares on one host.
#[derive(Clone, Default)]
pub struct Jails {
    inner: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    cgroups: OnceLock<Cgroups>,
    kvm_gid: OnceLock<Option<u32>>,
    /// Serialises uid allocation among the agent's instance actors.
    allocation: std::sync::Mutex<()>,
}

impl Jails {
    /// The host's cgroups, probed (and the `nubis` parents made) on first use.
    pub fn cgroups(&self) -> &Cgroups {
        self.inner.cgroups.get_or_init(|| {
            let cgroups = Cgroups::probe_host();
            if let Err(e) = cgroups.prepare() {
                tracing::warn!(error = %e, "cannot prepare QEMU cgroups");
            }
            cgroups
        })
    }

    /// The `kvm` group, which QEMU needs to open `/dev/kvm`.
    pub fn kvm_gid(&self) -> Option<u32> {
        *self.inner.kvm_gid.get_or_init(|| {
            nix::unistd::Group::from_name("kvm")
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
        })
    }

    pub(crate) fn allocation_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .allocation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
