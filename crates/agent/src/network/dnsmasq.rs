//! One dnsmasq per network per host: DHCP for this host's instances only
//! (static MAC -> IP, never a dynamic lease) and DNS for the network's zone.
//!
//! Like QEMU, dnsmasq runs detached with a pidfile and survives agent
//! restarts; changes to the hosts files are applied with SIGHUP.
//!
//! dnsmasq drops to [`HELPER_USER`] before it reads its hosts files (at
//! start and on every SIGHUP), and the data dir may sit under a private
//! directory (root's home is 0700). So the files it reads as that user live
//! in a runtime directory of their own (see [`super::runtime_dir`]), owned
//! by root and readable by that user's group only; what dnsmasq opens while
//! still root (its configuration, pidfile, log and leases) stays in the
//! data dir. Each start or reload is preceded by a check that the user can
//! reach the files, and dnsmasq's own complaints in its log are read back,
//! so either failure becomes an error instead of a guest without address.

use super::access::{check_readable, Identity};
use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use nubis_api::agent::{DnsRecord, NetworkSpec};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The user dnsmasq runs as once it dropped root (set explicitly in its
/// configuration, so it is the one the files are checked against).
pub const HELPER_USER: &str = "nobody";

/// A static DHCP entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpHost {
    pub mac: String,
    pub ip: Ipv4Addr,
    pub hostname: String,
}

/// The files of one network's dnsmasq.
pub struct Dnsmasq {
    /// Under the data dir: read or opened by dnsmasq while it is root.
    dir: PathBuf,
    /// Under the runtime dir: read by dnsmasq as [`HELPER_USER`].
    served: PathBuf,
}

/// Who dnsmasq becomes, and the name of its group.
struct Helper {
    id: Identity,
    group: String,
}

fn helper() -> anyhow::Result<Helper> {
    let user = nix::unistd::User::from_name(HELPER_USER)?
        .with_context(|| format!("there is no user {HELPER_USER:?} for dnsmasq to run as"))?;
    let group = nix::unistd::Group::from_gid(user.gid)?
        .map(|g| g.name)
        .with_context(|| format!("the group of user {HELPER_USER:?} has no name"))?;
    Ok(Helper {
        id: Identity {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        },
        group,
    })
}

impl Dnsmasq {
    /// `dir` holds what dnsmasq opens as root, `served` what it reads as
    /// [`HELPER_USER`].
    pub fn new(dir: PathBuf, served: PathBuf) -> Self {
        Self { dir, served }
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("dnsmasq.conf")
    }
    fn dhcp_hosts(&self) -> PathBuf {
        self.served.join("dhcp-hosts")
    }
    fn dns_hosts(&self) -> PathBuf {
        self.served.join("dns-hosts")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("dnsmasq.log")
    }
    fn pidfile(&self) -> PathBuf {
        self.dir.join("dnsmasq.pid")
    }

    /// The configuration: everything is a fixed option or a value we made
    /// (interface names, validated addresses), never guest or user text.
    fn config(&self, network: &NetworkSpec, bridge: &str, group: &str, mtu: u32) -> String {
        let c = network.cidr;
        let p = |path: PathBuf| path.to_string_lossy().into_owned();
        [
            format!("user={HELPER_USER}"),
            format!("group={group}"),
            format!("interface={bridge}"),
            "bind-interfaces".into(),
            "except-interface=lo".into(),
            format!("listen-address={}", network.gateway),
            format!("dhcp-range={},static,{},12h", c.network(), c.netmask()),
            format!("dhcp-hostsfile={}", p(self.dhcp_hosts())),
            format!("addn-hosts={}", p(self.dns_hosts())),
            format!("dhcp-option=option:router,{}", network.gateway),
            format!("dhcp-option=option:dns-server,{}", network.gateway),
            // Sent even unasked: room for VXLAN's headers when the network
            // spans hosts (see `overlay::Tunnel::guest_mtu`).
            format!("dhcp-option-force=option:mtu,{mtu}"),
            format!("domain={}", network.domain),
            format!("local=/{}/", network.domain),
            format!("dhcp-leasefile={}", p(self.dir.join("leases"))),
            format!("pid-file={}", p(self.pidfile())),
            "dhcp-authoritative".into(),
            "no-hosts".into(),
            "no-poll".into(),
            format!("log-facility={}", p(self.log())),
            String::new(),
        ]
        .join("\n")
    }

