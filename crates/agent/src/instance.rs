//! One actor per instance converges it to its spec: prepares the disk,
//! starts, stops, reboots and finally destroys its QEMU process.
//!
//! Each step is idempotent and decided from what is observed now (the
//! process, the disk, the agent's notes in `state.json`), so an actor that
//! starts over after an agent restart picks up where things are.

use crate::jail::{self, JailRecord, Jails};
use crate::layout::InstanceFiles;
use crate::network::tap::tap_name;
use crate::network::HostNetworking;
use crate::qemu::{QemuProcess, QmpClient, QmpError, QmpEvent};
use crate::reports::Reports;
use crate::storage::ImageCache;
use anyhow::Context;
use chrono::{DateTime, Utc};
use nubis_api::agent::{Departure, InstanceReport, InstanceSpec, ObservedPower, PowerState};
use nubis_api::ServerId;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What every instance actor shares.
#[derive(Clone)]
pub struct InstanceContext {
    pub images: ImageCache,
    pub accel: crate::qemu::Accel,
    /// How long a guest gets to power down before it is stopped hard.
    pub stop_timeout: Duration,
    pub reports: Reports,
    pub networking: HostNetworking,
    /// Whether this host serves the metadata service; without it every guest
    /// gets a config drive.
    pub metadata_service: bool,
    /// Size at which a serial console log is cut back to its newer half.
    pub console_log_bytes: u64,
    /// QEMU's jails: cgroups, uids (see [`crate::jail`]).
    pub jails: Jails,
    /// Where a live migration's target QEMU listens (this host's underlay
    /// address); `None`: this host cannot receive live migrations.
    pub migration_ip: Option<std::net::IpAddr>,
    /// Calls to other hosts for moves (see [`crate::moves`]).
    pub moves: crate::moves::MoveContext,
}

/// What the reconciler wants of an instance.
#[derive(Clone, Debug, PartialEq)]
pub enum Desire {
    /// Converge to this spec (the instance is this host's).
    Run(Box<InstanceSpec>),
    /// Leaving this host: keep its files (the target fetches the disk)
    /// and leave its QEMU as it is.
    Depart(nubis_api::agent::Departure),
    /// No longer this host's (deleted, or placed elsewhere): stop its QEMU
    /// at once (fencing), keep its files until released.
    Hold,
    /// Released by the controller: remove it (all but the directory when
    /// `keep_disk`: a shared store's, now another host's).
    Remove { keep_disk: bool },
}

/// The agent's persisted notes about an instance.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct InstanceState {
    /// The highest reboot generation carried out (a fresh boot counts).
    reboot_generation: u64,
    /// The guest powered itself off; do not boot it again until the
    /// controller has recorded the stop.
    guest_shutdown: bool,
    launched_at: Option<DateTime<Utc>>,
    /// TAP devices made for the instance, removed with it.
    #[serde(default)]
    taps: Vec<String>,
    /// The running QEMU has an ISO in its CD-ROM drive.
    #[serde(default)]
    cdrom_inserted: bool,
    /// Live migrations to and from this host (see [`live`]).
    #[serde(default)]
    live: live::LiveNotes,
}

/// A QEMU process we are connected to.
struct Vm {
    process: QemuProcess,
    qmp: QmpClient,
    events: mpsc::UnboundedReceiver<QmpEvent>,
    /// QEMU announced a guest-initiated shutdown before exiting.
    guest_shutdown_seen: bool,
    /// Copies the serial console into its bounded log while connected.
    _serial: crate::serial_log::SerialLog,
}

