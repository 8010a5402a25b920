//! Where an agent keeps things under its data directory.

use nubis_api::ServerId;
use std::path::PathBuf;

/// The agent's directories.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Cached base images.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// Per-network state (dnsmasq files).
    pub fn networks(&self) -> PathBuf {
        self.root.join("networks")
    }

    /// One directory per instance.
    pub fn instances(&self) -> PathBuf {
        self.root.join("instances")
    }

    pub fn instance(&self, id: ServerId) -> InstanceFiles {
        InstanceFiles {
            dir: self.instances().join(id.to_string()),
        }
    }

    /// Ids of the instance directories present on disk.
    pub fn present_instances(&self) -> Vec<ServerId> {
        std::fs::read_dir(self.instances())
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Everything of one instance lives in its directory, so deleting the
/// directory leaves nothing behind. The directory is root's (0700) and
/// holds the agent's notes; what QEMU uses is in `vm/`, owned by the
/// instance's uid and seen by QEMU at [`crate::jail::JAIL_DIR`].
#[derive(Clone, Debug)]
pub struct InstanceFiles {
    pub dir: PathBuf,
}

impl InstanceFiles {
    /// QEMU's own directory (see [`crate::jail`]).
    pub fn vm_dir(&self) -> PathBuf {
        self.dir.join("vm")
    }
    pub fn disk(&self) -> PathBuf {
        self.vm_dir().join("disk.qcow2")
    }
    pub fn qmp_socket(&self) -> PathBuf {
        self.vm_dir().join("qmp.sock")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    /// QEMU's VNC server (the graphical console), reachable only here.
    pub fn vnc_socket(&self) -> PathBuf {
        self.vm_dir().join("vnc.sock")
    }
    /// The serial console's log, kept bounded by the agent (`serial_log`),
    /// which writes it as root: outside `vm/`, where QEMU could plant links.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// QEMU's serial console socket, which the agent reads; in `vm/`, where
    /// the unprivileged QEMU can create it.
    pub fn serial_socket(&self) -> PathBuf {
        self.vm_dir().join("serial.sock")
    }
    /// The config drive (`config-2`, VFAT).
    pub fn config_drive(&self) -> PathBuf {
        self.vm_dir().join("config.img")
    }
    /// The agent's own notes about the instance (see `InstanceState`).
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    /// The uid/gid and cgroup leaf of its QEMU (see [`crate::jail::JailRecord`]).
    pub fn jail_record(&self) -> PathBuf {
        self.dir.join("jail.json")
    }
    /// QEMU's standard error (its start-up complaints).
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
    /// Where a file of `vm/` appears to QEMU, inside its mount namespace.
    pub fn jailed(&self, path: &std::path::Path) -> PathBuf {
        let name = path.strip_prefix(self.vm_dir()).unwrap_or(path);
        std::path::Path::new(crate::jail::JAIL_DIR).join(name)
    }
}
