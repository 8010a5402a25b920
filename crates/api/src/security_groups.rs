//! Security groups: sets of allow rules applied to servers' ports.

use crate::{Name, ProjectId, SecurityGroupId, SecurityGroupRuleId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Which way a rule lets traffic through, seen from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

/// The protocol a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    /// Every protocol.
    Any,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
            Self::Any => "any",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(Self::Tcp),
            "udp" => Ok(Self::Udp),
            "icmp" => Ok(Self::Icmp),
            "any" => Ok(Self::Any),
            other => Err(format!("unknown protocol '{other}'")),
        }
    }
}

/// The regular expression (ECMA-262) of the prefixes `Prefix` parses: an
/// address, optionally `/` and a length from 0 to 32 (read as a u8, which
/// takes `+` and leading zeros).
pub fn prefix_pattern() -> String {
    let ipv4 = crate::schema::IPV4_PATTERN
        .trim_start_matches('^')
        .trim_end_matches('$');
    format!(r"^{ipv4}(?:/\+?0*(?:3[0-2]|[12]?[0-9]))?$")
}

fn prefix_schema() -> utoipa::openapi::schema::Object {
    crate::schema::nullable(crate::schema::string(
        Some(&prefix_pattern()),
        7,
        None,
        "an IPv4 prefix such as 10.0.0.0/8 (host bits are cleared; no length: /32)",
    ))
    .build()
}

/// An IPv4 prefix a rule allows, any length from /0 to /32, normalised to
/// its network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl std::str::FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (
                a,
                l.parse::<u8>()
                    .map_err(|_| format!("'{s}' has no valid prefix length"))?,
            ),
            None => (s, 32),
        };
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("'{s}' is not an IPv4 prefix like 10.0.0.0/8"))?;
        if len > 32 {
            return Err(format!("'{s}' has a prefix length over 32"));
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Ok(Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        })
    }
}

impl TryFrom<String> for Prefix {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Prefix> for String {
    fn from(p: Prefix) -> String {
        p.to_string()
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The longest security group description accepted.
pub const MAX_DESCRIPTION: usize = 255;

/// `POST /v1/security-groups`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSecurityGroup {
    pub name: Name,
    #[serde(default)]
    #[schema(schema_with = description_schema)]
    pub description: Option<String>,
}

/// A description as the handler accepts it.
fn description_schema() -> utoipa::openapi::schema::Object {
    crate::schema::nullable(crate::schema::string(
        Some(crate::schema::NO_CONTROL_PATTERN),
        0,
        Some(MAX_DESCRIPTION),
        &format!("at most {MAX_DESCRIPTION} characters, no control characters"),
    ))
    .build()
}

/// A port as a rule takes it: 0 to 65535 (`null`: none), a whole number.
fn port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    match Option::<crate::whole::Whole>::deserialize(d)? {
        None => Ok(None),
        Some(crate::whole::Whole(v)) => u16::try_from(v)
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("ports are 0 to {}, got {v}", u16::MAX))),
    }
}

fn port_schema() -> utoipa::openapi::schema::Object {
    crate::schema::nullable(crate::schema::integer(
        0,
        u16::MAX.into(),
        "a port; tcp and udp rules need port_min from 1 and port_min <= port_max",
    ))
    .build()
}

/// `POST /v1/security-groups/{id}/rules`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRule {
    pub direction: Direction,
    pub protocol: Protocol,
    #[serde(default, deserialize_with = "port")]
    #[schema(schema_with = port_schema)]
    pub port_min: Option<u16>,
    #[serde(default, deserialize_with = "port")]
    #[schema(schema_with = port_schema)]
    pub port_max: Option<u16>,
    /// Default `0.0.0.0/0` unless `remote_group` is given.
    #[serde(default)]
    #[schema(schema_with = prefix_schema, example = "10.0.0.0/8")]
    pub remote_cidr: Option<Prefix>,
    /// A security group (id or name) whose members are allowed.
    #[serde(default)]
    pub remote_group: Option<String>,
}