/// The handle the reconciler keeps for a running actor.
pub struct InstanceHandle {
    /// What is wanted of the instance.
    pub spec: watch::Sender<Desire>,
    /// The last spec it was to run here (a departing instance's networking
    /// follows it until released).
    pub last_spec: Option<InstanceSpec>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the actor of instance `id`.
pub fn spawn(
    id: ServerId,
    files: InstanceFiles,
    ctx: InstanceContext,
    desire: Desire,
) -> InstanceHandle {
    let (tx, rx) = watch::channel(desire);
    let task = tokio::spawn(run(id, files, ctx, rx));
    InstanceHandle {
        spec: tx,
        last_spec: None,
        task,
    }
}

async fn run(
    id: ServerId,
    files: InstanceFiles,
    ctx: InstanceContext,
    mut spec_rx: watch::Receiver<Desire>,
) {
    let mut state = load_state(&files).await;
    // A leftover found at start is fenced before anything connects to it:
    // its sockets may be another host's by now (a shared store).
    if *spec_rx.borrow() == Desire::Hold && crate::moves::leftovers::fence(id, None).await {
        ctx.reports.set_fenced(id);
    }
    let mut vm = adopt(id, &files, ctx.console_log_bytes).await;
    let mut last_spec: Option<InstanceSpec> = None;
    loop {
        let desire = spec_rx.borrow_and_update().clone();
        let (spec, departure) = match desire {
            Desire::Run(spec) => {
                last_spec = Some((*spec).clone());
                (*spec, None)
            }
            // A live departure converges on the last spec it had here: its
            // guest runs on until QEMU has moved it (`live::depart`).
            Desire::Depart(d) if d.live.is_some() && last_spec.is_some() => {
                (last_spec.clone().expect("checked"), Some(d))
            }
            Desire::Remove { keep_disk } => {
                destroy(id, vm.take(), &files, &ctx, &state, keep_disk).await;
                ctx.reports.forget(id);
                return;
            }
            Desire::Hold | Desire::Depart(_) => {
                ctx.reports.remove(id);
                if desire == Desire::Hold {
                    let connected = vm.take().map(|v| v.process);
                    if crate::moves::leftovers::fence(id, connected).await {
                        ctx.reports.set_fenced(id);
                    }
                }
                // Until told otherwise; QEMU exits are noted meanwhile.
                loop {
                    tokio::select! {
                        changed = spec_rx.changed() => {
                            if changed.is_err() {
                                return; // The agent is shutting down.
                            }
                            break;
                        }
                        event = next_event(&mut vm) => {
                            if event.is_none() {
                                vm = None;
                            }
                        }
                    }
                }
                continue;
            }
        };
        // Every step of `converge` is time-bounded, so a new spec waits at
        // most that long; a delete does not wait at all: it abandons the
        // step (whatever it left behind, `destroy` removes: it finds every
        // QEMU of the instance, not just the one connected).
        let result = tokio::select! {
            result = converge(&ctx, &files, &spec, departure, &mut vm, &mut state) => result,
            deleted = deletion(&spec_rx) => {
                if !deleted {
                    return; // The agent is shutting down; leave the VM running.
                }
                tracing::info!(instance = %id, "deleted while converging; abandoning the step");
                continue;
            }
        };
        let fault = result.err().map(|e| format!("{e:#}"));
        if let Some(f) = &fault {
            tracing::warn!(instance = %id, fault = %f, "instance failed to converge");
        }
        ctx.reports
            .set(observe(id, &files, &vm, &state, fault.clone()));
        let recheck = if fault.is_some() {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(30)
        };
        tokio::select! {
            changed = spec_rx.changed() => {
                if changed.is_err() {
                    return; // The agent is shutting down; leave the VM running.
                }
            }
            event = next_event(&mut vm) => {
                match event {
                    Some(ev) => note_event(id, vm.as_mut(), &ev),
                    None => {
                        let guest = vm.as_ref().is_some_and(|v| v.guest_shutdown_seen);
                        tracing::info!(instance = %id, guest_shutdown = guest, "QEMU exited");
                        vm = None;
                        if guest {
                            state.guest_shutdown = true;
                            save_state(&files, &state).await;
                        }
                    }
                }
            }
            _ = tokio::time::sleep(recheck) => {}
        }
    }
}

/// Resolves when the instance is no longer to run here (true), or when the
/// agent drops the actor's channel on shutdown (false). Marks nothing as
/// seen, so the loop reads the change itself. A live departure still runs
/// here (its guest has not left yet).
async fn deletion(spec_rx: &watch::Receiver<Desire>) -> bool {
    let mut rx = spec_rx.clone();
    let deleted = rx
        .wait_for(|d| match d {
            Desire::Run(_) => false,
            Desire::Depart(departure) => departure.live.is_none(),
            Desire::Hold | Desire::Remove { .. } => true,
        })
        .await
        .is_ok();
    deleted // (a binding: the wait borrows `rx`, which must outlive it)
}

/// The next QMP event; `None` when QEMU has exited. Never resolves without a VM.
async fn next_event(vm: &mut Option<Vm>) -> Option<QmpEvent> {
    match vm {
        Some(vm) => vm.events.recv().await,
        None => std::future::pending().await,
    }
}

fn note_event(id: ServerId, vm: Option<&mut Vm>, ev: &QmpEvent) {
    tracing::debug!(instance = %id, event = %ev.name, data = %ev.data, "QMP event");
    if ev.name == "SHUTDOWN" {
        if let Some(vm) = vm {
            vm.guest_shutdown_seen = ev.data["guest"].as_bool() == Some(true)
                && ev.data["reason"].as_str() == Some("guest-shutdown");
        }
    }
}

/// Takes the state one step towards `spec`.
async fn converge(
    ctx: &InstanceContext,
    files: &InstanceFiles,
    spec: &InstanceSpec,
    departure: Option<Departure>,
    vm: &mut Option<Vm>,
    state: &mut InstanceState,
) -> anyhow::Result<()> {
    if spec.power == PowerState::Stopped && state.guest_shutdown {
        // The controller has recorded the guest's own shutdown.
        state.guest_shutdown = false;
        save_state(files, state).await;
    }
    if vm.is_none() {
        // An agent killed while QEMU was starting leaves a QEMU that no
        // pidfile may name yet (and the next start removes the pidfile):
        // adopt it, rather than start a second one (which fails on the disk
        // lock) or leave it running unseen after a stop or a delete.
        *vm = adopt(spec.id, files, ctx.console_log_bytes).await;
    }
    if live::arriving(spec, &state.live) {
        ctx.reports.set(observe(spec.id, files, vm, state, None));
        live::arrive(ctx, files, spec, vm, state).await?;
    }
    if let Some(departure) = live::departing(departure.as_ref(), &state.live) {
        live::depart(ctx, files, spec.id, departure, vm, state).await?;
    }
    if !files.disk().exists() {
        ctx.reports.set(observe(spec.id, files, vm, state, None));
        crate::moves::arrival::make_disk(ctx, files, spec).await?;
    }
    crate::moves::arrival::note_arrived(ctx, files, spec);
    match spec.power {
        PowerState::Running => {
            if vm.is_none() && !state.guest_shutdown && !state.live.departed_since(spec) {
                *vm = Some(boot(ctx, files, spec, state).await?);
            }
            if let Some(running) = vm {
                // Limits follow the spec at once (a change, a fresh boot, an
                // adopted QEMU alike); a guest starts paused and runs only
                // once they and the firewall (anti-spoofing, security
                // groups) cover its ports.
                let taps: Vec<String> = spec.nics.iter().map(|n| tap_name(n.port)).collect();
                ctx.networking.limit(&taps, &spec.network_limits).await?;
                if matches!(
                    running.qmp.run_state().await?.as_str(),
                    "prelaunch" | "paused"
                ) {
                    ctx.networking.wait_protected(&taps).await?;
                    running
                        .qmp
                        .execute("cont", None)
                        .await
                        .context("resuming the guest")?;
                    state.launched_at = Some(Utc::now());
                    // A fresh boot satisfies every reboot asked for so far.
                    state.reboot_generation = spec.reboot_generation;
                    save_state(files, state).await;
                    tracing::info!(instance = %spec.id, "instance started");
                }
                if spec.cdrom.is_none() && state.cdrom_inserted {
                    // Ejected: take the medium out now (the guest may hold
                    // the tray locked, hence `force`), so that the next
                    // reset boots from the disk.
                    running
                        .qmp
                        .execute("eject", Some(json!({"id": "cdrom0", "force": true})))
                        .await
                        .context("ejecting the CD-ROM")?;
                    state.cdrom_inserted = false;
                    save_state(files, state).await;
                    tracing::info!(instance = %spec.id, "CD-ROM ejected");
                }
                if spec.reboot_generation > state.reboot_generation {
                    running.qmp.execute("system_reset", None).await?;
                    state.reboot_generation = spec.reboot_generation;
                    save_state(files, state).await;
                    tracing::info!(instance = %spec.id, "instance rebooted");
                }
            }
        }
        PowerState::Stopped => {
            if let Some(running) = vm.take() {
                graceful_stop(running, ctx.stop_timeout).await;
                tracing::info!(instance = %spec.id, "instance stopped");
            }
        }
    }
    Ok(())
}

/// How long QEMU gets to exit after `quit` (it flushes the disk cache and
/// ends; a second here, more with a busy disk) before it is SIGKILLed.
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);

