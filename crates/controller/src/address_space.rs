//! Which IPv4 ranges tenants may use.
//!
//! A tenant network's gateway sits on a bridge of every host that runs one
//! of its servers, which puts the network's range into the host's routing
//! table. A range the tenant chose freely could therefore capture the host's
//! own traffic (its LAN, its DNS resolver, the controller). So, as Neutron's
//! subnet pools do, the operator gives the address space (`--tenant-pool`,
//! default [`DEFAULT_TENANT_POOL`]) and every range that enters the cloud is
//! held against these rules:
//!
//! - a network lies inside a tenant pool, touches none of the special
//!   ranges ([`SPECIAL_RANGES`]: unspecified, loopback, link-local with the
//!   metadata address, multicast, reserved and broadcast), no floating-IP
//!   pool, and no address or route any host reported for itself;
//! - its gateway is a host address of it (not its network or broadcast
//!   address), and so is every fixed IP, which is not the gateway either;
//! - a floating-IP pool overlaps no tenant pool and no network.
//!
//! Each refusal is a [`Violation`] whose message names the rule. Overlaps
//! between networks are the store's to check (in the create transaction).

use nubis_api::agent::HostAddressing;
use nubis_api::floating_ips::FloatingIpPool;
use nubis_api::networks::Cidr;
use nubis_api::security_groups::Prefix;
use std::fmt;
use std::net::Ipv4Addr;

/// The tenant pool when the operator names none.
pub const DEFAULT_TENANT_POOL: &str = "10.64.0.0/10";

/// Ranges no tenant pool or network may touch, whatever the pools say, and
/// what they are (for messages).
pub const SPECIAL_RANGES: &[(&str, &str)] = &[
    ("0.0.0.0/8", "the unspecified range"),
    ("127.0.0.0/8", "the loopback range"),
    (
        "169.254.0.0/16",
        "the link-local range (with the metadata address 169.254.169.254)",
    ),
    ("224.0.0.0/4", "the multicast range"),
    (
        "240.0.0.0/4",
        "the reserved range (with the broadcast address 255.255.255.255)",
    ),
];

/// The size of a project's automatic `default` network.
const DEFAULT_NETWORK_PREFIX: u8 = 24;

/// An inclusive range of IPv4 addresses, as numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub first: u32,
    pub last: u32,
}

impl Span {
    pub fn of_prefix(p: Prefix) -> Self {
        let first = u32::from(p.addr);
        let size = if p.len == 0 {
            u32::MAX
        } else {
            (1u32 << (32 - u32::from(p.len))) - 1
        };
        Self {
            first,
            last: first | size,
        }
    }

    pub fn of_cidr(c: Cidr) -> Self {
        Self {
            first: u32::from(c.network()),
            last: u32::from(c.broadcast()),
        }
    }

    pub fn of_addresses(first: Ipv4Addr, last: Ipv4Addr) -> Self {
        Self {
            first: u32::from(first),
            last: u32::from(last),
        }
    }

    pub fn overlaps(self, other: Span) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// Whether all of `inner` lies inside this span.
    pub fn covers(self, inner: Span) -> bool {
        self.first <= inner.first && inner.last <= self.last
    }
}

fn prefix(s: &str) -> Prefix {
    s.parse().expect("a valid built-in prefix")
}

/// The first special range `span` touches: (range, what it is).
fn special_range(span: Span) -> Option<(Prefix, &'static str)> {
    SPECIAL_RANGES
        .iter()
        .map(|(range, what)| (prefix(range), *what))
        .find(|(range, _)| Span::of_prefix(*range).overlaps(span))
}

