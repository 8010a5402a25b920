//! Servers: desired state (what users asked for) beside observed state (what
//! the host's agent last reported). The status users see is derived from both.

use super::placement::Placement;
use super::rows::{big, parse, to_json};
use super::server_record::{power_str, server_from_row, ServerRecord};
use super::{found, now_ms, usage, Backend, OrConflict, Store, StoreError, StoreResult};
use nubis_api::agent::PowerState;
use nubis_api::bandwidth::Bandwidth;
use nubis_api::networks::{dns_label, Network};
use nubis_api::traffic::TrafficQuota;
use nubis_api::PortId;
use nubis_api::{FlavorId, HostId, ImageId, ProjectId, ServerId};
use sqlx::Row;
use std::net::Ipv4Addr;

/// One NIC of a new server.
pub struct NewPort<'a> {
    pub network: &'a Network,
    /// Checked to be a host address of the network other than its gateway.
    pub fixed_ip: Option<Ipv4Addr>,
}

/// A placed server to insert.
pub struct NewServer<'a> {
    pub project: ProjectId,
    pub name: &'a str,
    pub image: ImageId,
    pub flavor: Option<FlavorId>,
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
    /// A host, or what the scheduler must find (claimed in the create's
    /// transaction; see `store::placement`).
    pub host: super::placement::Placement,
    pub ports: Vec<NewPort<'a>>,
    pub key_name: Option<&'a str>,
    pub key_data: Option<&'a str>,
    pub user_data: Option<String>,
    pub config_drive: bool,
    pub security_groups: Vec<nubis_api::SecurityGroupId>,
    pub bandwidth: Bandwidth,
    pub traffic_quota: Option<TrafficQuota>,
    pub lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Refuses `name` when another server of `project` has a name with the same
/// DNS label (`my server` and `my-server` would both be
/// `my-server.<project>.<zone>`), naming that server. An identical name is
/// left to the unique index, which says so in its own words.
async fn check_dns_label_free(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    project: ProjectId,
    name: &str,
) -> StoreResult<()> {
    let label = dns_label(name);
    let rows = sqlx::query("SELECT id, name FROM servers WHERE project_id = $1")
        .bind(project.to_string())
        .fetch_all(&mut **tx)
        .await?;
    for row in rows {
        let other: String = row.try_get("name")?;
        if other != name && dns_label(&other) == label {
            let id: String = row.try_get("id")?;
            return Err(StoreError::Conflict(format!(
                "server name '{name}' gives the DNS name '{label}', which server '{other}' \
                 ({id}) already has in this project; choose a name that differs in more \
                 than case, spaces or punctuation"
            )));
        }
    }
    Ok(())
}

