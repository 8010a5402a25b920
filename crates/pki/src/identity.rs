//! Who a certificate of the cluster CA names: a host (by id) or a
//! controller. The role is a URI subject alternative name, so a host
//! certificate can never pass for a controller's or another host's.

use std::net::IpAddr;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// URI SAN of a host certificate: this prefix and the host id.
pub const HOST_URI_PREFIX: &str = "nubis:host:";
/// URI SAN of a controller certificate.
pub const CONTROLLER_URI: &str = "nubis:controller";

/// The role a certificate grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// An agent, for the host with this id (a UUID, as text).
    Host(String),
    Controller,
}

/// What the peer's certificate says (already verified by the TLS handshake).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub role: Role,
    /// SHA-256 of the certificate (DER), hex.
    pub fingerprint: String,
    /// Its DNS names and IP addresses: the only ones it may be reached at.
    pub names: Vec<String>,
}

impl PeerIdentity {
    /// Reads a certificate; `None` if it does not parse or names no role.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        let mut role = None;
        let mut names = Vec::new();
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) if *uri == CONTROLLER_URI => role = Some(Role::Controller),
                GeneralName::URI(uri) => {
                    if let Some(id) = uri.strip_prefix(HOST_URI_PREFIX) {
                        role = Some(Role::Host(id.to_owned()));
                    }
                }
                GeneralName::DNSName(dns) => names.push(dns.to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).ok()?),
                        16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).ok()?),
                        _ => continue,
                    };
                    names.push(ip.to_string());
                }
                _ => {}
            }
        }
        Some(Self {
            role: role?,
            fingerprint: crate::fingerprint(der),
            names,
        })
    }

    /// The host id, if this is a host's certificate.
    pub fn host(&self) -> Option<&str> {
        match &self.role {
            Role::Host(id) => Some(id),
            Role::Controller => None,
        }
    }

    /// Whether the certificate names the host part of `url` (an IP address
    /// or DNS name), i.e. whether its holder may be reached there.
    pub fn names_url_host(&self, url: &str) -> bool {
        url_host(url).is_some_and(|host| self.names.contains(&host))
    }
}

/// The host part of a URL, lowercase, IPv6 without brackets.
pub fn url_host(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = match parsed.host()? {
        url::Host::Domain(d) => d.to_ascii_lowercase(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    };
    Some(host)
}