impl CreateRule {
    /// The port range, checked against the protocol.
    pub fn ports(&self) -> Result<Option<(u16, u16)>, String> {
        match (self.protocol, self.port_min, self.port_max) {
            (_, None, None) => Ok(None),
            (Protocol::Tcp | Protocol::Udp, Some(lo), hi) => {
                let hi = hi.unwrap_or(lo);
                if lo == 0 || lo > hi {
                    return Err(format!(
                        "port range {lo}-{hi} is invalid: ports are 1 to 65535, min <= max"
                    ));
                }
                Ok(Some((lo, hi)))
            }
            (Protocol::Tcp | Protocol::Udp, None, Some(_)) => Err("port_max needs port_min".into()),
            (p, _, _) => Err(format!("{} rules take no ports", p.as_str())),
        }
    }
}

/// One allow rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rule {
    pub id: SecurityGroupRuleId,
    pub direction: Direction,
    pub protocol: Protocol,
    pub port_min: Option<u16>,
    pub port_max: Option<u16>,
    #[schema(value_type = Option<String>)]
    pub remote_cidr: Option<Prefix>,
    pub remote_group: Option<SecurityGroupId>,
}

/// A security group with its rules.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecurityGroup {
    pub id: SecurityGroupId,
    pub name: String,
    pub project: ProjectId,
    pub description: String,
    pub rules: Vec<Rule>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_pattern_agrees_with_the_parser() {
        let re = regex::Regex::new(&prefix_pattern()).unwrap();
        let parts = [
            "10.0.0.0",
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0",
            "01.0.0.0",
            "a.b.c.d",
            "/",
            "/8",
            "/32",
            "/33",
            "/0",
            "/+8",
            "/008",
            "/-1",
            "/",
            "",
            " ",
            "8",
        ];
        let mut checked = 0;
        for a in parts {
            for b in parts {
                let s = format!("{a}{b}");
                assert_eq!(re.is_match(&s), s.parse::<Prefix>().is_ok(), "{s:?}");
                checked += 1;
            }
        }
        assert!("10.1.2.3/8".parse::<Prefix>().is_ok() && re.is_match("10.1.2.3/8"));
        assert_eq!(checked, parts.len() * parts.len());
    }

    fn rule(protocol: Protocol, lo: Option<u16>, hi: Option<u16>) -> CreateRule {
        CreateRule {
            direction: Direction::Ingress,
            protocol,
            port_min: lo,
            port_max: hi,
            remote_cidr: None,
            remote_group: None,
        }
    }

    #[test]
    fn ports_are_checked_against_the_protocol() {
        assert_eq!(
            rule(Protocol::Tcp, Some(22), None).ports().unwrap(),
            Some((22, 22))
        );
        assert_eq!(
            rule(Protocol::Udp, Some(1000), Some(2000)).ports().unwrap(),
            Some((1000, 2000))
        );
        assert!(rule(Protocol::Tcp, Some(0), None).ports().is_err());
        assert!(rule(Protocol::Tcp, Some(30), Some(20)).ports().is_err());
        assert!(rule(Protocol::Tcp, None, Some(20)).ports().is_err());
        assert!(rule(Protocol::Icmp, Some(1), None).ports().is_err());
        assert_eq!(rule(Protocol::Any, None, None).ports().unwrap(), None);
        assert!(serde_json::from_str::<CreateRule>(
            r#"{"direction":"ingress","protocol":"tcp","port_min":70000}"#
        )
        .is_err());
    }

    #[test]
    fn prefixes_normalise() {
        let p: Prefix = "10.1.2.3/8".parse().unwrap();
        assert_eq!(p.to_string(), "10.0.0.0/8");
        assert_eq!("0.0.0.0/0".parse::<Prefix>().unwrap().len, 0);
        assert_eq!(
            "192.0.2.7".parse::<Prefix>().unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
        assert!("nope".parse::<Prefix>().is_err());
    }
}
