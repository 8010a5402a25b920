//! One dnsmasq per network per host: DHCP for this host's instances only
//! (static MAC -> IP, never a dynamic lease) and DNS for the network's zone.
//!
//! Like QEMU, dnsmasq runs detached with a pidfile and survives agent
//! restarts; changes to the hosts files are applied with SIGHUP.

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use nubis_api::agent::{DnsRecord, NetworkSpec};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// A static DHCP entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpHost {
    pub mac: String,
    pub ip: Ipv4Addr,
    pub hostname: String,
}

/// The files of one network's dnsmasq.
pub struct Dnsmasq {
    dir: PathBuf,
}

impl Dnsmasq {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("dnsmasq.conf")
    }
    fn dhcp_hosts(&self) -> PathBuf {
        self.dir.join("dhcp-hosts")
    }
    fn dns_hosts(&self) -> PathBuf {
        self.dir.join("dns-hosts")
    }
    fn pidfile(&self) -> PathBuf {
        self.dir.join("dnsmasq.pid")
    }

    /// The configuration: everything is a fixed option or a value we made
    /// (interface names, validated addresses), never guest or user text.
    fn config(&self, network: &NetworkSpec, bridge: &str) -> String {
        let c = network.cidr;
        let p = |path: PathBuf| path.to_string_lossy().into_owned();
        [
            format!("interface={bridge}"),
            "bind-interfaces".into(),
            "except-interface=lo".into(),
            format!("listen-address={}", network.gateway),
            format!("dhcp-range={},static,{},12h", c.network(), c.netmask()),
            format!("dhcp-hostsfile={}", p(self.dhcp_hosts())),
            format!("addn-hosts={}", p(self.dns_hosts())),
            format!("dhcp-option=option:router,{}", network.gateway),
            format!("dhcp-option=option:dns-server,{}", network.gateway),
            format!("domain={}", network.domain),
            format!("local=/{}/", network.domain),
            format!("dhcp-leasefile={}", p(self.dir.join("leases"))),
            format!("pid-file={}", p(self.pidfile())),
            "dhcp-authoritative".into(),
            "no-hosts".into(),
            "no-poll".into(),
            format!("log-facility={}", p(self.dir.join("dnsmasq.log"))),
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
    ) -> anyhow::Result<()> {
        tokio::fs::create_dir_all(&self.dir).await?;
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
        let mut changed = write_if_changed(&self.dhcp_hosts(), &dhcp).await?;
        changed |= write_if_changed(&self.dns_hosts(), &dns).await?;
        let conf_changed = write_if_changed(&self.conf(), &self.config(network, bridge)).await?;
        match self.running() {
            Some(pid) if !conf_changed => {
                if changed {
                    kill(Pid::from_raw(pid), Signal::SIGHUP).context("reloading dnsmasq")?;
                }
            }
            running => {
                if let Some(pid) = running {
                    stop_pid(pid).await;
                }
                self.start().await?;
            }
        }
        Ok(())
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

    /// Stops dnsmasq and removes its files.
    pub async fn remove(&self) -> anyhow::Result<()> {
        if let Some(pid) = self.running() {
            stop_pid(pid).await;
        }
        match tokio::fs::remove_dir_all(&self.dir).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
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
