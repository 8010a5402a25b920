//! Private networks, and the ports (NICs with addresses) on them.

use super::rows::{parse, time};
use super::{found, now_ms, OrConflict, Store, StoreError, StoreResult};
use crate::address_space::{self, AddressSpace, ExistingNetwork, ExistingPort, Finding};
use nubis_api::networks::{network_domain, Cidr, Network, ServerAddress};
use nubis_api::{NetworkId, ProjectId, ServerId};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Whose addresses to load.
#[derive(Clone, Copy, Debug)]
pub enum AddressScope {
    Project(ProjectId),
    Host(nubis_api::HostId),
}

/// A create that lost the race for a VNI to a concurrent one.
struct VniTaken;

/// A network to insert, already validated.
pub struct NewNetwork<'a> {
    pub project: ProjectId,
    pub name: &'a str,
    pub cidr: Cidr,
    pub gateway: Ipv4Addr,
    pub dns_zone: &'a str,
}

/// A port's server and address from a row with `server_id`, `ip`, `mac`,
/// `network_id` and `network_name`.
pub(super) fn address_from_row(row: &AnyRow) -> StoreResult<(ServerId, ServerAddress)> {
    let ip: String = row.try_get("ip")?;
    Ok((
        parse(row, "server_id")?,
        ServerAddress {
            network: parse(row, "network_id")?,
            network_name: row.try_get("network_name")?,
            ip: ip.parse().map_err(|_| corrupt("ip", &ip))?,
            mac: row.try_get("mac")?,
        },
    ))
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
pub(super) fn network_from_row(row: &AnyRow) -> StoreResult<Network> {
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
    /// Creates a network; its subnet must pass the address-space rules
    /// (`address_space`: inside a tenant pool, clear of special ranges,
    /// floating-IP pools and the hosts' own ranges) and must not overlap any
    /// other network of the cloud (hosts route between them, so subnets must
    /// be unique).
    /// Each network gets the next free VXLAN identifier (VNI); a create
    /// that lost a race for one (PostgreSQL) is tried again.
    pub async fn create_network(&self, new: &NewNetwork<'_>) -> StoreResult<Network> {
        self.create_network_with_id(NetworkId::new(), new).await
    }

    /// [`Self::create_network`] with the id chosen by the caller: the
    /// Neutron API gives a pending network (`pending_networks`) its range
    /// this way, and the pending row goes in the same transaction.
    pub async fn create_network_with_id(
        &self,
        id: NetworkId,
        new: &NewNetwork<'_>,
    ) -> StoreResult<Network> {
        let mut attempts = 0;
        loop {
            match self.create_network_once(id, new).await? {
                Ok(network) => return Ok(network),
                Err(VniTaken) if attempts < 20 => attempts += 1,
                Err(VniTaken) => {
                    return Err(StoreError::Conflict(
                        "too many networks are being created at once; try again".into(),
                    ))
                }
            }
        }
    }

    async fn create_network_once(
        &self,
        id: NetworkId,
        new: &NewNetwork<'_>,
    ) -> StoreResult<Result<Network, VniTaken>> {
        let mut tx = self.begin_write().await?;
        self.address_space_in(&mut tx)
            .await?
            .check_network(new.cidr, new.gateway)?;
        if new.name != super::quotas::DEFAULT_NETWORK {
            let extra = nubis_api::quotas::QuotaUsage {
                networks: 1,
                ..nubis_api::quotas::QuotaUsage::default_zero()
            };
            super::quotas::check_quota(&mut tx, new.project, &extra).await?;
        }
        // Insert first: on SQLite this takes the write lock, so the overlap
        // check below cannot race with another create.
        let res = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO networks (id, project_id, name, cidr, gateway, dns_zone, created_at, vni) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, {})",
            super::overlay::NEXT_VNI
        )))
        .bind(id.to_string())
        .bind(new.project.to_string())
        .bind(new.name)
        .bind(new.cidr.to_string())
        .bind(new.gateway.to_string())
        .bind(new.dns_zone)
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        if res.as_ref().is_err_and(super::overlay::is_vni_violation) {
            return Ok(Err(VniTaken));
        }
        res.or_conflict(|| {
            format!(
                "a network named '{}' already exists in this project",
                new.name
            )
        })?;
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
        let vni: i64 = sqlx::query("SELECT vni FROM networks WHERE id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?
            .try_get("vni")?;
        if vni > super::overlay::MAX_VNI {
            return Err(StoreError::Conflict(
                "no VXLAN identifier is left for another network".into(),
            ));
        }
        super::pending_networks::forget_pending_in(&mut tx, id).await?;
        tx.commit().await?;
        self.network(new.project, &id.to_string()).await.map(Ok)
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
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// The project's `default` network, created on first use with the first
    /// free /24 of the tenant pools that the address-space rules allow.
    pub async fn ensure_default_network(
        &self,
        project: ProjectId,
        dns_zone: &str,
    ) -> StoreResult<Network> {
        if let Ok(n) = self.network(project, "default").await {
            return Ok(n);
        }
        let mut conn = self.pool().acquire().await?;
        let taken = Self::network_cidrs_in(&mut conn).await?;
        let space = self.address_space_in(&mut conn).await?;
        drop(conn);
        for candidate in self.tenant_pools().default_network_candidates() {
            if taken.iter().any(|t| t.overlaps(candidate))
                || space
                    .check_network(candidate, candidate.first_host())
                    .is_err()
            {
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
                // Someone else made it, or took this range (or a host or a
                // floating-IP pool did meanwhile): look again.
                Err(StoreError::Conflict(_) | StoreError::AddressSpace(_)) => {
                    if let Ok(n) = self.network(project, "default").await {
                        return Ok(n);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict(format!(
            "no free range left for a default network in the tenant pools ({})",
            self.tenant_pools()
        )))
    }

    /// The subnet of every network, read in `conn`.
    pub(super) async fn network_cidrs_in(conn: &mut sqlx::AnyConnection) -> StoreResult<Vec<Cidr>> {
        sqlx::query("SELECT cidr FROM networks")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| {
                let c: String = r.try_get("cidr")?;
                c.parse().map_err(|_| corrupt("cidr", &c))
            })
            .collect()
    }

    /// What new ranges are held against: the tenant pools, the
    /// floating-IP pools and the hosts' reported ranges, read in `conn`.
    async fn address_space_in(&self, conn: &mut sqlx::AnyConnection) -> StoreResult<AddressSpace> {
        Ok(AddressSpace {
            tenant_pools: self.tenant_pools().clone(),
            floating_pools: Self::floating_ip_pools_in(conn).await?,
            hosts: Self::host_ranges_in(conn).await?,
        })
    }

    /// Every network and fixed IP in the store that breaks an
    /// address-space rule today (made before the rule, or before the
    /// operator changed the pools): they keep working, and `nubis admin
    /// check` lists them.
    pub async fn address_space_findings(&self) -> StoreResult<Vec<Finding>> {
        let mut conn = self.pool().acquire().await?;
        let space = self.address_space_in(&mut conn).await?;
        drop(conn);
        let networks = sqlx::query(select_networks!("ORDER BY p.name, n.name"))
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|row| {
                let n = network_from_row(row)?;
                Ok(ExistingNetwork {
                    id: n.id.to_string(),
                    name: n.name,
                    project: row.try_get("project_name")?,
                    cidr: n.cidr,
                    gateway: n.gateway,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let ports = sqlx::query(
            "SELECT p.network_id, p.ip, s.name AS server_name FROM ports p \
             JOIN servers s ON s.id = p.server_id ORDER BY s.name, p.nic_index",
        )
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|row| {
            let ip: String = row.try_get("ip")?;
            Ok(ExistingPort {
                network_id: row.try_get("network_id")?,
                server: row.try_get("server_name")?,
                ip: ip.parse().map_err(|_| corrupt("ip", &ip))?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(address_space::audit(&space, &networks, &ports))
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
            let (server, address) = address_from_row(&row)?;
            out.entry(server).or_default().push(address);
        }
        Ok(out)
    }
}
