//! Traffic metering: the kernel's byte counters of every instance TAP.
//!
//! A TAP's "received" bytes are what the guest sent (outbound) and its
//! "transmitted" bytes what was delivered to the guest (inbound). The TAPs
//! are persistent, so their counters survive agent restarts; each counter is
//! reported with a `source` naming the boot, device index and name, so the
//! controller can tell a continuing counter from a new one and count every
//! byte once.

use nubis_api::agent::{InstanceSpec, TrafficCounter};
use std::collections::HashMap;

use crate::network::tap::tap_name;

/// Reads instance traffic counters.
#[derive(Clone, Debug)]
pub struct Meter {
    boot_id: String,
}

impl Default for Meter {
    fn default() -> Self {
        Self::new()
    }
}

impl Meter {
    pub fn new() -> Self {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown-boot".into());
        Self { boot_id }
    }

    /// The counters of every NIC of `instances` whose TAP exists.
    pub fn read(&self, instances: &[InstanceSpec]) -> Vec<TrafficCounter> {
        let Ok(text) = std::fs::read_to_string("/proc/thread-self/net/dev") else {
            return Vec::new();
        };
        let stats = parse_net_dev(&text);
        let mut out = Vec::new();
        for spec in instances {
            for nic in &spec.nics {
                let tap = tap_name(nic.port);
                let Some(&(received, transmitted)) = stats.get(tap.as_str()) else {
                    continue;
                };
                let Some(index) = if_index(&tap) else {
                    continue;
                };
                out.push(TrafficCounter {
                    server: spec.id,
                    port: nic.port,
                    source: format!("{}/{index}/{tap}", self.boot_id),
                    inbound_bytes: transmitted,
                    outbound_bytes: received,
                });
            }
        }
        out
    }
}

fn if_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// `/proc/net/dev` -> name -> (received bytes, transmitted bytes).
fn parse_net_dev(text: &str) -> HashMap<&str, (u64, u64)> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let fields: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse().ok())
                .collect::<Option<_>>()?;
            // 8 receive fields, then transmit: bytes are the first of each.
            Some((name.trim(), (*fields.first()?, *fields.get(8)?)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_is_parsed() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:  123456     100    0    0    0     0          0         0   123456     100    0    0    0     0       0          0\n\
ntap-0a1b2c3d: 5000 10 0 0 0 0 0 0 7000 12 0 0 0 0 0 0\n";
        let stats = parse_net_dev(text);
        assert_eq!(stats.get("ntap-0a1b2c3d"), Some(&(5000, 7000)));
        assert_eq!(stats.get("lo"), Some(&(123456, 123456)));
    }

    #[test]
    fn the_loopback_device_has_an_index() {
        assert_eq!(if_index("lo"), Some(1));
        assert_eq!(if_index("no-such-dev0"), None);
    }
}
