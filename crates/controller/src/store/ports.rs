//! Ports (server NICs) of a project, as the Neutron API lists them.

use super::rows::{parse, time};
use super::{StoreError, StoreResult};
use crate::store::Store;
use chrono::{DateTime, Utc};
use nubis_api::{NetworkId, PortId, ProjectId, ServerId};
use sqlx::Row;
use std::net::Ipv4Addr;

/// One NIC of a server, with what the Neutron API shows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRecord {
    pub id: PortId,
    pub server: ServerId,
    pub network: NetworkId,
    pub mac: String,
    pub ip: Ipv4Addr,
    /// What the server's host last saw of it (`running`, `stopped`, ...; empty: nothing yet).
    pub server_status: String,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Every port of the project's servers, in server and NIC order.
    pub async fn project_ports(&self, project: ProjectId) -> StoreResult<Vec<PortRecord>> {
        sqlx::query(
            "SELECT p.id, p.server_id, p.network_id, p.mac, p.ip, p.created_at, \
             COALESCE(s.observed_power, '') AS server_status FROM ports p JOIN servers s ON s.id = p.server_id \
             WHERE s.project_id = $1 ORDER BY s.created_at, p.server_id, p.nic_index",
        )
        .bind(project.to_string())
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|row| {
            let ip: String = row.try_get("ip")?;
            Ok(PortRecord {
                id: parse(row, "id")?,
                server: parse(row, "server_id")?,
                network: parse(row, "network_id")?,
                mac: row.try_get("mac")?,
                ip: ip
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("column ip: cannot parse '{ip}'")))?,
                server_status: row.try_get("server_status")?,
                created_at: time(row, "created_at")?,
            })
        })
        .collect()
    }
}