/// Why a range or an address may not be used. The message names the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("{range} overlaps {what} {special}")]
    Special {
        range: String,
        special: Prefix,
        what: &'static str,
    },
    #[error("{cidr} is outside the tenant address pools ({pools}); choose a range inside one")]
    OutsidePools { cidr: Cidr, pools: TenantPools },
    #[error("{range} overlaps the floating-IP pool '{pool}' ({first}-{last})")]
    FloatingPool {
        range: String,
        pool: String,
        first: Ipv4Addr,
        last: Ipv4Addr,
    },
    #[error("{cidr} overlaps the address {ip}/{prefix_len} of host {host}")]
    HostAddress {
        cidr: Cidr,
        ip: Ipv4Addr,
        prefix_len: u8,
        host: String,
    },
    #[error("{cidr} overlaps the route {route} of host {host}")]
    HostRoute {
        cidr: Cidr,
        route: Prefix,
        host: String,
    },
    #[error("gateway {gateway} is not a host address of {cidr} (inside it, not its network or broadcast address)")]
    Gateway { gateway: Ipv4Addr, cidr: Cidr },
    #[error("fixed IP {ip} is {why} of {cidr}")]
    FixedIp {
        ip: Ipv4Addr,
        cidr: Cidr,
        why: &'static str,
    },
    #[error("{range} overlaps the tenant pool {pool}")]
    TenantPool { range: String, pool: Prefix },
    #[error("{range} overlaps the network {cidr}")]
    Network { range: String, cidr: Cidr },
    #[error("tenant pool {pool} must be a /1 to a /{max}", max = nubis_api::networks::MAX_PREFIX)]
    PoolSize { pool: Prefix },
}

/// The operator's tenant address pools: networks must lie inside one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantPools(Vec<Prefix>);

impl TenantPools {
    /// Checks each pool: not larger than a /1 or smaller than the smallest
    /// network, touching no special range.
    pub fn new(pools: Vec<Prefix>) -> Result<Self, Violation> {
        for &pool in &pools {
            if pool.len == 0 || pool.len > nubis_api::networks::MAX_PREFIX {
                return Err(Violation::PoolSize { pool });
            }
            if let Some((special, what)) = special_range(Span::of_prefix(pool)) {
                return Err(Violation::Special {
                    range: pool.to_string(),
                    special,
                    what,
                });
            }
        }
        if pools.is_empty() {
            return Ok(Self::default());
        }
        Ok(Self(pools))
    }

    pub fn pools(&self) -> &[Prefix] {
        &self.0
    }

    /// Whether `cidr` lies wholly inside one pool.
    pub fn contain(&self, cidr: Cidr) -> bool {
        self.0
            .iter()
            .any(|p| Span::of_prefix(*p).covers(Span::of_cidr(cidr)))
    }

    /// The ranges a `default` network may get, in order: each pool cut
    /// into /24s (a pool smaller than that is one candidate).
    pub fn default_network_candidates(&self) -> impl Iterator<Item = Cidr> + '_ {
        self.0.iter().flat_map(|pool| {
            let len = pool.len.max(DEFAULT_NETWORK_PREFIX);
            let span = Span::of_prefix(*pool);
            let step = 1u64 << (32 - u32::from(len));
            (u64::from(span.first)..=u64::from(span.last))
                .step_by(step as usize)
                .filter_map(move |start| Cidr::new(Ipv4Addr::from(start as u32), len).ok())
        })
    }
}

impl Default for TenantPools {
    fn default() -> Self {
        Self(vec![prefix(DEFAULT_TENANT_POOL)])
    }
}

impl fmt::Display for TenantPools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(|p| p.to_string()).collect();
        f.write_str(&names.join(", "))
    }
}

/// A host's name with the addresses and routes it reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRanges {
    pub host: String,
    pub addressing: HostAddressing,
}

/// Everything a new range is held against (other networks aside).
#[derive(Clone, Debug, Default)]
pub struct AddressSpace {
    pub tenant_pools: TenantPools,
    pub floating_pools: Vec<FloatingIpPool>,
    pub hosts: Vec<HostRanges>,
}

impl AddressSpace {
    /// Whether a network on `cidr` with `gateway` may exist.
    pub fn check_network(&self, cidr: Cidr, gateway: Ipv4Addr) -> Result<(), Violation> {
        self.check_range(cidr)?;
        if !cidr.is_host(gateway) {
            return Err(Violation::Gateway { gateway, cidr });
        }
        Ok(())
    }

    /// Every rule about the range itself, the gateway aside.
    pub fn check_range(&self, cidr: Cidr) -> Result<(), Violation> {
        let span = Span::of_cidr(cidr);
        if let Some((special, what)) = special_range(span) {
            return Err(Violation::Special {
                range: cidr.to_string(),
                special,
                what,
            });
        }
        if !self.tenant_pools.contain(cidr) {
            return Err(Violation::OutsidePools {
                cidr,
                pools: self.tenant_pools.clone(),
            });
        }
        if let Some(pool) = self
            .floating_pools
            .iter()
            .find(|p| Span::of_addresses(p.first, p.last).overlaps(span))
        {
            return Err(Violation::FloatingPool {
                range: cidr.to_string(),
                pool: pool.name.clone(),
                first: pool.first,
                last: pool.last,
            });
        }
        self.check_hosts(cidr)
    }

