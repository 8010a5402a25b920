//! Private networks, and the ports (NICs with addresses) on them.

use super::rows::{parse, time};
use super::{found, is_unique_violation, now_ms, Store, StoreError, StoreResult};
use nubis_api::networks::{network_domain, Cidr, Network, ServerAddress};
use nubis_api::{NetworkId, ProjectId, ServerId};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Default networks are carved from 10.64.0.0/10, one /24 each.
const DEFAULT_POOL_START: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 0);
const DEFAULT_POOL_SLASH24S: u32 = 1 << 14;

/// Whose addresses to load.
#[derive(Clone, Copy, Debug)]
pub enum AddressScope {
    Project(ProjectId),
    Host(nubis_api::HostId),
}

/// A network to insert, already validated.
pub struct NewNetwork<'a> {
    pub project: ProjectId,
    pub name: &'a str,
    pub cidr: Cidr,
    pub gateway: Ipv4Addr,
    pub dns_zone: &'a str,
}

fn corrupt(col: &str, v: &str) -> StoreError {
    StoreError::Corrupt(format!("column {col}: cannot parse '{v}'"))
}

/// A query of networks `n` (with `rest`: WHERE, ORDER BY) that also reads
/// their project's name, which their domain is made of.
macro_rules! select_networks {
    ($rest:literal) => {
        concat!(
            "SELECT n.*, p.name AS project_name FROM networks n \
             JOIN projects p ON p.id = n.project_id ",
            $rest
        )
    };
}

/// A network from a row of `select_networks!`.
fn network_from_row(row: &AnyRow) -> StoreResult<Network> {
    let cidr: String = row.try_get("cidr")?;
    let gateway: String = row.try_get("gateway")?;
    let dns_zone: String = row.try_get("dns_zone")?;
    let project_name: String = row.try_get("project_name")?;
    Ok(Network {
        id: parse(row, "id")?,
        name: row.try_get("name")?,
        project: parse(row, "project_id")?,
        cidr: cidr.parse().map_err(|_| corrupt("cidr", &cidr))?,
        gateway: gateway.parse().map_err(|_| corrupt("gateway", &gateway))?,
        domain: network_domain(&project_name, &dns_zone),
        dns_zone,
        created_at: time(row, "created_at")?,
    })
}

impl Store {
    /// Creates a network; its subnet must not overlap any other network of
    /// the cloud (hosts route between them, so subnets must be unique).
    pub async fn create_network(&self, new: &NewNetwork<'_>) -> StoreResult<Network> {
        let mut tx = self.begin_write().await?;
        if new.name != super::quotas::DEFAULT_NETWORK {
            let extra = nubis_api::quotas::QuotaUsage {
                networks: 1,
                ..nubis_api::quotas::QuotaUsage::default_zero()
            };
            super::quotas::check_quota(&mut tx, new.project, &extra).await?;
        }
        let id = NetworkId::new();
        // Insert first: on SQLite this takes the write lock, so the overlap
        // check below cannot race with another create.
        let res = sqlx::query(
            "INSERT INTO networks (id, project_id, name, cidr, gateway, dns_zone, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.to_string())
        .bind(new.project.to_string())
        .bind(new.name)
        .bind(new.cidr.to_string())
        .bind(new.gateway.to_string())
        .bind(new.dns_zone)
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        match res {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!(
                    "a network named '{}' already exists in this project",
                    new.name
                )))
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let rows = sqlx::query("SELECT cidr FROM networks WHERE id <> $1")
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await?;
        for row in rows {
            let other: String = row.try_get("cidr")?;
            let other: Cidr = other.parse().map_err(|_| corrupt("cidr", &other))?;
            if other.overlaps(new.cidr) {
                return Err(StoreError::Conflict(format!(
                    "{} overlaps an existing network; choose another range",
                    new.cidr
                )));
            }
        }
        tx.commit().await?;
        self.network(new.project, &id.to_string()).await
    }

    /// A network of `project` by id or name.
    pub async fn network(&self, project: ProjectId, id_or_name: &str) -> StoreResult<Network> {
        let row = sqlx::query(select_networks!(
            "WHERE (n.id = $1 OR n.name = $1) AND n.project_id = $2"
        ))
        .bind(id_or_name)
        .bind(project.to_string())
        .fetch_optional(self.pool())
        .await?;
        network_from_row(&found(row)?)
    }

