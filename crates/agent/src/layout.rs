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
/// directory leaves nothing behind.
#[derive(Clone, Debug)]
pub struct InstanceFiles {
    pub dir: PathBuf,
}

impl InstanceFiles {
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk.qcow2")
    }
    pub fn qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    /// QEMU's VNC server (the graphical console), reachable only here.
    pub fn vnc_socket(&self) -> PathBuf {
        self.dir.join("vnc.sock")
    }
    /// The serial console's log, kept bounded by the agent (`serial_log`).
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// QEMU's serial console socket, which the agent reads.
    pub fn serial_socket(&self) -> PathBuf {
        self.dir.join("serial.sock")
    }
    /// The config drive (`config-2`, VFAT).
    pub fn config_drive(&self) -> PathBuf {
        self.dir.join("config.img")
    }
    /// The agent's own notes about the instance (see `InstanceState`).
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
}
