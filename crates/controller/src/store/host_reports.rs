//! Applying an agent's report of what its host runs to the servers' rows.

use super::rows::{big, flag, parse};
use super::server_record::observed_str;
use super::{usage, Store, StoreResult};
use nubis_api::agent::{HostReport, ObservedPower};
use nubis_api::{HostId, ServerId};
use sqlx::Row;
use std::collections::{HashMap, HashSet};

impl Store {
    /// Applies an agent's full report: observed state of every instance on the
    /// host. Servers being deleted that the host neither reports nor holds
    /// are removed.
    /// Usage is recorded from the system time; see [`Self::apply_host_report_at`].
    pub async fn apply_host_report(&self, host: HostId, report: &HostReport) -> StoreResult<()> {
        self.apply_host_report_at(host, report, chrono::Utc::now())
            .await
    }

    /// [`Self::apply_host_report`]; a guest that shut itself down closes its
    /// instance interval at `now`, and so does a server row removed.
    pub async fn apply_host_report_at(
        &self,
        host: HostId,
        report: &HostReport,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<()> {
        let at = now.timestamp_millis();
        // Most reports (heartbeats) repeat what is stored: those are read,
        // not written, so thousands of hosts leave the single writer free.
        let stored = stored_instances(self.pool(), host).await?;
        if !report_changes(&stored, report) {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
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
                let done = sqlx::query(
                    "UPDATE servers SET power = 'stopped' WHERE id = $1 AND host_id = $2",
                )
                .bind(inst.id.to_string())
                .bind(host.to_string())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() > 0 {
                    usage::server_stopped(&mut tx, &inst.id.to_string(), at).await?;
                }
            }
        }
        let present: HashSet<ServerId> = report
            .instances
            .iter()
            .map(|i| i.id)
            .chain(report.held.iter().copied())
            .collect();
        let deleting = sqlx::query("SELECT id FROM servers WHERE host_id = $1 AND deleting = 1")
            .bind(host.to_string())
            .fetch_all(&mut *tx)
            .await?;
        for row in deleting {
            let id: ServerId = parse(&row, "id")?;
            if !present.contains(&id) {
                usage::server_deleted(&mut tx, &id.to_string(), at).await?;
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

/// What the rows of a host's servers hold that a report may change.
#[derive(Debug, PartialEq)]
struct StoredInstance {
    observed_power: Option<String>,
    reboot_generation: i64,
    fault: Option<String>,
    launched_at: Option<i64>,
    stopped: bool,
    deleting: bool,
}

/// The servers placed on `host`, as a report would compare them.
async fn stored_instances<'e, E>(
    conn: E,
    host: HostId,
) -> StoreResult<HashMap<ServerId, StoredInstance>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT id, observed_power, observed_reboot_generation, fault, launched_at, power, \
         deleting FROM servers WHERE host_id = $1",
    )
    .bind(host.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let power: String = row.try_get("power")?;
            Ok((
                parse(row, "id")?,
                StoredInstance {
                    observed_power: row.try_get("observed_power")?,
                    reboot_generation: row.try_get("observed_reboot_generation")?,
                    fault: row.try_get("fault")?,
                    launched_at: row.try_get("launched_at")?,
                    stopped: power == "stopped",
                    deleting: flag(row, "deleting")?,
                },
            ))
        })
        .collect()
}

/// Whether applying `report` would change any of the `stored` rows: an
/// instance observed differently, a guest's own shutdown not yet recorded
/// as a stop, or a server being deleted that the host no longer has.
fn report_changes(stored: &HashMap<ServerId, StoredInstance>, report: &HostReport) -> bool {
    let observed_anew = report.instances.iter().any(|inst| {
        stored.get(&inst.id).is_some_and(|row| {
            row.observed_power.as_deref() != Some(observed_str(inst.power))
                || row.reboot_generation != big(inst.reboot_generation)
                || row.fault.as_deref() != inst.fault.as_deref()
                || inst
                    .launched_at
                    .is_some_and(|t| row.launched_at != Some(t.timestamp_millis()))
                || (inst.guest_shutdown && inst.power == ObservedPower::Stopped && !row.stopped)
        })
    });
    let present: HashSet<ServerId> = report
        .instances
        .iter()
        .map(|i| i.id)
        .chain(report.held.iter().copied())
        .collect();
    observed_anew
        || stored
            .iter()
            .any(|(id, row)| row.deleting && !present.contains(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nubis_api::agent::InstanceReport;

    fn running(id: ServerId) -> InstanceReport {
        InstanceReport {
            id,
            power: ObservedPower::Running,
            fault: None,
            reboot_generation: 1,
            launched_at: None,
            guest_shutdown: false,
        }
    }

    fn stored_running() -> StoredInstance {
        StoredInstance {
            observed_power: Some("running".into()),
            reboot_generation: 1,
            fault: None,
            launched_at: None,
            stopped: false,
            deleting: false,
        }
    }

    fn report(instances: Vec<InstanceReport>) -> HostReport {
        HostReport {
            instances,
            ..Default::default()
        }
    }

    #[test]
    fn a_report_repeating_the_rows_changes_nothing() {
        let id = ServerId::new();
        let stored = HashMap::from([(id, stored_running())]);
        assert!(!report_changes(&stored, &report(vec![running(id)])));
        // Servers placed elsewhere (not in the rows) are not this host's.
        assert!(!report_changes(
            &stored,
            &report(vec![running(id), running(ServerId::new())])
        ));
    }

    #[test]
    fn every_difference_a_write_would_make_is_a_change() {
        let id = ServerId::new();
        let stored = HashMap::from([(id, stored_running())]);
        let changed = |edit: fn(&mut InstanceReport)| {
            let mut inst = running(id);
            edit(&mut inst);
            report_changes(&stored, &report(vec![inst]))
        };
        assert!(changed(|i| i.power = ObservedPower::Stopped));
        assert!(changed(|i| i.reboot_generation = 2));
        assert!(changed(|i| i.fault = Some("boom".into())));
        assert!(changed(|i| i.launched_at = Some(chrono::Utc::now())));
        assert!(changed(|i| {
            i.power = ObservedPower::Stopped;
            i.guest_shutdown = true;
        }));
        // A guest shutdown already recorded as a stop is no change.
        let stopped = HashMap::from([(
            id,
            StoredInstance {
                observed_power: Some("stopped".into()),
                stopped: true,
                ..stored_running()
            },
        )]);
        let mut inst = running(id);
        inst.power = ObservedPower::Stopped;
        inst.guest_shutdown = true;
        assert!(!report_changes(&stopped, &report(vec![inst])));
    }

    #[test]
    fn a_server_being_deleted_that_the_host_no_longer_has_is_a_change() {
        let (gone, held) = (ServerId::new(), ServerId::new());
        let deleting = || StoredInstance {
            deleting: true,
            ..stored_running()
        };
        let stored = HashMap::from([(gone, deleting())]);
        assert!(report_changes(&stored, &report(vec![])));
        let stored = HashMap::from([(held, deleting())]);
        let holding = HostReport {
            held: vec![held],
            ..Default::default()
        };
        assert!(!report_changes(&stored, &holding), "still held: kept");
    }
}
