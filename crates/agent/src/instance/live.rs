//! The instance actor's part in a live migration (the QMP steps are in
//! [`crate::qemu::migration`]).
//!
//! **Target** (`InstanceSpec::arrival` = `Arrival::Live`): the disk is an
//! empty overlay of the same size over the same base image (the normal
//! disk creation), QEMU starts as for a boot — TAPs plugged, firewall
//! applied by the reconciler, same command line — plus `-incoming defer`;
//! it serves its disk over NBD and listens for the guest's state on this
//! host's migration address, and the actor reports both endpoints
//! (`MoveReport::live`). It then waits for the state to arrive, stops the
//! NBD server and lets the normal start path resume the guest (once the
//! firewall covers its ports). QEMU announces the guest on the network
//! after a migration (`announce` defaults), so the switches learn its new
//! port.
//!
//! **Source** (a `Departure` with `live` filled in): the actor runs the
//! mirror and the migration, reports `arrived` with the downtime QEMU
//! measured or `failed` with the reason, and on success quits its QEMU —
//! never to boot it again for that move; its files wait for the
//! controller's release. On failure QEMU keeps running here (rolled back).

use super::{InstanceContext, InstanceState, Vm};
use crate::layout::InstanceFiles;
use crate::qemu::migration::{self, IncomingEndpoints, MigrationSettings};
use anyhow::Context;
use nubis_api::agent::{Departure, InstanceSpec, LiveTarget, MoveProgress, MoveReport, MoveRole};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How long a target waits for the source to send the guest (the source
/// must first learn the endpoints from the controller, then copy the disk
/// and the RAM).
pub const ARRIVAL_LIMIT: Duration = Duration::from_secs(45 * 60);

/// The actor's notes about a live migration, kept in `state.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveNotes {
    /// Target: the move (generation) whose guest arrived here.
    #[serde(default)]
    pub arrived: Option<u64>,
    /// Target: the move that failed here (QEMU is not started again for it).
    #[serde(default)]
    pub arrival_failed: Option<u64>,
    /// Source: the move (generation) this host tried to send the guest for.
    #[serde(default)]
    pub departure_tried: Option<u64>,
    /// Source: the move that completed: the guest runs elsewhere now and
    /// must not be booted here for any spec older than that move.
    #[serde(default)]
    pub departed: Option<u64>,
}

impl LiveNotes {
    /// Whether the guest left this host after `spec` was current.
    pub fn departed_since(&self, spec: &InstanceSpec) -> bool {
        self.departed.is_some_and(|g| g > spec.generation)
    }
}

/// `tcp:IP:PORT` / `nbd://IP:PORT/EXPORT`, as the protocol carries them.
fn live_target(endpoints: IncomingEndpoints) -> LiveTarget {
    LiveTarget {
        migration_uri: format!("tcp:{}", endpoints.migration),
        nbd_uri: format!("nbd://{}/{}", endpoints.nbd, migration::EXPORT_NAME),
    }
}

/// The endpoints in a `LiveTarget` from the controller.
pub fn parse_live_target(live: &LiveTarget) -> anyhow::Result<IncomingEndpoints> {
    let migration: SocketAddr = live
        .migration_uri
        .strip_prefix("tcp:")
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("bad migration URI {:?}", live.migration_uri))?;
    let nbd: SocketAddr = live
        .nbd_uri
        .strip_prefix("nbd://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("bad NBD URI {:?}", live.nbd_uri))?;
    Ok(IncomingEndpoints { nbd, migration })
}

fn report(
    spec_id: nubis_api::ServerId,
    generation: u64,
    role: MoveRole,
    progress: MoveProgress,
) -> MoveReport {
    MoveReport {
        id: spec_id,
        generation,
        role,
        progress,
        ..MoveReport::default()
    }
}