    /// The range touches no address (with its subnet) and no route of any
    /// host. The default route (/0) is "everything else", not a range.
    fn check_hosts(&self, cidr: Cidr) -> Result<(), Violation> {
        let span = Span::of_cidr(cidr);
        for host in &self.hosts {
            for a in &host.addressing.addresses {
                let subnet: Prefix = format!("{}/{}", a.ip, a.prefix_len.min(32))
                    .parse()
                    .expect("an address and a length up to 32");
                if Span::of_prefix(subnet).overlaps(span) {
                    return Err(Violation::HostAddress {
                        cidr,
                        ip: a.ip,
                        prefix_len: a.prefix_len,
                        host: host.host.clone(),
                    });
                }
            }
            for r in &host.addressing.routes {
                if r.destination.len > 0 && Span::of_prefix(r.destination).overlaps(span) {
                    return Err(Violation::HostRoute {
                        cidr,
                        route: r.destination,
                        host: host.host.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Whether `ip` may be a server's fixed address on a network on `cidr`
/// with `gateway`: inside it, and not its network, broadcast or gateway
/// address.
pub fn check_fixed_ip(cidr: Cidr, gateway: Ipv4Addr, ip: Ipv4Addr) -> Result<(), Violation> {
    let why = if !cidr.contains(ip) {
        "outside the network"
    } else if ip == cidr.network() {
        "the network address"
    } else if ip == cidr.broadcast() {
        "the broadcast address"
    } else if ip == gateway {
        "the gateway"
    } else {
        return Ok(());
    };
    Err(Violation::FixedIp { ip, cidr, why })
}

/// Whether a floating-IP pool `first`-`last` may exist: it overlaps no
/// tenant pool and no network (their routes would shadow each other).
pub fn check_floating_pool(
    first: Ipv4Addr,
    last: Ipv4Addr,
    tenant_pools: &TenantPools,
    networks: &[Cidr],
) -> Result<(), Violation> {
    let span = Span::of_addresses(first, last);
    let range = format!("{first}-{last}");
    if let Some((special, what)) = special_range(span) {
        return Err(Violation::Special {
            range,
            special,
            what,
        });
    }
    if let Some(pool) = tenant_pools
        .pools()
        .iter()
        .find(|p| Span::of_prefix(**p).overlaps(span))
    {
        return Err(Violation::TenantPool { range, pool: *pool });
    }
    if let Some(cidr) = networks.iter().find(|c| Span::of_cidr(**c).overlaps(span)) {
        return Err(Violation::Network { range, cidr: *cidr });
    }
    Ok(())
}

/// An existing network as `audit` needs it.
#[derive(Clone, Debug)]
pub struct ExistingNetwork {
    pub id: String,
    pub name: String,
    pub project: String,
    pub cidr: Cidr,
    pub gateway: Ipv4Addr,
}

/// An existing port (a server's address) as `audit` needs it.
#[derive(Clone, Debug)]
pub struct ExistingPort {
    pub network_id: String,
    pub server: String,
    pub ip: Ipv4Addr,
}

/// One existing row that breaks a rule (made before the rule, or before
/// the operator narrowed the pools). It keeps working; `nubis admin check`
/// lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What: `network alice/lan (10.0.0.0/24)`, `server web on alice/lan`.
    pub subject: String,
    pub violation: Violation,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.violation)
    }
}

/// Every network and fixed IP in the store that breaks a rule today.
pub fn audit(
    space: &AddressSpace,
    networks: &[ExistingNetwork],
    ports: &[ExistingPort],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for n in networks {
        if let Err(violation) = space.check_network(n.cidr, n.gateway) {
            findings.push(Finding {
                subject: format!("network {}/{} ({})", n.project, n.name, n.cidr),
                violation,
            });
        }
    }
    for p in ports {
        let Some(n) = networks.iter().find(|n| n.id == p.network_id) else {
            continue;
        };
        if let Err(violation) = check_fixed_ip(n.cidr, n.gateway, p.ip) {
            findings.push(Finding {
                subject: format!("server {} on network {}/{}", p.server, n.project, n.name),
                violation,
            });
        }
    }
    findings
}

#[cfg(test)]
mod tests;