    /// Brings dnsmasq for `network` to serve exactly `hosts` (DHCP) and
    /// `records` (DNS): writes the files, starts it or signals a reload.
    pub async fn ensure(
        &self,
        network: &NetworkSpec,
        bridge: &str,
        hosts: &[DhcpHost],
        records: &[DnsRecord],
        mtu: u32,
    ) -> anyhow::Result<()> {
        let helper = helper()?;
        tokio::fs::create_dir_all(&self.dir).await?;
        self.prepare_served_dir(&helper).await?;
        let dhcp: String = hosts
            .iter()
            .map(|h| format!("{},{},{}\n", h.mac, h.ip, h.hostname))
            .collect();
        let dns: String = records
            .iter()
            .map(|r| {
                let short = r.name.split('.').next().unwrap_or(&r.name);
                format!("{} {} {}\n", r.ip, r.name, short)
            })
            .collect();
        let mut changed = write_served(&self.dhcp_hosts(), &dhcp, helper.id.gid).await?;
        changed |= write_served(&self.dns_hosts(), &dns, helper.id.gid).await?;
        for file in [self.dhcp_hosts(), self.dns_hosts()] {
            check_readable(&file, helper.id).map_err(|e| {
                anyhow::anyhow!("dnsmasq runs as {HELPER_USER} and could not read its files: {e}")
            })?;
        }
        let config = self.config(network, bridge, &helper.group, mtu);
        let conf_changed = write_if_changed(&self.conf(), &config).await?;
        match self.running() {
            Some(pid) if !conf_changed => {
                // After a complaint, read again even if nothing changed: the
                // files are reachable now (checked above), so this heals.
                if changed || self.check_log().is_err() {
                    kill(Pid::from_raw(pid), Signal::SIGHUP).context("reloading dnsmasq")?;
                }
            }
            running => {
                if let Some(pid) = running {
                    stop_pid(pid).await;
                } else if self.pidfile().exists() {
                    tracing::warn!(
                        dir = %self.dir.display(),
                        log = %self.log_tail(),
                        "dnsmasq had exited; starting it again"
                    );
                }
                self.start().await?;
                if self.running().is_none() {
                    anyhow::bail!("dnsmasq exited after starting: {}", self.log_tail());
                }
            }
        }
        self.check_log()
    }

    /// Makes the runtime directory: its parents traversable, itself owned
    /// by root and readable only by the helper's group.
    async fn prepare_served_dir(&self, helper: &Helper) -> anyhow::Result<()> {
        tokio::fs::create_dir_all(&self.served)
            .await
            .with_context(|| format!("creating {}", self.served.display()))?;
        // The per-data-dir directory and the runtime root are ours; their
        // mode must not depend on the umask.
        for dir in self.served.ancestors().skip(1).take(2) {
            tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).await?;
        }
        nix::unistd::chown(
            &self.served,
            None,
            Some(nix::unistd::Gid::from_raw(helper.id.gid)),
        )?;
        tokio::fs::set_permissions(&self.served, std::fs::Permissions::from_mode(0o750)).await?;
        Ok(())
    }

    /// Fails when dnsmasq's latest word on either hosts file (it logs each
    /// read, good or bad) is that it could not read it.
    fn check_log(&self) -> anyhow::Result<()> {
        let log = read_tail(&self.log(), LOG_TAIL_BYTES);
        for file in [self.dhcp_hosts(), self.dns_hosts()] {
            if let Some(complaint) = read_failure(&log, &file.to_string_lossy()) {
                anyhow::bail!("dnsmasq cannot read its files: {complaint}");
            }
        }
        Ok(())
    }

    /// The last lines of dnsmasq's log, for messages.
    fn log_tail(&self) -> String {
        let log = read_tail(&self.log(), LOG_TAIL_BYTES);
        let lines: Vec<&str> = log.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    async fn start(&self) -> anyhow::Result<()> {
        let conf = format!("--conf-file={}", self.conf().display());
        // dnsmasq reports configuration errors on stderr before it detaches;
        // the detached daemon must not hold our pipes, so use a file.
        let errors = self.dir.join("start-errors");
        let status = tokio::process::Command::new("dnsmasq")
            .arg(&conf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&errors)?)
            .kill_on_drop(true)
            .status();
        // Bounded like every host tool (the daemon it forks is not).
        let status = tokio::time::timeout(super::command::COMMAND_TIMEOUT, status)
            .await
            .map_err(|_| anyhow::anyhow!("dnsmasq did not start in time; killed"))?
            .context("running dnsmasq (is dnsmasq-base installed?)")?;
        if !status.success() {
            let msg = std::fs::read_to_string(&errors).unwrap_or_default();
            anyhow::bail!("dnsmasq failed: {}", msg.trim());
        }
        Ok(())
    }

    /// The pid of this network's running dnsmasq, if any.
    pub fn running(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pidfile())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let conf = self.conf().to_string_lossy().into_owned();
        String::from_utf8_lossy(&cmdline)
            .contains(&conf)
            .then_some(pid)
    }

    /// Stops dnsmasq and removes its files (both directories).
    pub async fn remove(&self) -> anyhow::Result<()> {
        if let Some(pid) = self.running() {
            stop_pid(pid).await;
        }
        for dir in [&self.served, &self.dir] {
            match tokio::fs::remove_dir_all(dir).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }
}

