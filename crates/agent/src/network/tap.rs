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
        match run("ip", &["link", "del", name]).await {
            // Removed by an overlapping removal (the instance's delete and
            // the stray-TAP sweep) since we looked: done, not a failure.
            Err(e) if already_gone(&format!("{e:#}")) => {}
            other => other.map(drop)?,
        }
    }
    Ok(())
}

/// Whether `ip link del` failed only because the link no longer exists.
fn already_gone(error: &str) -> bool {
    error.contains("Cannot find device")
}

#[cfg(test)]
mod tests {
    use super::already_gone;

    #[test]
    fn a_link_removed_meanwhile_is_no_failure() {
        assert!(already_gone(
            "ip link del ntap-1 failed: Cannot find device \"ntap-1\""
        ));
        assert!(!already_gone(
            "ip link del ntap-1 failed: RTNETLINK answers: Operation not permitted"
        ));
    }
}
