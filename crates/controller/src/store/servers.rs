//! Servers: desired state (what users asked for) beside observed state (what
//! the host's agent last reported). The status users see is derived from both.

use super::rows::{big, count, flag, parse, parse_opt, time, time_opt};
use super::{found, is_unique_violation, now_ms, Store, StoreError, StoreResult};
use nubis_api::agent::{HostReport, ObservedPower, PowerState};
use nubis_api::servers::{Server, ServerStatus};
use nubis_api::{FlavorId, HostId, ImageId, ProjectId, ServerId};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::HashSet;

/// A server row: desired and observed state.
#[derive(Clone, Debug)]
pub struct ServerRecord {
    pub id: ServerId,
    pub project: ProjectId,
    pub name: String,
    pub image: ImageId,
    pub flavor: Option<FlavorId>,
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub host: Option<HostId>,
    pub power: PowerState,
    pub reboot_generation: u64,
    pub deleting: bool,
    pub observed_power: Option<ObservedPower>,
    pub observed_reboot_generation: u64,
    pub fault: Option<String>,
    pub launched_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
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
    pub host: HostId,
}

impl ServerRecord {
    /// The status users see, derived from desired and observed state.
    pub fn status(&self) -> ServerStatus {
        use ObservedPower as O;
        if self.deleting {
            return ServerStatus::Deleting;
        }
        match (self.power, self.observed_power) {
            (_, Some(O::Error)) => ServerStatus::Error,
            (PowerState::Running, Some(O::Running))
                if self.reboot_generation > self.observed_reboot_generation =>
            {
                ServerStatus::Rebooting
            }
            (PowerState::Running, Some(O::Running)) => ServerStatus::Running,
            // Never launched yet: the first boot is being prepared.
            (PowerState::Running, _) if self.launched_at.is_none() => ServerStatus::Building,
            // Started again after a stop: shown stopped until the host confirms.
            (PowerState::Running, _) => ServerStatus::Stopped,
            (PowerState::Stopped, Some(O::Running | O::Creating)) => ServerStatus::Stopping,
            (PowerState::Stopped, _) => ServerStatus::Stopped,
        }
    }

    /// The API view.
    pub fn to_api(&self) -> Server {
        let status = self.status();
        Server {
            id: self.id,
            name: self.name.clone(),
            project: self.project,
            status,
            fault: if status == ServerStatus::Error {
                self.fault.clone()
            } else {
                None
            },
            image: self.image,
            flavor: self.flavor,
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            disk_gib: self.disk_gib,
            host: self.host,
            created_at: self.created_at,
            launched_at: self.launched_at,
        }
    }
}

fn power_str(p: PowerState) -> &'static str {
    match p {
        PowerState::Running => "running",
        PowerState::Stopped => "stopped",
    }
}

fn observed_str(p: ObservedPower) -> &'static str {
    match p {
        ObservedPower::Creating => "creating",
        ObservedPower::Running => "running",
        ObservedPower::Stopped => "stopped",
        ObservedPower::Error => "error",
    }
}

fn server_from_row(row: &AnyRow) -> StoreResult<ServerRecord> {
    let power: String = row.try_get("power")?;
    let observed: Option<String> = row.try_get("observed_power")?;
    Ok(ServerRecord {
        id: parse(row, "id")?,
        project: parse(row, "project_id")?,
        name: row.try_get("name")?,
        image: parse(row, "image_id")?,
        flavor: parse_opt(row, "flavor_id")?,
        vcpus: count(row, "vcpus")?,
        memory_mib: count(row, "memory_mib")?,
        disk_gib: count(row, "disk_gib")?,
        host: parse_opt(row, "host_id")?,
        power: match power.as_str() {
            "stopped" => PowerState::Stopped,
            _ => PowerState::Running,
        },
        reboot_generation: count(row, "reboot_generation")?,
        deleting: flag(row, "deleting")?,
        observed_power: observed.map(|o| match o.as_str() {
            "creating" => ObservedPower::Creating,
            "running" => ObservedPower::Running,
            "stopped" => ObservedPower::Stopped,
            _ => ObservedPower::Error,
        }),
        observed_reboot_generation: count(row, "observed_reboot_generation")?,
        fault: row.try_get("fault")?,
        launched_at: time_opt(row, "launched_at")?,
        created_at: time(row, "created_at")?,
    })
}

