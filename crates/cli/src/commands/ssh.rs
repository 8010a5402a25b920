//! `nubis server ssh`: replaces this process with `ssh` to a server's first address.

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
    let args = ssh_args(req.user, ip, identity.as_deref(), req.extra);
    let err = std::process::Command::new("ssh").args(&args).exec();
    if err.kind() == std::io::ErrorKind::NotFound {
        bail!("cannot run ssh: it is not installed (or not on PATH)");
    }
    bail!("cannot run ssh: {err}")
}

/// `./KEY_NAME.pem`, where `nubis keypair create` saves keys, if it exists.
fn default_identity(server: &Server) -> Option<PathBuf> {
    let path = default_private_key_file(server.key_name.as_deref()?);
    path.is_file().then_some(path)
}

/// The arguments for `ssh`: options, `user@ip`, then the caller's extras
/// (ssh reads options after the destination too, and a command after those).
pub fn ssh_args(
    user: &str,
    ip: Ipv4Addr,
    identity: Option<&Path>,
    extra: &[String],
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["-o".into(), "StrictHostKeyChecking=accept-new".into()];
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

    #[test]
    fn arguments_in_order() {
        let ip = Ipv4Addr::new(10, 64, 0, 2);
        assert_eq!(
            ssh_args("root", ip, None, &[]),
            ["-o", "StrictHostKeyChecking=accept-new", "root@10.64.0.2"]
        );
        let extra = ["-v".to_owned(), "uname -a; id".to_owned()];
        assert_eq!(
            ssh_args("root", ip, Some(Path::new("k.pem")), &extra),
            [
                "-o",
                "StrictHostKeyChecking=accept-new",
                "-i",
                "k.pem",
                "root@10.64.0.2",
                "-v",
                "uname -a; id"
            ]
        );
    }
}
