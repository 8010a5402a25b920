//! TAP devices: one per NIC, named after its port, persistent so QEMU can
//! open it by name and it outlives an agent restart.

use super::command::{link_exists, run};
use nubis_api::PortId;

/// Interface-name prefix of Nubis TAPs.
pub const TAP_PREFIX: &str = "ntap-";

/// The TAP of a port: `ntap-` and the first 8 hex digits of the port id.
pub fn tap_name(port: PortId) -> String {
    format!("{TAP_PREFIX}{}", &port.0.simple().to_string()[..8])
}

/// Removes the TAP if it exists.
pub async fn remove(name: &str) -> anyhow::Result<()> {
    if link_exists(name).await {
        run("ip", &["link", "del", name]).await?;
    }
    Ok(())
}