impl Store {
    /// Inserts a placed server, desired running.
    pub async fn create_server(&self, new: &NewServer<'_>) -> StoreResult<ServerRecord> {
        let id = ServerId::new();
        let res = sqlx::query(
            "INSERT INTO servers (id, project_id, name, image_id, flavor_id, vcpus, memory_mib, \
             disk_gib, host_id, power, reboot_generation, deleting, observed_reboot_generation, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'running', 0, 0, 0, $10)",
        )
        .bind(id.to_string())
        .bind(new.project.to_string())
        .bind(new.name)
        .bind(new.image.to_string())
        .bind(new.flavor.map(|f| f.to_string()))
        .bind(big(new.vcpus))
        .bind(big(new.memory_mib))
        .bind(big(new.disk_gib))
        .bind(new.host.to_string())
        .bind(now_ms())
        .execute(self.pool())
        .await;
        match res {
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "a server named '{}' already exists in this project",
                new.name
            ))),
            Err(e) => Err(e.into()),
            Ok(_) => self.server(new.project, id).await,
        }
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

    /// Servers placed on a host (including those being deleted).
    pub async fn servers_on_host(&self, host: HostId) -> StoreResult<Vec<ServerRecord>> {
        let rows = sqlx::query("SELECT * FROM servers WHERE host_id = $1 ORDER BY created_at")
            .bind(host.to_string())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(server_from_row).collect()
    }

    /// Sets the desired power state. (A fault clears itself: the host keeps
    /// retrying and its next report replaces the observed state.)
    pub async fn set_power(
        &self,
        project: ProjectId,
        id: ServerId,
        power: PowerState,
    ) -> StoreResult<ServerRecord> {
        let done = sqlx::query(
            "UPDATE servers SET power = $3 WHERE id = $1 AND project_id = $2 AND deleting = 0",
        )
        .bind(id.to_string())
        .bind(project.to_string())
        .bind(power_str(power))
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
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
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.server(project, id).await
    }

    /// Marks a server for deletion; its host removes it and the row goes once
    /// the host no longer reports it. A server on no host goes at once.
    pub async fn mark_deleting(&self, project: ProjectId, id: ServerId) -> StoreResult<()> {
        let done = sqlx::query("UPDATE servers SET deleting = 1 WHERE id = $1 AND project_id = $2")
            .bind(id.to_string())
            .bind(project.to_string())
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query("DELETE FROM servers WHERE id = $1 AND host_id IS NULL")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Applies an agent's full report: observed state of every instance on the
    /// host. Servers being deleted that the host no longer has are removed.
    pub async fn apply_host_report(&self, host: HostId, report: &HostReport) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        for inst in &report.instances {
            sqlx::query(
                "UPDATE servers SET observed_power = $3, observed_reboot_generation = $4, \
                 fault = $5, launched_at = COALESCE($6, launched_at) \
                 WHERE id = $1 AND host_id = $2",
            )
            .bind(inst.id.to_string())
            .bind(host.to_string())
            .bind(observed_str(inst.power))
            .bind(big(inst.reboot_generation))
            .bind(inst.fault.as_deref())
            .bind(inst.launched_at.map(|t| t.timestamp_millis()))
            .execute(&mut *tx)
            .await?;
            if inst.guest_shutdown && inst.power == ObservedPower::Stopped {
                // The guest powered itself off: record it as a stop, like EC2
                // does, so the host does not boot it again.
                sqlx::query("UPDATE servers SET power = 'stopped' WHERE id = $1 AND host_id = $2")
                    .bind(inst.id.to_string())
                    .bind(host.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let present: HashSet<ServerId> = report.instances.iter().map(|i| i.id).collect();
        let deleting = sqlx::query("SELECT id FROM servers WHERE host_id = $1 AND deleting = 1")
            .bind(host.to_string())
            .fetch_all(&mut *tx)
            .await?;
        for row in deleting {
            let id: ServerId = parse(&row, "id")?;
            if !present.contains(&id) {
                sqlx::query("DELETE FROM servers WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