/// Whether `spec` asks this host to receive its guest live (and that move
/// is not settled here yet).
pub fn arriving(spec: &InstanceSpec, notes: &LiveNotes) -> bool {
    matches!(spec.arrival, Some(nubis_api::agent::Arrival::Live { .. }))
        && notes.arrived != Some(spec.generation)
}

/// Target: boots QEMU waiting for the guest, reports its endpoints, waits
/// for the guest to arrive and stops serving the disk. The guest is then
/// paused, and the normal start path resumes it.
pub async fn arrive(
    ctx: &InstanceContext,
    files: &InstanceFiles,
    spec: &InstanceSpec,
    vm: &mut Option<Vm>,
    state: &mut InstanceState,
) -> anyhow::Result<()> {
    let generation = spec.generation;
    if state.live.arrival_failed == Some(generation) {
        anyhow::bail!("the live migration to this host failed");
    }
    let result = receive(ctx, files, spec, vm, state).await;
    match &result {
        Ok(()) => {
            state.live.arrived = Some(generation);
            ctx.reports.set_move(report(
                spec.id,
                generation,
                MoveRole::Arrival,
                MoveProgress::Arrived,
            ));
        }
        Err(e) => {
            // What is left (QEMU, disk) the controller releases; QEMU is
            // useless without its source, so it goes now.
            if let Some(running) = vm.take() {
                running.process.kill().await;
            }
            state.live.arrival_failed = Some(generation);
            ctx.reports.set_move(MoveReport {
                error: Some(format!("{e:#}")),
                ..report(spec.id, generation, MoveRole::Arrival, MoveProgress::Failed)
            });
        }
    }
    super::save_state(files, state).await;
    result
}

async fn receive(
    ctx: &InstanceContext,
    files: &InstanceFiles,
    spec: &InstanceSpec,
    vm: &mut Option<Vm>,
    state: &mut InstanceState,
) -> anyhow::Result<()> {
    let ip = ctx.migration_ip.context(
        "live migration needs this agent's API on a specific address \
         (--agent-listen IP:PORT): QEMU serves the guest's disk and \
         state there",
    )?;
    if vm.is_none() {
        if !files.disk().exists() {
            // Empty, of the same size, over the same base image: the
            // source mirrors only its own clusters into it.
            super::create_disk(ctx, files, spec).await?;
        }
        let running = super::boot_with(ctx, files, spec, state, true).await?;
        let endpoints = IncomingEndpoints {
            nbd: SocketAddr::new(ip, migration::free_port(ip)?),
            migration: SocketAddr::new(ip, migration::free_port(ip)?),
        };
        migration::prepare_incoming(&running.qmp, endpoints)
            .await
            .context("preparing to receive the guest")?;
        *vm = Some(running);
        tracing::info!(instance = %spec.id, ?endpoints, "waiting for the guest to arrive");
        ctx.reports.set_move(MoveReport {
            live: Some(live_target(endpoints)),
            ..report(
                spec.id,
                spec.generation,
                MoveRole::Arrival,
                MoveProgress::Working,
            )
        });
    }
    let running = vm.as_ref().expect("booted above");
    let deadline = tokio::time::Instant::now() + ARRIVAL_LIMIT;
    while migration::incoming_pending(&running.qmp)
        .await
        .context("receiving the guest")?
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the guest did not arrive within {} min",
            ARRIVAL_LIMIT.as_secs() / 60
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running
        .qmp
        .execute("nbd-server-stop", None)
        .await
        .context("ending the disk export")?;
    tracing::info!(instance = %spec.id, "guest arrived");
    Ok(())
}

/// Whether the actor should send its guest to the departure's target now.
pub fn departing<'a>(departure: Option<&'a Departure>, notes: &LiveNotes) -> Option<&'a Departure> {
    departure.filter(|d| {
        d.live.as_ref().is_some_and(|l| !l.migration_uri.is_empty())
            && notes.departure_tried != Some(d.generation)
    })
}

