//! `nubis server create --network NET[,fixed-ip=IP]`, like `nova boot --nic`.

use nubis_api::servers::NetworkRequest;
use std::net::Ipv4Addr;

/// What `--network` looks like, for help and error messages.
pub const NIC_SYNTAX: &str = "NET[,fixed-ip=IP]";

/// Parses one `--network` value: a network name or id, then optional
/// `key=value` options (only `fixed-ip`, also spelled `v4-fixed-ip`).
pub fn parse_nic(s: &str) -> Result<NetworkRequest, String> {
    let mut parts = s.split(',');
    let network = parts.next().unwrap_or_default().trim();
    if network.is_empty() || is_fixed_ip_option(network) {
        return Err(format!(
            "'{s}' must start with a network name or id, as in {NIC_SYNTAX}"
        ));
    }
    let mut fixed_ip = None;
    for option in parts {
        let (key, value) = option
            .split_once('=')
            .ok_or_else(|| format!("'{option}' in '{s}' is not key=value; use {NIC_SYNTAX}"))?;
        match key.trim() {
            "fixed-ip" | "v4-fixed-ip" => {
                if fixed_ip.is_some() {
                    return Err(format!("'{s}' gives fixed-ip twice"));
                }
                let ip: Ipv4Addr = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("fixed-ip '{value}' is not an IPv4 address"))?;
                fixed_ip = Some(ip);
            }
            other => {
                return Err(format!(
                    "unknown option '{other}' in '{s}'; the only option is fixed-ip=IP"
                ))
            }
        }
    }
    Ok(NetworkRequest {
        network: network.to_owned(),
        fixed_ip,
    })
}

fn is_fixed_ip_option(part: &str) -> bool {
    part.split_once('=')
        .is_some_and(|(k, _)| matches!(k.trim(), "fixed-ip" | "v4-fixed-ip"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_alone_or_with_a_fixed_ip() {
        let n = parse_nic("lan").unwrap();
        assert_eq!((n.network.as_str(), n.fixed_ip), ("lan", None));
        let n = parse_nic("lan,fixed-ip=10.0.0.5").unwrap();
        assert_eq!(n.network, "lan");
        assert_eq!(n.fixed_ip, Some(Ipv4Addr::new(10, 0, 0, 5)));
        let n = parse_nic("7d0c6a2e-6f43-4c4e-9d7a-0e1f2a3b4c5d,v4-fixed-ip=10.0.0.6").unwrap();
        assert_eq!(n.network, "7d0c6a2e-6f43-4c4e-9d7a-0e1f2a3b4c5d");
        assert_eq!(n.fixed_ip, Some(Ipv4Addr::new(10, 0, 0, 6)));
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        for (bad, why) in [
            ("lan,bogus=1", "unknown option 'bogus'"),
            ("lan,fixed-ip=10.0.0", "not an IPv4 address"),
            ("lan,fixed-ip=fd00::1", "not an IPv4 address"),
            ("lan,10.0.0.5", "not key=value"),
            ("lan,fixed-ip=10.0.0.5,fixed-ip=10.0.0.6", "twice"),
            ("", "must start with a network"),
            (",fixed-ip=10.0.0.5", "must start with a network"),
            ("fixed-ip=10.0.0.5", "must start with a network"),
        ] {
            let err = parse_nic(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
