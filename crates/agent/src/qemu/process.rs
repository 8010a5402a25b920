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
    #[error("QEMU did not finish starting within {} s; killed", QEMU_START_TIMEOUT.as_secs())]
    Timeout,
}

/// How long QEMU may take from spawn to daemonized (devices set up, disks
/// and TAPs opened, QMP socket listening; the guest is still paused). That
/// takes ~50 ms here under TCG and seconds on a host loaded with TCG guests;
/// a minute leaves room for a slow disk while a hung start is ended.
pub const QEMU_START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a SIGKILLed QEMU may take to disappear (the kernel frees its
/// guest memory first; a few GiB take well under a second).
pub const KILL_WAIT: Duration = Duration::from_secs(10);

impl QemuProcess {
    /// Starts QEMU and returns once it has daemonized, i.e. its QMP socket
    /// is listening and the pidfile is written.
    pub async fn start(config: &VmConfig) -> Result<Self, StartError> {
        let _ = tokio::fs::remove_file(&config.qmp_socket).await;
        let _ = tokio::fs::remove_file(&config.vnc_socket).await;
        let _ = tokio::fs::remove_file(&config.pidfile).await;
        let launch = tokio::process::Command::new(QEMU_BINARY)
            .args(config.args())
            .stdin(std::process::Stdio::null())
            // Given up on (timeout, or the instance deleted meanwhile), the
            // launcher dies with the future; `kill_all` ends a daemonized child.
            .kill_on_drop(true)
            .output();
        let output = match tokio::time::timeout(QEMU_START_TIMEOUT, launch).await {
            Ok(output) => output.map_err(StartError::Spawn)?,
            Err(_) => {
                Self::kill_all(&config.uuid).await;
                return Err(StartError::Timeout);
            }
        };
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
        is_qemu_of(pid, uuid).then_some(Self { pid })
    }

    /// Every live QEMU process of instance `uuid`, whatever its pidfile says
    /// (a start cut short can leave a daemonized QEMU the pidfile does not
    /// name yet).
    pub fn all_of(uuid: &str) -> Vec<Self> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| is_qemu_of(*pid, uuid))
            .map(|pid| Self { pid })
            .filter(|p| p.is_alive())
            .collect()
    }

    /// SIGKILLs every QEMU of instance `uuid` and waits until they are gone.
    pub async fn kill_all(uuid: &str) {
        for process in Self::all_of(uuid) {
            tracing::info!(instance = %uuid, pid = process.pid, "killing QEMU");
            process.kill().await;
        }
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
        if !self.wait_gone(KILL_WAIT).await {
            tracing::warn!(pid = self.pid, "QEMU still there after SIGKILL");
        }
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

/// Whether process `pid` is a QEMU whose `-uuid` is `uuid` (a recycled pid
/// belonging to something else is not).
fn is_qemu_of(pid: i32, uuid: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|b| *b == 0);
    let program = args.next().unwrap_or_default();
    let is_qemu = program
        .rsplit(|b| *b == b'/')
        .next()
        .is_some_and(|name| name.starts_with(b"qemu-system"));
    is_qemu && args.any(|a| a == b"-uuid") && args.next() == Some(uuid.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_qemu_of_an_instance_is_found_and_killed() {
        // This test process is no QEMU, whatever its arguments.
        assert!(!is_qemu_of(std::process::id() as i32, "x"));
        // A stand-in named like QEMU with a `-uuid`: a shell (through a
        // symlink called qemu-system-…) waiting on its stdin, no child.
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("qemu-system-fake");
        std::os::unix::fs::symlink("/bin/sh", &fake).unwrap();
        let uuid = format!("fake-{}", std::process::id());
        let mut child = std::process::Command::new(&fake)
            .args(["-c", "read x", "-uuid", &uuid])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Under load /proc can lag the exec briefly: look for a few seconds.
        let mut found = QemuProcess::all_of(&uuid);
        for _ in 0..50 {
            if found == vec![QemuProcess { pid }] {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            found = QemuProcess::all_of(&uuid);
        }
        assert_eq!(found, vec![QemuProcess { pid }]);
        assert!(QemuProcess::all_of("another-uuid").is_empty());
        QemuProcess::kill_all(&uuid).await;
        let _ = child.wait();
        assert!(QemuProcess::all_of(&uuid).is_empty());
    }
}