/// Source: sends the running guest to the departure's target. On success
/// QEMU quits (the guest runs there); on failure it keeps running here.
pub async fn depart(
    ctx: &InstanceContext,
    files: &InstanceFiles,
    id: nubis_api::ServerId,
    departure: &Departure,
    vm: &mut Option<Vm>,
    state: &mut InstanceState,
) -> anyhow::Result<()> {
    let generation = departure.generation;
    state.live.departure_tried = Some(generation);
    super::save_state(files, state).await;
    ctx.reports.set_move(report(
        id,
        generation,
        MoveRole::Departure,
        MoveProgress::Working,
    ));
    let result = send(id, departure, vm).await;
    match &result {
        Ok(outcome) => {
            state.live.departed = Some(generation);
            ctx.reports.set_move(MoveReport {
                downtime_ms: Some(outcome.downtime_ms),
                ..report(id, generation, MoveRole::Departure, MoveProgress::Arrived)
            });
            if let Some(gone) = vm.take() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), gone.qmp.execute("quit", None))
                        .await;
                if !gone.process.wait_gone(Duration::from_secs(10)).await {
                    gone.process.kill().await;
                }
            }
            tracing::info!(instance = %id, downtime_ms = outcome.downtime_ms, "guest migrated away");
        }
        Err(e) => {
            tracing::warn!(instance = %id, error = %format!("{e:#}"), "live migration failed; the guest stays here");
            ctx.reports.set_move(MoveReport {
                error: Some(format!("{e:#}")),
                ..report(id, generation, MoveRole::Departure, MoveProgress::Failed)
            });
        }
    }
    super::save_state(files, state).await;
    result.map(drop)
}

async fn send(
    id: nubis_api::ServerId,
    departure: &Departure,
    vm: &Option<Vm>,
) -> anyhow::Result<migration::MigrationOutcome> {
    let live = departure.live.as_ref().context("no target endpoints yet")?;
    let endpoints = parse_live_target(live)?;
    let running = vm
        .as_ref()
        .context("the guest is not running here: only a running server moves live")?;
    tracing::info!(instance = %id, target = %departure.target.url, ?endpoints, "live-migrating");
    Ok(migration::migrate_out(&running.qmp, endpoints, MigrationSettings::default()).await?)
}

/// The address QEMU listens on for migrations: the agent API's, when it is
/// a specific one (the underlay address other hosts reach).
pub fn migration_ip(listen: SocketAddr) -> Option<IpAddr> {
    let ip = listen.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_round_trip_through_the_protocol() {
        let endpoints = IncomingEndpoints {
            nbd: "172.31.0.12:40001".parse().unwrap(),
            migration: "172.31.0.12:40002".parse().unwrap(),
        };
        let live = live_target(endpoints);
        assert_eq!(live.migration_uri, "tcp:172.31.0.12:40002");
        assert_eq!(live.nbd_uri, "nbd://172.31.0.12:40001/disk0");
        assert_eq!(parse_live_target(&live).unwrap(), endpoints);
        let bad = LiveTarget {
            migration_uri: "exec:rm -rf /".into(),
            nbd_uri: live.nbd_uri.clone(),
        };
        assert!(parse_live_target(&bad).is_err());
    }

    #[test]
    fn a_departed_guest_is_not_booted_for_an_older_spec() {
        let notes = LiveNotes {
            departed: Some(5),
            ..LiveNotes::default()
        };
        let mut spec = super::super::tests::spec();
        spec.generation = 4;
        assert!(notes.departed_since(&spec));
        spec.generation = 6; // given back after a rollback
        assert!(!notes.departed_since(&spec));
    }

    #[test]
    fn the_migration_address_is_a_specific_one() {
        assert_eq!(
            migration_ip("172.31.0.12:8782".parse().unwrap()),
            Some("172.31.0.12".parse().unwrap())
        );
        assert_eq!(migration_ip("0.0.0.0:8782".parse().unwrap()), None);
    }
}
