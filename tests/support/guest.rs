//! Reaching guests from the test: ssh with a key, ping.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `ssh -i key root@ip command`, from `netns` if given (else from the
/// calling thread's namespace), ready to run. Host keys are neither checked
/// nor kept; stdin is the caller's to set.
pub fn ssh_command(netns: Option<&str>, key: &Path, ip: &str, command: &str) -> Command {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "ssh"]);
            c
        }
        None => Command::new("ssh"),
    };
    cmd.arg("-i")
        .arg(key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=3",
            "-o",
            "ServerAliveInterval=2",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(format!("root@{ip}"))
        .arg(command);
    cmd
}

/// Runs `ssh -i key root@ip command` with no input (see `ssh_command`).
pub fn ssh(netns: Option<&str>, key: &Path, ip: &str, command: &str) -> Output {
    ssh_command(netns, key, ip, command)
        .stdin(Stdio::null())
        .output()
        .expect("running ssh (is openssh-client installed?)")
}

/// Whether `command` succeeds in the guest.
pub fn ssh_ok(key: &Path, ip: &str, command: &str) -> bool {
    ssh(None, key, ip, command).status.success()
}

/// The output of `command` in the guest, which must succeed.
pub fn ssh_stdout(key: &Path, ip: &str, command: &str) -> String {
    let out = ssh(None, key, ip, command);
    assert!(
        out.status.success(),
        "ssh {command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether one ping to `ip` (from `netns` if given) is answered within a second.
pub fn ping(netns: Option<&str>, ip: &str) -> bool {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "ping"]);
            c
        }
        None => Command::new("ping"),
    };
    cmd.args(["-c", "1", "-W", "1", ip])
        .stdout(Stdio::null())
        .status()
        .expect("running ping (is iputils-ping installed?)")
        .success()
}
