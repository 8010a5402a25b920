//! Starting, finding and ending QEMU processes.
//!
//! QEMU runs with `-daemonize`: it detaches into its own session, so it keeps
//! running when the agent stops or is killed, and the agent adopts it again
//! from its pidfile on return.

use super::{VmConfig, QEMU_BINARY};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::time::Duration;

/// A QEMU process of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QemuProcess {
    pub pid: i32,
}

/// Why QEMU did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot run {QEMU_BINARY}: {0}")]
    Spawn(std::io::Error),
    #[error("QEMU failed to start: {0}")]
    Failed(String),
    #[error("QEMU started but left no usable pidfile: {0}")]
    Pidfile(String),
}

impl QemuProcess {
    /// Starts QEMU and returns once it has daemonized, i.e. its QMP socket
    /// is listening and the pidfile is written.
    pub async fn start(config: &VmConfig) -> Result<Self, StartError> {
        let _ = tokio::fs::remove_file(&config.qmp_socket).await;
        let _ = tokio::fs::remove_file(&config.vnc_socket).await;
        let _ = tokio::fs::remove_file(&config.pidfile).await;
        let output = tokio::process::Command::new(QEMU_BINARY)
            .args(config.args())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(StartError::Spawn)?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr = stderr.trim();
            return Err(StartError::Failed(if stderr.is_empty() {
                format!("exited with {}", output.status)
            } else {
                stderr.to_owned()
            }));
        }
        Self::from_pidfile(&config.pidfile, &config.uuid)
            .ok_or_else(|| StartError::Pidfile(config.pidfile.display().to_string()))
    }

    /// The live QEMU process recorded in `pidfile`, if it really is the QEMU
    /// of instance `uuid` (a recycled pid belonging to something else is not).
    pub fn from_pidfile(pidfile: &Path, uuid: &str) -> Option<Self> {
        let pid: i32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let mut args = cmdline.split(|b| *b == 0);
        let ours = args.any(|a| a == b"-uuid") && args.next() == Some(uuid.as_bytes());
        ours.then_some(Self { pid })
    }

    /// Whether the process still exists (and is not a zombie).
    pub fn is_alive(self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            // The state letter follows the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Kills the process and waits (briefly) until it is gone.
    pub async fn kill(self) {
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        self.wait_gone(Duration::from_secs(10)).await;
    }

    /// Waits until the process has exited, up to `limit`. True if it did.
    pub async fn wait_gone(self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.is_alive() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}