/// ACPI power-down, then `quit`, then SIGKILL; every step is time-bounded
/// (QMP commands by their own limit), so stopping a wedged QEMU ends too.
async fn graceful_stop(mut vm: Vm, timeout: Duration) {
    let powerdown = vm.qmp.execute("system_powerdown", None).await;
    let exited = match &powerdown {
        Ok(_) => {
            let exited =
                tokio::time::timeout(timeout, async { while vm.events.recv().await.is_some() {} })
                    .await;
            if exited.is_ok() {
                true
            } else {
                tracing::info!(
                    pid = vm.process.pid,
                    "guest ignored power-down; stopping it hard"
                );
                false
            }
        }
        // Not answering QMP: `quit` would time out just the same.
        Err(QmpError::Timeout { .. } | QmpError::Broken) => {
            tracing::warn!(pid = vm.process.pid, "QEMU does not answer QMP; killing it");
            vm.process.kill().await;
            return;
        }
        Err(e) => {
            tracing::info!(pid = vm.process.pid, error = %e, "power-down refused; quitting QEMU");
            false
        }
    };
    if !exited {
        let _ = tokio::time::timeout(QUIT_TIMEOUT, vm.qmp.execute("quit", None)).await;
    }
    if !vm.process.wait_gone(QUIT_TIMEOUT).await {
        vm.process.kill().await;
    }
}

