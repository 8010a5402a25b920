//! The reads a host's desired state is built from, set-based: one statement
//! for all of a host's servers (or networks) instead of one per server,
//! since every change in a project makes each of its hosts compute its
//! state again.

use super::in_lists::fetch_in;
use super::rows::parse;
use super::{StoreError, StoreResult};
use crate::store::Store;
use nubis_api::images::Image;
use nubis_api::networks::Network;
use nubis_api::{HostId, ImageId, NetworkId, PortId, SecurityGroupId, ServerId};
use sqlx::Row;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// A port as a host's desired state needs it: (port, network, MAC, address).
pub type PortRow = (PortId, NetworkId, String, Ipv4Addr);

/// A network with its VXLAN id.
pub struct NetworkWithVni {
    pub network: Network,
    pub vni: u32,
}

fn ids<T: ToString>(ids: &[T]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

fn address(text: &str, col: &str) -> StoreResult<Ipv4Addr> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("column {col}: cannot parse '{text}'")))
}

impl Store {
    /// The ports of each of `servers`, in NIC order.
    pub async fn ports_of_servers(
        &self,
        servers: &[ServerId],
    ) -> StoreResult<HashMap<ServerId, Vec<PortRow>>> {
        let rows = fetch_in(
            self.pool(),
            "SELECT server_id, id, network_id, mac, ip FROM ports WHERE server_id IN ({ids}) \
             ORDER BY server_id, nic_index",
            &[],
            &ids(servers),
        )
        .await?;
        let mut out: HashMap<ServerId, Vec<PortRow>> = HashMap::new();
        for row in rows {
            let ip: String = row.try_get("ip")?;
            out.entry(parse(&row, "server_id")?).or_default().push((
                parse(&row, "id")?,
                parse(&row, "network_id")?,
                row.try_get("mac")?,
                address(&ip, "ip")?,
            ));
        }
        Ok(out)
    }

    /// The security groups of each of `servers`, by group name.
    pub async fn security_groups_of_servers(
        &self,
        servers: &[ServerId],
    ) -> StoreResult<HashMap<ServerId, Vec<SecurityGroupId>>> {
        let rows = fetch_in(
            self.pool(),
            "SELECT sg.server_id, g.id FROM server_security_groups sg \
             JOIN security_groups g ON g.id = sg.group_id \
             WHERE sg.server_id IN ({ids}) ORDER BY sg.server_id, g.name",
            &[],
            &ids(servers),
        )
        .await?;
        let mut out: HashMap<ServerId, Vec<SecurityGroupId>> = HashMap::new();
        for row in rows {
            out.entry(parse(&row, "server_id")?)
                .or_default()
                .push(parse(&row, "id")?);
        }
        Ok(out)
    }

    /// The images `ids` (any project's), by id; unknown ids are left out.
    pub async fn images_by_ids(&self, images: &[ImageId]) -> StoreResult<HashMap<ImageId, Image>> {
        let rows = fetch_in(
            self.pool(),
            "SELECT * FROM images WHERE id IN ({ids})",
            &[],
            &ids(images),
        )
        .await?;
        rows.iter()
            .map(|row| {
                let image = super::images::image_from_row(row)?;
                Ok((image.id, image))
            })
            .collect()
    }

    /// The networks `ids` (any project's) with their VNIs; unknown ids are
    /// left out.
    pub async fn networks_by_ids(
        &self,
        networks: &[NetworkId],
    ) -> StoreResult<HashMap<NetworkId, NetworkWithVni>> {
        let rows = fetch_in(
            self.pool(),
            "SELECT n.*, p.name AS project_name FROM networks n \
             JOIN projects p ON p.id = n.project_id WHERE n.id IN ({ids})",
            &[],
            &ids(networks),
        )
        .await?;
        rows.iter()
            .map(|row| {
                let network = super::networks::network_from_row(row)?;
                let vni: Option<i64> = row.try_get("vni")?;
                let vni = vni
                    .filter(|v| (1..=super::overlay::MAX_VNI).contains(v))
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("network {} has no valid VNI", network.id))
                    })?;
                Ok((network.id, NetworkWithVni { network, vni }))
            })
            .collect()
    }

    /// Every (server name, project name, address) on each of `networks`,
    /// for their DNS, by server name.
    pub async fn networks_dns(
        &self,
        networks: &[NetworkId],
    ) -> StoreResult<HashMap<NetworkId, Vec<(String, String, Ipv4Addr)>>> {
        let rows = fetch_in(
            self.pool(),
            "SELECT p.network_id, s.name AS server_name, pr.name AS project_name, p.ip \
             FROM ports p JOIN servers s ON s.id = p.server_id \
             JOIN projects pr ON pr.id = s.project_id \
             WHERE p.network_id IN ({ids}) AND s.deleting = 0 ORDER BY s.name",
            &[],
            &ids(networks),
        )
        .await?;
        let mut out: HashMap<NetworkId, Vec<_>> = HashMap::new();
        for row in rows {
            let ip: String = row.try_get("ip")?;
            out.entry(parse(&row, "network_id")?).or_default().push((
                row.try_get("server_name")?,
                row.try_get("project_name")?,
                address(&ip, "ip")?,
            ));
        }
        Ok(out)
    }

    /// For each of `networks`, (tunnel IP, MAC) of its ports on hosts other
    /// than `host` (see [`Store::network_remote_ports`]: a server moving
    /// live is on its move's source until the switch-over).
    pub async fn networks_remote_ports(
        &self,
        networks: &[NetworkId],
        host: HostId,
    ) -> StoreResult<HashMap<NetworkId, Vec<(Ipv4Addr, String)>>> {
        let rows = fetch_in(
            self.pool(),
            "SELECT p.network_id, h.tunnel_ip, p.mac FROM ports p \
             JOIN servers s ON s.id = p.server_id \
             LEFT JOIN migrations m ON m.server_id = s.id AND m.state = 'running' \
                 AND m.arrival = 'live' \
             JOIN hosts h ON h.id = COALESCE(m.source_host, s.host_id) \
             WHERE h.id <> $1 AND h.tunnel_ip IS NOT NULL AND p.network_id IN ({ids})",
            &[host.to_string()],
            &ids(networks),
        )
        .await?;
        let mut out: HashMap<NetworkId, Vec<_>> = HashMap::new();
        for row in rows {
            let ip: String = row.try_get("tunnel_ip")?;
            out.entry(parse(&row, "network_id")?)
                .or_default()
                .push((address(&ip, "tunnel_ip")?, row.try_get("mac")?));
        }
        Ok(out)
    }
}