    /// A network regardless of owner (for building agents' desired state).
    pub async fn network_by_id(&self, id: NetworkId) -> StoreResult<Network> {
        let row = sqlx::query(select_networks!("WHERE n.id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        network_from_row(&found(row)?)
    }

    pub async fn list_networks(&self, project: ProjectId) -> StoreResult<Vec<Network>> {
        let rows = sqlx::query(select_networks!(
            "WHERE n.project_id = $1 ORDER BY n.created_at, n.name"
        ))
        .bind(project.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(network_from_row).collect()
    }

    /// Deletes a network no port uses.
    pub async fn delete_network(&self, project: ProjectId, id: NetworkId) -> StoreResult<()> {
        self.network(project, &id.to_string()).await?;
        let used: i64 = sqlx::query("SELECT COUNT(*) AS n FROM ports WHERE network_id = $1")
            .bind(id.to_string())
            .fetch_one(self.pool())
            .await?
            .try_get("n")?;
        if used > 0 {
            return Err(StoreError::Conflict(format!(
                "the network still has {used} server port(s); delete those servers first"
            )));
        }
        sqlx::query("DELETE FROM networks WHERE id = $1 AND project_id = $2")
            .bind(id.to_string())
            .bind(project.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The project's `default` network, created on first use with the first
    /// free /24 of `DEFAULT_POOL`.
    pub async fn ensure_default_network(
        &self,
        project: ProjectId,
        dns_zone: &str,
    ) -> StoreResult<Network> {
        if let Ok(n) = self.network(project, "default").await {
            return Ok(n);
        }
        let taken: Vec<Cidr> = sqlx::query("SELECT cidr FROM networks")
            .fetch_all(self.pool())
            .await?
            .iter()
            .filter_map(|r| r.try_get::<String, _>("cidr").ok()?.parse().ok())
            .collect();
        let start = u32::from(DEFAULT_POOL_START);
        for i in 0..DEFAULT_POOL_SLASH24S {
            let candidate = Cidr::new(Ipv4Addr::from(start + (i << 8)), 24).expect("aligned /24");
            if taken.iter().any(|t| t.overlaps(candidate)) {
                continue;
            }
            let new = NewNetwork {
                project,
                name: "default",
                cidr: candidate,
                gateway: candidate.first_host(),
                dns_zone,
            };
            match self.create_network(&new).await {
                Ok(n) => return Ok(n),
                // Someone else made it, or took this range: look again.
                Err(StoreError::Conflict(_)) => {
                    if let Ok(n) = self.network(project, "default").await {
                        return Ok(n);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict(
            "no free range left for a default network".into(),
        ))
    }

    /// Addresses of the servers in `scope`, in NIC order.
    pub async fn addresses(
        &self,
        scope: AddressScope,
    ) -> StoreResult<HashMap<ServerId, Vec<ServerAddress>>> {
        let query = match scope {
            AddressScope::Project(p) => sqlx::query(
                "SELECT p.server_id, p.ip, p.mac, n.id AS network_id, n.name AS network_name \
                 FROM ports p JOIN networks n ON n.id = p.network_id \
                 JOIN servers s ON s.id = p.server_id WHERE s.project_id = $1 \
                 ORDER BY p.server_id, p.nic_index",
            )
            .bind(p.to_string()),
            AddressScope::Host(h) => sqlx::query(
                "SELECT p.server_id, p.ip, p.mac, n.id AS network_id, n.name AS network_name \
                 FROM ports p JOIN networks n ON n.id = p.network_id \
                 JOIN servers s ON s.id = p.server_id WHERE s.host_id = $1 \
                 ORDER BY p.server_id, p.nic_index",
            )
            .bind(h.to_string()),
        };
        let mut out: HashMap<ServerId, Vec<ServerAddress>> = HashMap::new();
        for row in query.fetch_all(self.pool()).await? {
            let ip: String = row.try_get("ip")?;
            out.entry(parse(&row, "server_id")?)
                .or_default()
                .push(ServerAddress {
                    network: parse(&row, "network_id")?,
                    network_name: row.try_get("network_name")?,
                    ip: ip.parse().map_err(|_| corrupt("ip", &ip))?,
                    mac: row.try_get("mac")?,
                });
        }
        Ok(out)
    }

    /// Every (server name, project name, address) on a network, for its DNS.
    pub async fn network_dns(
        &self,
        network: NetworkId,
    ) -> StoreResult<Vec<(String, String, Ipv4Addr)>> {
        let rows = sqlx::query(
            "SELECT s.name AS server_name, pr.name AS project_name, p.ip FROM ports p \
             JOIN servers s ON s.id = p.server_id JOIN projects pr ON pr.id = s.project_id \
             WHERE p.network_id = $1 AND s.deleting = 0 ORDER BY s.name",
        )
        .bind(network.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let ip: String = row.try_get("ip")?;
                Ok((
                    row.try_get("server_name")?,
                    row.try_get("project_name")?,
                    ip.parse().map_err(|_| corrupt("ip", &ip))?,
                ))
            })
            .collect()
    }
}