/// A locally administered, unicast MAC in QEMU's range.
fn random_mac() -> String {
    let mut b = [0u8; 3];
    let _ = getrandom::fill(&mut b);
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// A random MAC no port has. With 24 random bits, two of a few thousand
/// ports would share one more often than not (the birthday bound), and the
/// create would fail on the column's uniqueness: a MAC in use is drawn
/// again instead.
async fn unused_mac(conn: &mut sqlx::AnyConnection) -> StoreResult<String> {
    for _ in 0..16 {
        let mac = random_mac();
        let taken = sqlx::query("SELECT id FROM ports WHERE mac = $1")
            .bind(&mac)
            .fetch_optional(&mut *conn)
            .await?;
        if taken.is_none() {
            return Ok(mac);
        }
    }
    Err(StoreError::Conflict(
        "no free MAC address found; try again".into(),
    ))
}

impl Store {
    /// Inserts a placed server, desired running, with its ports; addresses
    /// are allocated in the same transaction, so a failure creates nothing.
    /// Usage is recorded from the system time; see [`Self::create_server_at`].
    pub async fn create_server(&self, new: &NewServer<'_>) -> StoreResult<ServerRecord> {
        self.create_server_at(new, chrono::Utc::now()).await
    }

    /// [`Self::create_server`], opening its usage intervals at `now`.
    pub async fn create_server_at(
        &self,
        new: &NewServer<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<ServerRecord> {
        let id = ServerId::new();
        let demand = crate::scheduler::Demand {
            vcpus: new.vcpus,
            memory_mib: new.memory_mib,
            disk_gib: new.disk_gib,
        };
        let hinted = match &new.host {
            Placement::Schedule(schedule) => {
                super::placement::hinted_candidates(self, new.project, demand, schedule).await?
            }
            Placement::On(_) => None,
        };
        let mut tx = self.begin_write().await?;
        let extra = nubis_api::quotas::QuotaUsage {
            servers: 1,
            vcpus: new.vcpus,
            memory_mib: new.memory_mib,
            disk_gib: new.disk_gib,
            ..nubis_api::quotas::QuotaUsage::default_zero()
        };
        super::quotas::check_quota(&mut tx, new.project, &extra).await?;
        // With the project row locked by the quota check, so two creates
        // cannot both take a label.
        check_dns_label_free(&mut tx, new.project, new.name).await?;
        let (host, group) = match &new.host {
            Placement::On(host) => (*host, None),
            Placement::Schedule(schedule) => {
                let host =
                    super::placement::claim(&mut tx, self, new.project, demand, schedule, hinted)
                        .await?;
                (host, schedule.group)
            }
        };
        let res = sqlx::query(
            "INSERT INTO servers (id, project_id, name, image_id, flavor_id, vcpus, memory_mib, \
             disk_gib, host_id, power, reboot_generation, deleting, observed_reboot_generation, \
             created_at, key_name, key_data, user_data, config_drive, bandwidth, \
             traffic_quota_bytes, traffic_policy, lease_expires_at, cdrom_attached) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'running', 0, 0, 0, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18, \
             (SELECT CASE WHEN format = 'iso' THEN 1 ELSE 0 END FROM images WHERE id = $4))",
        )
        .bind(id.to_string())
        .bind(new.project.to_string())
        .bind(new.name)
        .bind(new.image.to_string())
        .bind(new.flavor.map(|f| f.to_string()))
        .bind(big(new.vcpus))
        .bind(big(new.memory_mib))
        .bind(big(new.disk_gib))
        .bind(host.to_string())
        .bind(now_ms())
        .bind(new.key_name)
        .bind(new.key_data)
        .bind(new.user_data.as_deref())
        .bind(i64::from(new.config_drive))
        .bind((!new.bandwidth.is_unlimited()).then(|| to_json(&new.bandwidth)))
        .bind(new.traffic_quota.map(|q| big(q.bytes())))
        .bind(new.traffic_quota.map(|q| q.policy.as_str()))
        .bind(new.lease_expires_at.map(|t| t.timestamp_millis()))
        .execute(&mut *tx)
        .await;
        res.or_conflict(|| {
            format!(
                "a server named '{}' already exists in this project",
                new.name
            )
        })?;
        for (index, port) in new.ports.iter().enumerate() {
            self.insert_port(&mut tx, id, index, port).await?;
        }
        for group in &new.security_groups {
            sqlx::query("INSERT INTO server_security_groups (server_id, group_id) VALUES ($1, $2)")
                .bind(id.to_string())
                .bind(group.to_string())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(group) = group {
            sqlx::query("INSERT INTO server_group_members (server_id, group_id) VALUES ($1, $2)")
                .bind(id.to_string())
                .bind(group.to_string())
                .execute(&mut *tx)
                .await?;
        }
        usage::server_created(&mut tx, &id.to_string(), now.timestamp_millis()).await?;
        let host_name: String = sqlx::query("SELECT name FROM hosts WHERE id = $1")
            .bind(host.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("name"))
            .transpose()?
            .unwrap_or_else(|| host.to_string());
        super::events::record(
            &mut tx,
            id,
            now,
            nubis_api::events::EventKind::Scheduled,
            &format!("scheduled on host {host_name}"),
        )
        .await?;
        tx.commit().await?;
        self.server(new.project, id).await
    }

    /// Allocates an address (the fixed one, or the lowest free) and inserts the port.
    async fn insert_port(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        server: ServerId,
        index: usize,
        port: &NewPort<'_>,
    ) -> StoreResult<()> {
        let network = port.network;
        if self.backend() == Backend::Postgres {
            // Serialize allocations per network (SQLite's write lock already does).
            sqlx::query("SELECT id FROM networks WHERE id = $1 FOR UPDATE")
                .bind(network.id.to_string())
                .fetch_optional(&mut **tx)
                .await?;
        }
        let ip = match port.fixed_ip {
            Some(ip) => {
                crate::address_space::check_fixed_ip(network.cidr, network.gateway, ip)?;
                ip
            }
            None => {
                let used: std::collections::HashSet<Ipv4Addr> =
                    sqlx::query("SELECT ip FROM ports WHERE network_id = $1")
                        .bind(network.id.to_string())
                        .fetch_all(&mut **tx)
                        .await?
                        .iter()
                        .filter_map(|r| r.try_get::<String, _>("ip").ok()?.parse().ok())
                        .collect();
                network
                    .cidr
                    .hosts()
                    .find(|ip| *ip != network.gateway && !used.contains(ip))
                    .ok_or_else(|| {
                        StoreError::Conflict(format!(
                            "network '{}' has no free address left",
                            network.name
                        ))
                    })?
            }
        };
        let mac = unused_mac(tx).await?;
        let res = sqlx::query(
            "INSERT INTO ports (id, network_id, server_id, nic_index, mac, ip, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(PortId::new().to_string())
        .bind(network.id.to_string())
        .bind(server.to_string())
        .bind(index as i64)
        .bind(mac)
        .bind(ip.to_string())
        .bind(now_ms())
        .execute(&mut **tx)
        .await;
        res.or_conflict(|| {
            format!(
                "address {ip} is already in use on network '{}'",
                network.name
            )
        })?;
        Ok(())
    }

    /// The ports of a server: (port id, network id, mac, ip), in NIC order.
    pub async fn server_ports(
        &self,
        server: ServerId,
    ) -> StoreResult<Vec<(PortId, nubis_api::NetworkId, String, Ipv4Addr)>> {
        let rows = sqlx::query(
            "SELECT id, network_id, mac, ip FROM ports WHERE server_id = $1 ORDER BY nic_index",
        )
        .bind(server.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let ip: String = row.try_get("ip")?;
                Ok((
                    parse(row, "id")?,
                    parse(row, "network_id")?,
                    row.try_get("mac")?,
                    ip.parse()
                        .map_err(|_| StoreError::Corrupt(format!("bad port address '{ip}'")))?,
                ))
            })
            .collect()
    }

    /// A server of `project`; another project's server is `NotFound`.
    pub async fn server(&self, project: ProjectId, id: ServerId) -> StoreResult<ServerRecord> {
        let row = sqlx::query("SELECT * FROM servers WHERE id = $1 AND project_id = $2")
            .bind(id.to_string())
            .bind(project.to_string())
            .fetch_optional(self.pool())
            .await?;
        server_from_row(&found(row)?)
    }

    /// A server of any project (for administrators).
    pub async fn server_anywhere(&self, id: ServerId) -> StoreResult<ServerRecord> {
        let row = sqlx::query("SELECT * FROM servers WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        server_from_row(&found(row)?)
    }

    /// A server of `project` by id or name.
    pub async fn server_by_ref(
        &self,
        project: ProjectId,
        id_or_name: &str,
    ) -> StoreResult<ServerRecord> {
        let row =
            sqlx::query("SELECT * FROM servers WHERE (id = $1 OR name = $1) AND project_id = $2")
                .bind(id_or_name)
                .bind(project.to_string())
                .fetch_optional(self.pool())
                .await?;
        server_from_row(&found(row)?)
    }

    pub async fn list_servers(&self, project: ProjectId) -> StoreResult<Vec<ServerRecord>> {
        let rows =
            sqlx::query("SELECT * FROM servers WHERE project_id = $1 ORDER BY created_at, name")
                .bind(project.to_string())
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(server_from_row).collect()
    }

    /// Every project's servers (admin listing).
    pub async fn list_all_servers(&self) -> StoreResult<Vec<ServerRecord>> {
        let rows = sqlx::query("SELECT * FROM servers ORDER BY created_at, name")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(server_from_row).collect()
    }

    /// Servers placed on a host (including those being deleted).
    pub async fn servers_on_host(&self, host: HostId) -> StoreResult<Vec<ServerRecord>> {
        let rows = sqlx::query("SELECT * FROM servers WHERE host_id = $1 ORDER BY created_at")
            .bind(host.to_string())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(server_from_row).collect()
    }

    /// Sets the desired power state. (A fault clears itself: the host keeps
    /// retrying and its next report replaces the observed state.) Usage is
    /// recorded from the system time; see [`Self::set_power_at`].
    pub async fn set_power(
        &self,
        project: ProjectId,
        id: ServerId,
        power: PowerState,
    ) -> StoreResult<ServerRecord> {
        self.set_power_at(project, id, power, chrono::Utc::now())
            .await
    }

    /// [`Self::set_power`], opening (running) or closing (stopped) the
    /// server's instance interval at `now`.
    pub async fn set_power_at(
        &self,
        project: ProjectId,
        id: ServerId,
        power: PowerState,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<ServerRecord> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE servers SET power = $3 WHERE id = $1 AND project_id = $2 AND deleting = 0",
        )
        .bind(id.to_string())
        .bind(project.to_string())
        .bind(power_str(power))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let (server, at) = (id.to_string(), now.timestamp_millis());
        match power {
            PowerState::Running => usage::server_running(&mut tx, &server, at).await?,
            PowerState::Stopped => usage::server_stopped(&mut tx, &server, at).await?,
        }
        tx.commit().await?;
        self.server(project, id).await
    }

    /// Asks for one more reboot.
    pub async fn request_reboot(
        &self,
        project: ProjectId,
        id: ServerId,
    ) -> StoreResult<ServerRecord> {
        let done = sqlx::query(
            "UPDATE servers SET reboot_generation = reboot_generation + 1 \
             WHERE id = $1 AND project_id = $2 AND deleting = 0",
        )
        .bind(id.to_string())
        .bind(project.to_string())
        .execute(self.writer())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.server(project, id).await
    }

    /// Takes the ISO out of a server's CD-ROM drive: its next boot (or, if
    /// running, its next reset) is from its disk. `Conflict` if no ISO is in
    /// the drive; another project's server is `NotFound`.
    pub async fn eject_cdrom(&self, project: ProjectId, id: ServerId) -> StoreResult<ServerRecord> {
        let done = sqlx::query(
            "UPDATE servers SET cdrom_attached = 0 \
             WHERE id = $1 AND project_id = $2 AND deleting = 0 AND cdrom_attached = 1",
        )
        .bind(id.to_string())
        .bind(project.to_string())
        .execute(self.writer())
        .await?;
        let server = self.server(project, id).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(if server.deleting {
                "the server is being deleted".into()
            } else {
                "the server has no ISO in its CD-ROM drive".into()
            }));
        }
        Ok(server)
    }

    /// Marks a server for deletion; its host removes it and the row goes once
    /// the host no longer reports it. A server on no host goes at once.
    /// Usage is recorded from the system time; see [`Self::mark_deleting_at`].
    pub async fn mark_deleting(&self, project: ProjectId, id: ServerId) -> StoreResult<()> {
        self.mark_deleting_at(project, id, chrono::Utc::now()).await
    }

    /// [`Self::mark_deleting`], closing the server's usage intervals at `now`
    /// (billing stops when deletion is asked for).
    pub async fn mark_deleting_at(
        &self,
        project: ProjectId,
        id: ServerId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let owned = sqlx::query("SELECT id FROM servers WHERE id = $1 AND project_id = $2")
            .bind(id.to_string())
            .bind(project.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if owned.is_none() {
            return Err(StoreError::NotFound);
        }
        mark_deleting_in(&mut tx, id, now.timestamp_millis()).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Marks a server for deletion inside `tx` (a user's delete, an expired
/// lease): its usage intervals close at `at_ms`, and a server on no host
/// goes at once; its host removes the others.
pub(super) async fn mark_deleting_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: ServerId,
    at_ms: i64,
) -> StoreResult<()> {
    sqlx::query("UPDATE servers SET deleting = 1 WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    usage::server_deleted(tx, &id.to_string(), at_ms).await?;
    sqlx::query("DELETE FROM servers WHERE id = $1 AND host_id IS NULL")
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
