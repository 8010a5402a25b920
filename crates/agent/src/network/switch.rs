//! The virtual switch a host's networks are built on. One implementation
//! today (Linux bridges); the trait is what Open vSwitch would implement.

use super::command::{link_exists, run};
use nubis_api::agent::NetworkSpec;
use std::future::Future;

/// A virtual switch: one segment per network, ports attached to segments.
pub trait Switch: Send + Sync {
    /// Makes the segment of `network` exist, up, with the gateway address on
    /// the host side. Returns the host-side interface name.
    fn ensure_network(
        &self,
        network: &NetworkSpec,
    ) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// Removes a segment by its interface name.
    fn remove_network(&self, interface: &str) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Attaches a port (a TAP) to the segment of `network`, up.
    fn attach(
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
    async fn ensure_network(&self, network: &NetworkSpec) -> anyhow::Result<String> {
        let name = bridge_name(network);
        if !link_exists(&name).await {
            run(
                "ip",
                &["link", "add", &name, "type", "bridge", "stp_state", "0"],
            )
            .await?;
        }
        let addr = format!("{}/{}", network.gateway, network.cidr.prefix());
        run("ip", &["addr", "replace", &addr, "dev", &name]).await?;
        run("ip", &["link", "set", &name, "up"]).await?;
        Ok(name)
    }

    async fn remove_network(&self, interface: &str) -> anyhow::Result<()> {
        if link_exists(interface).await {
            run("ip", &["link", "del", interface]).await?;
        }
        Ok(())
    }

    async fn attach(&self, port: &str, network: &NetworkSpec) -> anyhow::Result<()> {
        run(
            "ip",
            &["link", "set", port, "master", &bridge_name(network), "up"],
        )
        .await?;
        Ok(())
    }
}
