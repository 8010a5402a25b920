//! The virtual switch a host's networks are built on. One implementation
//! today (Linux bridges); the trait is what Open vSwitch would implement.

use super::command::{ip_batch, link_exists, links_with_prefix, run};
use nubis_api::agent::NetworkSpec;
use std::future::Future;

/// A virtual switch: one segment per network, ports attached to segments.
pub trait Switch: Send + Sync {
    /// Makes the segments of `networks` exist, up, with the gateway address
    /// on the host side (all at once: one call for many networks).
    fn ensure_networks(
        &self,
        networks: &[&NetworkSpec],
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Removes a segment by its interface name.
    fn remove_network(&self, interface: &str) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Creates a port (a persistent TAP) if missing and attaches it, up, to
    /// the segment of `network`, which must exist.
    fn plug(
        &self,
        port: &str,
        network: &NetworkSpec,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Interface-name prefix of Nubis bridges (names must fit IFNAMSIZ: 15 bytes).
pub const BRIDGE_PREFIX: &str = "nbr-";

/// The bridge of a network: `nbr-` and the first 8 hex digits of its id.
pub fn bridge_name(network: &NetworkSpec) -> String {
    format!("{BRIDGE_PREFIX}{}", &network.id.0.simple().to_string()[..8])
}

/// Linux bridges, configured with `ip`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxBridge;

impl Switch for LinuxBridge {
    async fn ensure_networks(&self, networks: &[&NetworkSpec]) -> anyhow::Result<()> {
        if networks.is_empty() {
            return Ok(());
        }
        let present = links_with_prefix(BRIDGE_PREFIX).await?;
        let mut lines = Vec::new();
        for network in networks {
            let name = bridge_name(network);
            if !present.contains(&name) {
                lines.push(format!("link add {name} type bridge stp_state 0"));
            }
            // The gateway's MAC is the same on every host (see `overlay`).
            lines.push(format!(
                "link set {name} address {}",
                super::overlay::gateway_mac(network)
            ));
            lines.push(format!(
                "addr replace {}/{} dev {name}",
                network.gateway,
                network.cidr.prefix()
            ));
            lines.push(format!("link set {name} up"));
        }
        ip_batch(&lines, false).await
    }

    async fn remove_network(&self, interface: &str) -> anyhow::Result<()> {
        if link_exists(interface).await {
            run("ip", &["link", "del", interface]).await?;
        }
        Ok(())
    }

    async fn plug(&self, port: &str, network: &NetworkSpec) -> anyhow::Result<()> {
        let mut lines = Vec::new();
        if !link_exists(port).await {
            lines.push(format!("tuntap add dev {port} mode tap"));
        }
        lines.push(format!(
            "link set {port} master {} up",
            bridge_name(network)
        ));
        ip_batch(&lines, false).await
    }
}