/// How much of the end of dnsmasq's log is read for its latest complaints.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// The last `max` bytes of `path` (empty if unreadable).
fn read_tail(path: &Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// dnsmasq's complaint about `file` if the last log line naming it is one
/// (`cannot read FILE: ...` for a dhcp-hostsfile, `failed to load names
/// from FILE: ...` for addn-hosts); a later `read FILE - N addresses` means
/// it has since been read.
fn read_failure(log: &str, file: &str) -> Option<String> {
    let last = log.lines().rev().find(|l| l.contains(file))?;
    let failed = last.contains(&format!("cannot read {file}"))
        || last.contains(&format!("failed to load names from {file}"));
    failed.then(|| {
        // Drop the "date dnsmasq[pid]: " prefix.
        last.split_once("]: ")
            .map_or(last, |(_, rest)| rest)
            .to_owned()
    })
}

async fn stop_pid(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Writes a file dnsmasq reads as the helper user: owned by root, readable
/// by group `gid`; atomically, unless it already holds `contents`.
async fn write_served(path: &Path, contents: &str, gid: u32) -> anyhow::Result<bool> {
    let owned = |file: &Path| -> anyhow::Result<()> {
        nix::unistd::chown(file, None, Some(nix::unistd::Gid::from_raw(gid)))?;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o640))?;
        Ok(())
    };
    if tokio::fs::read_to_string(path).await.ok().as_deref() == Some(contents) {
        // Unchanged, but its owner and mode are made right all the same.
        owned(path)?;
        return Ok(false);
    }
    let temp = path.with_extension("tmp");
    tokio::fs::write(&temp, contents).await?;
    owned(&temp)?;
    tokio::fs::rename(&temp, path).await?;
    Ok(true)
}

/// Writes `contents` atomically unless the file already holds them.
async fn write_if_changed(path: &Path, contents: &str) -> anyhow::Result<bool> {
    if tokio::fs::read_to_string(path).await.ok().as_deref() == Some(contents) {
        return Ok(false);
    }
    let temp = path.with_extension("tmp");
    tokio::fs::write(&temp, contents).await?;
    tokio::fs::rename(&temp, path).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::read_failure;

    const FILE: &str = "/run/nubis/ab12/net/dhcp-hosts";

    #[test]
    fn the_latest_line_about_a_file_decides() {
        let failed = format!(
            "Nov 29 10:00:00 dnsmasq[7]: started\n\
             Nov 29 10:00:00 dnsmasq[7]: cannot read {FILE}: Permission denied\n\
             Nov 29 10:00:01 dnsmasq-dhcp[7]: DHCPDISCOVER(nbr-1) 52:54:00:00:00:01 no address available\n"
        );
        assert_eq!(
            read_failure(&failed, FILE).as_deref(),
            Some(format!("cannot read {FILE}: Permission denied").as_str())
        );
        let healed =
            format!("{failed}Nov 29 10:01:00 dnsmasq-dhcp[7]: read {FILE} - 1 addresses\n");
        assert_eq!(read_failure(&healed, FILE), None);
        assert_eq!(read_failure("", FILE), None);
    }

    #[test]
    fn addn_hosts_failures_count_and_other_files_do_not() {
        let log = format!(
            "Nov 29 10:00:00 dnsmasq[7]: failed to load names from {FILE}: Permission denied\n"
        );
        assert!(read_failure(&log, FILE)
            .unwrap()
            .starts_with("failed to load names"));
        assert_eq!(read_failure(&log, "/run/nubis/ab12/other/dhcp-hosts"), None);
    }
}
