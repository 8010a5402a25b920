//! `nubis server ssh`: replaces this process with `ssh` to a server's first address.
//!
//! Host keys are kept in the CLI's own known-hosts file (next to the saved
//! token), under the server's id (`HostKeyAlias`), not under its address:
//! a new server on an address that an old one had is a new identity, whose
//! key is accepted on first use, while a changed key for the same server is
//! still refused. The user's `~/.ssh/known_hosts` is neither read nor written.

use crate::client::ApiClient;
use crate::commands::keypairs::default_private_key_file;
use crate::commands::servers;
use anyhow::bail;
use nubis_api::servers::{Server, ServerStatus};
use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// What `nubis server ssh` was asked for.
pub struct SshRequest<'a> {
    pub server: &'a str,
    /// `-i`; default: `./KEY_NAME.pem` when the server has a key pair and that file exists.
    pub identity: Option<&'a Path>,
    pub user: &'a str,
    /// Passed to `ssh` after the destination: options or a command.
    pub extra: &'a [String],
}

/// Looks the server up and execs `ssh`; returns only if that fails.
pub async fn run(client: &ApiClient, req: SshRequest<'_>) -> anyhow::Result<()> {
    let server = servers::find(client, req.server).await?;
    let Some(ip) = server.addresses.first().map(|a| a.ip) else {
        bail!("server '{}' has no address", server.name);
    };
    if server.status != ServerStatus::Running {
        eprintln!(
            "warning: server '{}' is {}, not running",
            server.name, server.status
        );
    }
    let identity = req
        .identity
        .map(Path::to_path_buf)
        .or_else(|| default_identity(&server));
    if req.identity.is_none() {
        if let Some(path) = &identity {
            eprintln!("Using the private key {}", path.display());
        }
    }
    let known_hosts = known_hosts_file();
    if let Some(dir) = known_hosts.parent() {
        create_private_dir(dir)?;
    }
    let host = KnownHost {
        file: &known_hosts,
        alias: &server.id.to_string(),
    };
    // `running` means QEMU runs; the guest may still be booting. Wait for
    // its SSH port rather than fail with "No route to host" (unless the
    // user picked another port).
    let default_port = !req.extra.iter().any(|a| a == "-p" || a.starts_with("-p"));
    if server.status == ServerStatus::Running && default_port {
        let addr = std::net::SocketAddr::from((ip, 22));
        if !port_open(addr).await {
            eprintln!(
                "Waiting for '{}' to accept SSH on {addr} (the guest may still be booting)...",
                server.name
            );
            if !wait_for_port(addr, SSH_READY_TIMEOUT).await {
                eprintln!(
                    "warning: {addr} did not accept connections within {} s; trying anyway",
                    SSH_READY_TIMEOUT.as_secs()
                );
            }
        }
    }
    let args = ssh_args(req.user, ip, &host, identity.as_deref(), req.extra);
    let err = std::process::Command::new("ssh").args(&args).exec();
    if err.kind() == std::io::ErrorKind::NotFound {
        bail!("cannot run ssh: it is not installed (or not on PATH)");
    }
    bail!("cannot run ssh: {err}")
}

/// How long `server ssh` waits for a running guest's SSH port: a guest
/// boots in seconds under KVM, and in well under two minutes under TCG.
const SSH_READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether `addr` accepts a TCP connection within a couple of seconds.
async fn port_open(addr: std::net::SocketAddr) -> bool {
    let connect = tokio::net::TcpStream::connect(addr);
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), connect).await,
        Ok(Ok(_))
    )
}

/// Polls `addr` every second until it accepts a connection or `limit` passes.
async fn wait_for_port(addr: std::net::SocketAddr, limit: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if port_open(addr).await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// `./KEY_NAME.pem`, where `nubis keypair create` saves keys, if it exists.
fn default_identity(server: &Server) -> Option<PathBuf> {
    let path = default_private_key_file(server.key_name.as_deref()?);
    path.is_file().then_some(path)
}

/// The CLI's known-hosts file: beside the saved token.
pub fn known_hosts_file() -> PathBuf {
    let token = crate::client::token_file();
    token
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        .join("known_hosts")
}

/// Creates `dir` (mode 0700) unless it exists.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))
}

/// Where ssh keeps a server's host key, and the name it is kept under.
pub struct KnownHost<'a> {
    pub file: &'a Path,
    /// The server's id: the key belongs to it, not to its address.
    pub alias: &'a str,
}

/// The arguments for `ssh`: options, `user@ip`, then the caller's extras
/// (ssh reads options after the destination too, and a command after those;
/// for each option the first value wins, so ours hold).
pub fn ssh_args(
    user: &str,
    ip: Ipv4Addr,
    host: &KnownHost<'_>,
    identity: Option<&Path>,
    extra: &[String],
) -> Vec<OsString> {
    let mut known = OsString::from("UserKnownHostsFile=");
    known.push(host.file);
    let mut args: Vec<OsString> = vec![
        "-o".into(),
        known,
        "-o".into(),
        format!("HostKeyAlias={}", host.alias).into(),
        "-o".into(),
        "CheckHostIP=no".into(),
        // Entries name server ids, nothing to hide; kept readable so that
        // a deleted server's entry can be found.
        "-o".into(),
        "HashKnownHosts=no".into(),
        "-o".into(),
        "StrictHostKeyChecking=accept-new".into(),
    ];
    if let Some(key) = identity {
        args.push("-i".into());
        args.push(key.into());
    }
    args.push(format!("{user}@{ip}").into());
    args.extend(extra.iter().map(OsString::from));
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_for_a_port_ends_when_it_opens_or_the_limit_passes() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe); // closed now: nothing listens there
        let limit = std::time::Duration::from_millis(1500);
        assert!(!wait_for_port(addr, limit).await, "nothing listens yet");
        let opener = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
            tokio::net::TcpListener::bind(addr).await.unwrap()
        });
        assert!(wait_for_port(addr, std::time::Duration::from_secs(10)).await);
        drop(opener.await);
    }

    #[test]
    fn arguments_in_order() {
        let ip = Ipv4Addr::new(10, 64, 0, 2);
        let host = KnownHost {
            file: Path::new("/home/a/.config/nubis/known_hosts"),
            alias: "0b6c6a9e-2f8e-4d8c-9d3e-7c1e2a3b4c5d",
        };
        let options = [
            "-o",
            "UserKnownHostsFile=/home/a/.config/nubis/known_hosts",
            "-o",
            "HostKeyAlias=0b6c6a9e-2f8e-4d8c-9d3e-7c1e2a3b4c5d",
            "-o",
            "CheckHostIP=no",
            "-o",
            "HashKnownHosts=no",
            "-o",
            "StrictHostKeyChecking=accept-new",
        ];
        let mut plain: Vec<&str> = options.to_vec();
        plain.push("root@10.64.0.2");
        assert_eq!(ssh_args("root", ip, &host, None, &[]), plain);
        let extra = ["-v".to_owned(), "uname -a; id".to_owned()];
        let mut full: Vec<&str> = options.to_vec();
        full.extend(["-i", "k.pem", "root@10.64.0.2", "-v", "uname -a; id"]);
        assert_eq!(
            ssh_args("root", ip, &host, Some(Path::new("k.pem")), &extra),
            full
        );
    }
}
