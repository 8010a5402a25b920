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

/// The regular expression (ECMA-262) of the CIDRs `Cidr` accepts: a prefix
/// from `MIN_PREFIX` to `MAX_PREFIX` and no host bits set, one alternative
/// per prefix length.
pub fn cidr_pattern() -> String {
    use crate::schema::{multiples_below_256, OCTET_PATTERN as O};
    let alternatives: Vec<String> = (MIN_PREFIX..=MAX_PREFIX)
        .map(|prefix| {
            // The octet the prefix ends in may only hold multiples of the
            // block size; the octets after it are zero.
            let (third, fourth) = match prefix {
                0..=23 => (multiples_below_256(1 << (24 - prefix)), "0".to_owned()),
                24 => (O.to_owned(), "0".to_owned()),
                _ => (O.to_owned(), multiples_below_256(1 << (32 - prefix))),
            };
            // The length is parsed as a u8, which takes `+` and leading zeros.
            format!(r"{O}\.{O}\.{third}\.{fourth}/\+?0*{prefix}")
        })
        .collect();
    format!("^(?:{})$", alternatives.join("|"))
}

/// A CIDR as `Cidr` parses it.
pub fn cidr_schema() -> utoipa::openapi::schema::Object {
    crate::schema::string(
        Some(&cidr_pattern()),
        9,
        None,
        &format!("an IPv4 subnet such as 10.0.0.0/24: prefix /{MIN_PREFIX} to /{MAX_PREFIX}, no host bits set"),
    )
    .build()
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
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DnsZone(String);

/// The longest zone accepted (without trailing dots).
pub const MAX_ZONE_LEN: usize = 200;

/// The regular expression (ECMA-262) of the zones `DnsZone` accepts: labels
/// of 1 to 63 letters, digits and `-` (not at either end) joined by dots;
/// trailing dots are dropped.
pub const ZONE_PATTERN: &str = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.*$";

impl utoipa::PartialSchema for DnsZone {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::string(
            Some(ZONE_PATTERN),
            1,
            Some(MAX_ZONE_LEN),
            "a DNS zone such as nubis.internal (letters are made lower case)",
        )
        .examples(["nubis.internal"])
        .into()
    }
}

impl utoipa::ToSchema for DnsZone {}

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
        if s.is_empty() || s.len() > MAX_ZONE_LEN || !s.split('.').all(valid_label) {
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
    #[schema(schema_with = cidr_schema, example = "10.0.0.0/24")]
    pub cidr: Cidr,
    /// Default: the first host address.
    #[serde(default)]
    #[schema(schema_with = crate::schema::optional_ipv4)]
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
    fn the_cidr_pattern_agrees_with_the_parser() {
        let re = regex::Regex::new(&cidr_pattern()).unwrap();
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..100_000 {
            let prefix = next() % 34;
            let host_bits = 32u64.saturating_sub(prefix);
            // Mostly aligned addresses, so that valid ones are common.
            let mut addr = (next() as u32) & (u32::MAX.checked_shl(host_bits as u32).unwrap_or(0));
            if next() % 4 == 0 {
                addr |= (next() as u32) & 0xff;
            }
            let s = format!("{}/{prefix}", Ipv4Addr::from(addr));
            let ok = s.parse::<Cidr>().is_ok();
            assert_eq!(re.is_match(&s), ok, "{s}");
            if ok {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
        assert!(
            valid > 1000 && invalid > 1000,
            "{valid} valid, {invalid} invalid"
        );
        for odd in ["010.0.0.0/24", "10.0.0.0/24 ", "10.0.0.0", "10.0.0.0/-24"] {
            assert!(!re.is_match(odd) && odd.parse::<Cidr>().is_err(), "{odd}");
        }
        for odd in ["10.0.0.0/024", "10.0.0.0/+24"] {
            assert!(re.is_match(odd) && odd.parse::<Cidr>().is_ok(), "{odd}");
        }
    }

    #[test]
    fn the_zone_pattern_agrees_with_the_parser() {
        let re = regex::Regex::new(ZONE_PATTERN).unwrap();
        let alphabet = ['a', 'Z', '0', '-', '.', '_', ' ', 'é'];
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..50_000 {
            let len = 1 + (next() % 9) as usize;
            let mut s: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if next() % 100 == 0 {
                s = format!(
                    "{}.{}",
                    "a".repeat(60 + (next() % 6) as usize),
                    "b".repeat(130 + (next() % 12) as usize)
                );
            }
            let by_schema = re.is_match(&s) && s.chars().count() <= MAX_ZONE_LEN;
            let ok = DnsZone::try_from(s.clone()).is_ok();
            assert_eq!(by_schema, ok, "{s:?}");
            if ok {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
        assert!(
            valid > 500 && invalid > 500,
            "{valid} valid, {invalid} invalid"
        );
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
