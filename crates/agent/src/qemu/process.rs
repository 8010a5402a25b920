//! Starting, finding and ending QEMU processes.
//!
//! The agent starts QEMU itself, jailed (see [`crate::jail`]), in a session
//! of its own, so it keeps running when the agent stops or is killed; the
//! agent writes its pidfile and adopts it again from there on return. QEMU
//! does not `-daemonize`: its sandbox forbids the setsid() and fork.

use super::{VmConfig, QEMU_BINARY};
use crate::jail::spawn::Confinement;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::fs::FileTypeExt;
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
    #[error("cannot record QEMU's pid: {0}")]
    Pidfile(std::io::Error),
    #[error("QEMU did not finish starting within {} s; killed", QEMU_START_TIMEOUT.as_secs())]
    Timeout,
}

/// How long QEMU may take from spawn to listening on its QMP socket. That
/// takes milliseconds here under TCG and seconds on a host loaded with TCG
/// guests; a minute leaves room for a slow disk while a hung start is ended.
pub const QEMU_START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a SIGKILLed QEMU may take to disappear (the kernel frees its
/// guest memory first; a few GiB take well under a second).
pub const KILL_WAIT: Duration = Duration::from_secs(10);

/// A QEMU to start: its command line, its jail, and the agent's (real)
/// paths of its pidfile, QMP socket and standard-error log.
pub struct Launch<'a> {
    pub config: &'a VmConfig,
    pub confinement: &'a Confinement,
    pub pidfile: &'a Path,
    pub qmp_socket: &'a Path,
    pub vnc_socket: &'a Path,
    pub log: &'a Path,
}

impl QemuProcess {
    /// Starts QEMU in its jail and returns once its QMP socket exists (QEMU
    /// answers on it once its devices are set up; the guest stays paused).
    /// The agent reaps the child when it exits.
    pub async fn start(launch: Launch<'_>) -> Result<Self, StartError> {
        let _ = std::fs::remove_file(launch.qmp_socket);
        let _ = std::fs::remove_file(launch.vnc_socket);
        let _ = std::fs::remove_file(launch.pidfile);
        let log = std::fs::File::create(launch.log).map_err(StartError::Spawn)?;
        let mut command = tokio::process::Command::new(QEMU_BINARY);
        command
            .args(launch.config.args())
            .env_clear()
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log);
        launch
            .confinement
            .apply(&mut command)
            .map_err(StartError::Spawn)?;
        let mut child = command.spawn().map_err(StartError::Spawn)?;
        let process = Self {
            pid: child.id().map(|p| p as i32).unwrap_or_default(),
        };
        if let Err(e) = write_pidfile(launch.pidfile, process.pid) {
            process.kill().await;
            let _ = child.wait().await;
            return Err(StartError::Pidfile(e));
        }
        let deadline = tokio::time::Instant::now() + QEMU_START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let complaint = startup_complaint(launch.log);
                return Err(StartError::Failed(if complaint.is_empty() {
                    format!("exited with {status}")
                } else {
                    complaint
                }));
            }
            let listening = std::fs::symlink_metadata(launch.qmp_socket)
                .is_ok_and(|m| m.file_type().is_socket());
            if listening {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                process.kill().await;
                let _ = child.wait().await;
                return Err(StartError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Reaped when it exits; after an agent restart QEMU is no longer
        // our child, and init reaps it.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(process)
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

/// Writes `pid` to `pidfile` atomically (temp file + rename).
fn write_pidfile(pidfile: &Path, pid: i32) -> std::io::Result<()> {
    let temp = pidfile.with_extension("pid.tmp");
    std::fs::write(&temp, format!("{pid}\n"))?;
    std::fs::rename(&temp, pidfile)
}

/// What QEMU wrote to its standard error (the last lines), for a fault.
pub fn startup_complaint(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join("; ")
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
    is_qemu
        && args.any(|a| a == b"-uuid")
        && args.next() == Some(uuid.as_bytes())
        && in_our_network_namespace(pid)
}

/// Whether process `pid` shares this agent's network namespace. QEMU runs
/// in its agent's; agents of other hosts on one machine (the multi-host
/// tests: one namespace per host) each have their own, and the target of a
/// live migration runs a QEMU with the same `-uuid` as the source's: one
/// agent must never adopt or kill another host's QEMU.
fn in_our_network_namespace(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ns = |path: String| std::fs::metadata(path).map(|m| (m.dev(), m.ino()));
    match (
        ns(format!("/proc/{pid}/ns/net")),
        ns("/proc/thread-self/ns/net".to_owned()),
    ) {
        (Ok(theirs), Ok(ours)) => theirs == ours,
        // Not readable (gone, or no /proc/PID/ns): judge by the uuid alone.
        _ => true,
    }
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
