//! Private networks and their addresses.

use crate::{Name, ProjectId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;

/// Smallest prefix length accepted: a /16 (65,536 addresses) is the largest network.
pub const MIN_PREFIX: u8 = 16;
/// Largest prefix length accepted: a /29 still leaves five usable addresses.
pub const MAX_PREFIX: u8 = 29;

/// An IPv4 subnet: the network address and prefix length, host bits zero.
/// In OpenAPI it is a string such as `10.0.0.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Cidr {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, String> {
        if !(MIN_PREFIX..=MAX_PREFIX).contains(&prefix) {
            return Err(format!(
                "prefix length must be between /{MIN_PREFIX} and /{MAX_PREFIX}, got /{prefix}"
            ));
        }
        let c = Self { addr, prefix };
        if c.network() != addr {
            return Err(format!(
                "{addr}/{prefix} has host bits set; did you mean {}/{prefix}?",
                c.network()
            ));
        }
        Ok(c)
    }

    fn mask(self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }

    pub fn prefix(self) -> u8 {
        self.prefix
    }

    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    pub fn netmask(self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// Whether `ip` can be given to a host: inside, and neither the network
    /// nor the broadcast address.
    pub fn is_host(self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.network() && ip != self.broadcast()
    }

    /// The first host address, the default gateway.
    pub fn first_host(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) + 1)
    }

    /// Host addresses in order.
    pub fn hosts(self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.network()) + 1..u32::from(self.broadcast())).map(Ipv4Addr::from)
    }

    pub fn overlaps(self, other: Cidr) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' is not a CIDR like 10.0.0.0/24"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("'{s}' is not an IPv4 CIDR like 10.0.0.0/24"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("'{s}' has no valid prefix length"))?;
        if prefix > 32 {
            return Err(format!("'{s}' has a prefix length over 32"));
        }
        Self::new(addr, prefix)
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A DNS zone such as `nubis.internal`: labels of a-z, 0-9 and `-`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "nubis.internal")]
pub struct DnsZone(String);

impl DnsZone {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DnsZone {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let s = s.trim_end_matches('.').to_ascii_lowercase();
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if s.is_empty() || s.len() > 200 || !s.split('.').all(valid_label) {
            return Err(format!(
                "'{s}' is not a DNS zone (labels of a-z, 0-9 and '-', separated by dots)"
            ));
        }
        Ok(Self(s))
    }
}

impl From<DnsZone> for String {
    fn from(z: DnsZone) -> String {
        z.0
    }
}

/// Turns any name into a DNS label: lowercase a-z, 0-9 and `-`, at most 63.
pub fn dns_label(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() {
                c
            } else {
                '-'
            }
        })
        .collect();
    out = out.trim_matches('-').to_owned();
    out.truncate(63);
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() {
        "host".into()
    } else {
        out
    }
}

/// `<project>.<zone>`: the domain the names of a project's servers are in.
pub fn network_domain(project: &str, zone: &str) -> String {
    format!("{}.{zone}", dns_label(project))
}

/// `<server>.<project>.<zone>`: the DNS name of a server's first address.
pub fn server_dns_name(server: &str, project: &str, zone: &str) -> String {
    format!("{}.{}", dns_label(server), network_domain(project, zone))
}

/// `POST /v1/networks`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNetwork {
    pub name: Name,
    #[schema(value_type = String, example = "10.0.0.0/24")]
    pub cidr: Cidr,
    /// Default: the first host address.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub gateway: Option<Ipv4Addr>,
    /// Default: the cloud's zone.
    #[serde(default)]
    pub dns_zone: Option<DnsZone>,
}

impl CreateNetwork {
    /// The gateway to use, checked against the subnet.
    pub fn gateway(&self) -> Result<Ipv4Addr, String> {
        match self.gateway {
            None => Ok(self.cidr.first_host()),
            Some(gw) if self.cidr.is_host(gw) => Ok(gw),
            Some(gw) => Err(format!(
                "gateway {gw} is not a host address of {}",
                self.cidr
            )),
        }
    }
}

/// A private network of a project.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Network {
    pub id: crate::NetworkId,
    pub name: String,
    pub project: ProjectId,
    #[schema(value_type = String, example = "10.0.0.0/24")]
    pub cidr: Cidr,
    #[schema(value_type = String)]
    pub gateway: Ipv4Addr,
    /// The zone given at creation (default: the cloud's). Server names are
    /// not directly in it but in the project's part of it, `domain`.
    pub dns_zone: String,
    /// The domain its servers' names are in: `<project>.<dns_zone>`, e.g.
    /// `alice.nubis.internal` (so server `web` is `web.alice.nubis.internal`).
    #[schema(example = "alice.nubis.internal")]
    pub domain: String,
    pub created_at: DateTime<Utc>,
}

/// One address of a server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServerAddress {
    pub network: crate::NetworkId,
    pub network_name: String,
    #[schema(value_type = String)]
    pub ip: Ipv4Addr,
    pub mac: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_reject_with_reasons() {
        let c: Cidr = "10.1.2.0/24".parse().unwrap();
        assert_eq!(c.first_host(), Ipv4Addr::new(10, 1, 2, 1));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 1, 2, 255));
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(c.is_host(Ipv4Addr::new(10, 1, 2, 7)));
        assert!(!c.is_host(Ipv4Addr::new(10, 1, 2, 255)));
        assert!(!c.is_host(Ipv4Addr::new(10, 1, 3, 7)));
        assert_eq!(c.hosts().count(), 254);
        for (bad, why) in [
            ("10.1.2.3/24", "host bits"),
            ("10.0.0.0/8", "between /16 and /29"),
            ("10.0.0.0/30", "between"),
            ("10.0.0.0", "not a CIDR"),
            ("fd00::/64", "IPv4"),
            ("10.0.0.0/99", "over 32"),
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let a: Cidr = "10.0.0.0/16".parse().unwrap();
        let b: Cidr = "10.0.5.0/24".parse().unwrap();
        let d: Cidr = "10.1.0.0/24".parse().unwrap();
        assert!(a.overlaps(b) && b.overlaps(a) && !a.overlaps(d));
    }

    #[test]
    fn zones_and_labels() {
        assert_eq!(
            DnsZone::try_from("Cloud.Example.".to_string())
                .unwrap()
                .as_str(),
            "cloud.example"
        );
        assert!(DnsZone::try_from("bad zone".to_string()).is_err());
        assert!(DnsZone::try_from("-x.y".to_string()).is_err());
        assert_eq!(dns_label("Web Server_1"), "web-server-1");
        assert_eq!(dns_label("ÜÜ"), "host");
    }

    #[test]
    fn gateway_must_be_a_host_of_the_subnet() {
        let req = |gw: &str| CreateNetwork {
            name: "n".parse().unwrap(),
            cidr: "10.0.0.0/24".parse().unwrap(),
            gateway: Some(gw.parse().unwrap()),
            dns_zone: None,
        };
        assert!(req("10.0.0.254").gateway().is_ok());
        assert!(req("10.0.1.1").gateway().is_err());
        assert!(req("10.0.0.255").gateway().is_err());
        assert!(req("10.0.0.0").gateway().is_err());
    }
}
