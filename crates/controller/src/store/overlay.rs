//! Networks across hosts: each host's underlay ("tunnel") address, each
//! network's VXLAN network identifier (VNI), and which other hosts have
//! ports on a network (the peers a host's VXLAN device sends to).

use super::{Store, StoreError, StoreResult};
use nubis_api::agent::OverlayPeer;
use nubis_api::{HostId, NetworkId, ServerId};
use sqlx::Row;
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

/// The largest VNI (VXLAN identifiers have 24 bits).
pub const MAX_VNI: i64 = 0xFF_FFFF;

/// The SQL expression of the next free VNI: one past the largest in use.
/// Used inside the INSERT of a network, so on SQLite (one writer) it cannot
/// race; on PostgreSQL two concurrent creates may compute the same one, and
/// the unique index makes the second fail (see [`is_vni_violation`]), to be
/// tried again.
pub(super) const NEXT_VNI: &str = "(SELECT COALESCE(MAX(vni), 0) + 1 FROM networks)";

/// Whether an insert failed on the uniqueness of VNIs (a concurrent create
/// took the same one), rather than on the network's name.
pub(super) fn is_vni_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.constraint() == Some("networks_by_vni") || db.message().contains("networks.vni")
        }
        _ => false,
    }
}

/// The peers of a network as a host sees them, from the (tunnel IP, MAC)
/// of every port on another host: grouped by host, sorted, a host that is
/// this one's own tunnel address left out (it would send to itself).
pub fn peers_from_ports(
    ports: impl IntoIterator<Item = (Ipv4Addr, String)>,
    own_tunnel: Option<Ipv4Addr>,
) -> Vec<OverlayPeer> {
    let mut by_host: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
    for (ip, mac) in ports {
        if Some(ip) == own_tunnel || ip.is_unspecified() || ip.is_loopback() {
            continue;
        }
        by_host.entry(ip).or_default().push(mac.to_lowercase());
    }
    by_host
        .into_iter()
        .map(|(tunnel_ip, mut macs)| {
            macs.sort();
            macs.dedup();
            OverlayPeer { tunnel_ip, macs }
        })
        .collect()
}

impl Store {
    /// Records the tunnel address a host reported (`None` clears it).
    pub async fn set_host_tunnel_ip(&self, host: HostId, ip: Option<Ipv4Addr>) -> StoreResult<()> {
        sqlx::query("UPDATE hosts SET tunnel_ip = $1 WHERE id = $2")
            .bind(ip.map(|ip| ip.to_string()))
            .bind(host.to_string())
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// The tunnel address a host reported, if any.
    pub async fn host_tunnel_ip(&self, host: HostId) -> StoreResult<Option<Ipv4Addr>> {
        let row = sqlx::query("SELECT tunnel_ip FROM hosts WHERE id = $1")
            .bind(host.to_string())
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound);
        };
        let ip: Option<String> = row.try_get("tunnel_ip")?;
        ip.map(|s| {
            s.parse()
                .map_err(|_| StoreError::Corrupt(format!("column tunnel_ip: cannot parse '{s}'")))
        })
        .transpose()
    }

    /// A network's VNI.
    pub async fn network_vni(&self, network: NetworkId) -> StoreResult<u32> {
        self.networks_by_ids(&[network])
            .await?
            .remove(&network)
            .map(|n| n.vni)
            .ok_or(StoreError::NotFound)
    }

    /// The hosts whose desired state lists a network `server` has a port
    /// on: those of the network's servers (the server's own included), and
    /// the sources of moves under way of such servers (a departing server
    /// keeps its networks there). A change of where `server` is changes
    /// the VXLAN peers (and FDB) of exactly these hosts.
    pub async fn hosts_on_networks_of(&self, server: ServerId) -> StoreResult<HashSet<HostId>> {
        let rows = sqlx::query(
            "SELECT s.host_id AS host FROM ports p JOIN servers s ON s.id = p.server_id \
             WHERE s.host_id IS NOT NULL \
             AND p.network_id IN (SELECT network_id FROM ports WHERE server_id = $1) \
             UNION \
             SELECT m.source_host AS host FROM migrations m JOIN ports p ON p.server_id = m.server_id \
             WHERE m.state = 'running' \
             AND p.network_id IN (SELECT network_id FROM ports WHERE server_id = $1)",
        )
        .bind(server.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| super::rows::parse(r, "host")).collect()
    }

    /// (tunnel IP, MAC) of every port of `network` on a host other than
    /// `host` that reported a tunnel address. A server being moved live
    /// is where its guest runs: on the move's source until the switch-over
    /// ends the move, although it is placed on the target from the start
    /// (else its peers on other hosts would send to a target that does not
    /// run it yet, cutting its connections for the whole migration).
    pub async fn network_remote_ports(
        &self,
        network: NetworkId,
        host: HostId,
    ) -> StoreResult<Vec<(Ipv4Addr, String)>> {
        Ok(self
            .networks_remote_ports(&[network], host)
            .await?
            .remove(&network)
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn peers_are_grouped_by_host_sorted_and_never_this_host() {
        let ports = vec![
            (ip("172.31.0.13"), "52:54:00:00:00:0B".to_owned()),
            (ip("172.31.0.12"), "52:54:00:00:00:0a".to_owned()),
            (ip("172.31.0.13"), "52:54:00:00:00:09".to_owned()),
            (ip("172.31.0.11"), "52:54:00:00:00:01".to_owned()),
            (ip("127.0.0.1"), "52:54:00:00:00:02".to_owned()),
        ];
        let peers = peers_from_ports(ports, Some(ip("172.31.0.11")));
        assert_eq!(
            peers,
            vec![
                OverlayPeer {
                    tunnel_ip: ip("172.31.0.12"),
                    macs: vec!["52:54:00:00:00:0a".into()],
                },
                OverlayPeer {
                    tunnel_ip: ip("172.31.0.13"),
                    macs: vec!["52:54:00:00:00:09".into(), "52:54:00:00:00:0b".into()],
                },
            ]
        );
        // Positive control: without an own address, that host is a peer too.
        assert_eq!(
            peers_from_ports(
                vec![(ip("172.31.0.11"), "52:54:00:00:00:01".to_owned())],
                None
            )
            .len(),
            1
        );
        assert!(peers_from_ports(Vec::new(), None).is_empty());
    }
}
