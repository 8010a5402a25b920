//! Where an agent keeps things under its data directory.

use nubis_api::ServerId;
use std::path::PathBuf;

/// The agent's directories.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
    /// `--shared-instance-store`: instance directories live there, shared
    /// with other hosts; this host's own are the ones it claims.
    pub shared: Option<PathBuf>,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            shared: None,
        }
    }

    /// Instance directories in the shared store at `path`.
    pub fn with_shared_store(mut self, path: Option<PathBuf>) -> Self {
        self.shared = path;
        self
    }

    /// This host's claims on instance directories of the shared store: one
    /// empty file per instance, so that a directory other hosts see is
    /// never taken for one of this host's.
    pub fn claims(&self) -> PathBuf {
        self.root.join("claims")
    }

    /// Records that instance `id` of the shared store is this host's (no-op
    /// without a shared store).
    pub fn claim(&self, id: ServerId) -> std::io::Result<()> {
        if self.shared.is_none() {
            return Ok(());
        }
        std::fs::create_dir_all(self.claims())?;
        std::fs::write(self.claims().join(id.to_string()), b"")
    }

    /// Drops this host's claim on instance `id`.
    pub fn unclaim(&self, id: ServerId) {
        let _ = std::fs::remove_file(self.claims().join(id.to_string()));
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
        match &self.shared {
            Some(shared) => shared.join("instances"),
            None => self.root.join("instances"),
        }
    }

    pub fn instance(&self, id: ServerId) -> InstanceFiles {
        InstanceFiles {
            dir: self.instances().join(id.to_string()),
        }
    }

    /// Ids of the instance directories present on disk.
    /// With a shared store, those this host claims.
    pub fn present_instances(&self) -> Vec<ServerId> {
        let dir = match &self.shared {
            Some(_) => self.claims(),
            None => self.instances(),
        };
        std::fs::read_dir(dir)
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