/// Ends the instance's QEMU (the connected one and any other with its
/// uuid, e.g. from a start cut short) and removes its TAPs and every file
/// (all but the directory with `keep_disk`).
async fn destroy(
    id: ServerId,
    vm: Option<Vm>,
    files: &InstanceFiles,
    ctx: &InstanceContext,
    state: &InstanceState,
    keep_disk: bool,
) {
    if let Some(vm) = vm {
        // SIGKILL needs no answer from QEMU, so a wedged one goes too.
        vm.process.kill().await;
    }
    QemuProcess::kill_all(&id.to_string()).await;
    if let Some(record) = JailRecord::load(files) {
        if let Err(e) = jail::Leaf::from_dirs(&record.cgroups).remove().await {
            tracing::warn!(instance = %id, error = %e, "could not remove QEMU's cgroup");
        }
    }
    for tap in &state.taps {
        if let Err(e) = ctx.networking.unplug(tap).await {
            tracing::warn!(instance = %id, tap = %tap, error = %format!("{e:#}"), "could not remove TAP");
        }
    }
    if keep_disk {
        tracing::info!(instance = %id, "instance released; its directory stays in the shared store");
        return;
    }
    if let Err(e) = tokio::fs::remove_dir_all(&files.dir).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(instance = %id, error = %e, "could not remove instance files");
            return;
        }
    }
    tracing::info!(instance = %id, "instance removed");
}

fn observe(
    id: ServerId,
    files: &InstanceFiles,
    vm: &Option<Vm>,
    state: &InstanceState,
    fault: Option<String>,
) -> InstanceReport {
    let power = if fault.is_some() {
        ObservedPower::Error
    } else if vm.is_some() {
        ObservedPower::Running
    } else if files.disk().exists() {
        ObservedPower::Stopped
    } else {
        ObservedPower::Creating
    };
    InstanceReport {
        id,
        power,
        fault,
        reboot_generation: state.reboot_generation,
        launched_at: state.launched_at,
        guest_shutdown: state.guest_shutdown,
    }
}

async fn load_state(files: &InstanceFiles) -> InstanceState {
    match tokio::fs::read(files.state()).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => InstanceState::default(),
    }
}

/// Writes the notes atomically (temp file + rename).
async fn save_state(files: &InstanceFiles, state: &InstanceState) {
    let temp = files.dir.join("state.json.tmp");
    let bytes = serde_json::to_vec(state).expect("state serializes");
    let result = async {
        tokio::fs::write(&temp, bytes).await?;
        tokio::fs::rename(&temp, files.state()).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(dir = %files.dir.display(), error = %e, "could not save instance state");
    }
}

/// A live QEMU of instance `uuid` found by its `-uuid` argument, for when the
/// pidfile names none (an agent killed between spawn and pidfile). Should
/// there be several, the newest (usually the higher pid) stays.
fn unrecorded_qemu(uuid: &str) -> Option<QemuProcess> {
    QemuProcess::all_of(uuid).into_iter().max_by_key(|p| p.pid)
}

mod live;
mod start;
pub use live::migration_ip;
use start::{adopt, boot, boot_with};
pub(crate) use start::{create_disk, jail_dirs};

#[cfg(test)]
mod tests;
