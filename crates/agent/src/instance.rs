//! One actor per instance converges it to its spec: prepares the disk,
//! starts, stops, reboots and finally destroys its QEMU process.
//!
//! Each step is idempotent and decided from what is observed now (the
//! process, the disk, the agent's notes in `state.json`), so an actor that
//! starts over after an agent restart picks up where things are.

use crate::guest_data;
use crate::jail::{self, safe_fs, spawn::Confinement, JailRecord, Jails, Limits};
use crate::layout::InstanceFiles;
use crate::network::tap::tap_name;
use crate::network::HostNetworking;
use crate::qemu::cmdline::{fdset_path, DiskDriver};
use crate::qemu::process::{startup_complaint, Launch};
use crate::qemu::{QemuProcess, QmpClient, QmpError, QmpEvent, VmConfig};
use crate::reports::Reports;
use crate::storage::config_drive::{self, ConfigDrive, DriveFlavor};
use crate::storage::{overlay, ImageCache};
use anyhow::Context;
use chrono::{DateTime, Utc};
use nubis_api::agent::{Departure, InstanceReport, InstanceSpec, ObservedPower, PowerState};
use nubis_api::images::{ConfigFormat, ImageFormat};
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

fn disk_driver(format: ImageFormat) -> anyhow::Result<DiskDriver> {
    match format {
        ImageFormat::Qcow2 => Ok(DiskDriver::Qcow2),
        ImageFormat::Raw => Ok(DiskDriver::Raw),
        other => anyhow::bail!("a {} image cannot back a disk", other.as_str()),
    }
}

/// The instance's uid/gid (allocated on first use) and its directories,
/// made with their owners and modes.
pub(crate) fn jail_dirs(
    ctx: &InstanceContext,
    id: ServerId,
    files: &InstanceFiles,
) -> anyhow::Result<JailRecord> {
    let record = jail::ids::identity(&ctx.jails, id, files).context("choosing QEMU's uid")?;
    safe_fs::make_dirs(&files.dir, &files.vm_dir(), &record)
        .context("making the instance directory")?;
    Ok(record)
}

pub(crate) async fn create_disk(
    ctx: &InstanceContext,
    files: &InstanceFiles,
    spec: &InstanceSpec,
) -> anyhow::Result<()> {
    let record = jail_dirs(ctx, spec.id, files)?;
    // Written in root's directory, then given to the instance and moved
    // into `vm/` (see `safe_fs::place`).
    let temp = files.dir.join("disk.qcow2.new");
    if spec.disk_image.format == ImageFormat::Iso {
        // Installed from the ISO: the disk starts blank.
        overlay::create_blank(&temp, spec.disk_gib).await?;
    } else {
        let base = ctx.images.ensure(&spec.disk_image).await?;
        overlay::create(
            &temp,
            &base,
            disk_driver(spec.disk_image.format)?,
            spec.disk_gib,
        )
        .await?;
    }
    safe_fs::place(&temp, &files.disk(), &record, 0o600).context("placing the disk")
}

/// A copy of a kernel or initrd in `vm/` (QEMU reads them by path, which
/// an image descriptor cannot serve), made once per image.
async fn jailed_copy(
    files: &InstanceFiles,
    record: &JailRecord,
    source: std::path::PathBuf,
    name: String,
) -> anyhow::Result<std::path::PathBuf> {
    let dest = files.vm_dir().join(&name);
    if std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_file()) {
        return Ok(dest);
    }
    let temp = files.dir.join(format!("{name}.new"));
    let (record, target) = (record.clone(), dest.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        std::fs::copy(&source, &temp).with_context(|| format!("copying {}", source.display()))?;
        safe_fs::place(&temp, &target, &record, 0o400)?;
        Ok(())
    })
    .await??;
    Ok(dest)
}

async fn boot(
    ctx: &InstanceContext,
    files: &InstanceFiles,
    spec: &InstanceSpec,
    state: &mut InstanceState,
) -> anyhow::Result<Vm> {
    boot_with(ctx, files, spec, state, false).await
}

/// Starts the instance's QEMU, paused; `incoming`: as the target of a live
/// migration, waiting for the guest's state instead of booting it.
async fn boot_with(
    ctx: &InstanceContext,
    files: &InstanceFiles,
    spec: &InstanceSpec,
    state: &mut InstanceState,
    incoming: bool,
) -> anyhow::Result<Vm> {
    let started = std::time::Instant::now();
    let mut record = jail_dirs(ctx, spec.id, files)?;
    // Base images reach QEMU only as read-only descriptors (fd sets).
    let mut passed = jail::fds::PassedFds::default();
    let mut fd_sets = Vec::new();
    let mut pass_image = |path: &std::path::Path| -> anyhow::Result<std::path::PathBuf> {
        let fd =
            jail::fds::open_image(path).with_context(|| format!("opening {}", path.display()))?;
        let set = fd_sets.len() as u32 + 1;
        fd_sets.push((passed.pass(fd), set));
        Ok(fdset_path(set))
    };
    let backing = match spec.disk_image.format {
        ImageFormat::Iso => None,
        format => Some((
            pass_image(&ctx.images.ensure(&spec.disk_image).await?)?,
            disk_driver(format)?,
        )),
    };
    let cdrom = match &spec.cdrom {
        Some(iso) if iso.format == ImageFormat::Iso => {
            Some(pass_image(&ctx.images.ensure(iso).await?)?)
        }
        Some(other) => anyhow::bail!(
            "a {} image cannot go in a CD-ROM drive",
            other.format.as_str()
        ),
        None => None,
    };
    let kernel = match &spec.kernel {
        Some(k) => {
            let copy = jailed_copy(
                files,
                &record,
                ctx.images.ensure(k).await?,
                format!("{}.kernel", k.id),
            )
            .await?;
            Some(files.jailed(&copy))
        }
        None => None,
    };
    let initrd = match &spec.initrd {
        Some(i) => {
            let copy = jailed_copy(
                files,
                &record,
                ctx.images.ensure(i).await?,
                format!("{}.initrd", i.id),
            )
            .await?;
            Some(files.jailed(&copy))
        }
        None => None,
    };
    let mut nics = Vec::new();
    let mut tap_fds = Vec::new();
    for nic in &spec.nics {
        let tap = ctx.networking.plug(nic).await?;
        if !state.taps.contains(&tap) {
            state.taps.push(tap.clone());
            save_state(files, state).await;
        }
        let fd = jail::fds::open_tap(&tap).with_context(|| format!("opening TAP {tap}"))?;
        tap_fds.push(passed.pass(fd));
        nics.push((tap, nic.mac.clone()));
    }
    // A NoCloud seed whenever the image wants one; a config drive when
    // asked for, or when no metadata service can answer instead.
    let config_drive = match spec.guest.config_format {
        ConfigFormat::Nocloud => Some(write_config_drive(files, spec, DriveFlavor::NoCloud).await?),
        ConfigFormat::ConfigDrive if spec.guest.config_drive || !ctx.metadata_service => {
            Some(write_config_drive(files, spec, DriveFlavor::ConfigDrive2).await?)
        }
        ConfigFormat::ConfigDrive => None,
    };
    // Paths as QEMU sees them, in its mount namespace.
    let config = VmConfig {
        uuid: spec.id.to_string(),
        name: spec.name.clone(),
        accel: ctx.accel,
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
        disk: files.jailed(&files.disk()),
        backing,
        cdrom,
        kernel,
        initrd,
        cmdline: spec.cmdline.clone(),
        qmp_socket: files.jailed(&files.qmp_socket()),
        serial_socket: files.jailed(&files.serial_socket()),
        vnc_socket: files.jailed(&files.vnc_socket()),
        nics,
        config_drive: config_drive.map(|d| files.jailed(&d)),
        paused: true,
        tap_fds,
        fd_sets,
        incoming,
    };
    let leaf = ctx.jails.cgroups().leaf(&spec.id.to_string());
    let limits = Limits::for_flavor(
        spec.vcpus,
        spec.memory_mib,
        ctx.accel == crate::qemu::Accel::Tcg,
    );
    leaf.create(&limits).context("making QEMU's cgroup")?;
    if record.cgroups != leaf.dirs() {
        record.cgroups = leaf.dirs();
        record.save(files).context("recording QEMU's cgroup")?;
    }
    let confinement = Confinement {
        uid: record.uid,
        gid: record.gid,
        groups: match ctx.accel {
            crate::qemu::Accel::Kvm => ctx.jails.kvm_gid().into_iter().collect(),
            crate::qemu::Accel::Tcg => Vec::new(),
        },
        vm_dir: files.vm_dir(),
        cgroup_procs: leaf.procs_files(),
        keep_fds: passed.raw(),
    };
    std::fs::create_dir_all(jail::JAIL_DIR).context("making the jail mount point")?;
    tracing::debug!(instance = %spec.id, ms = started.elapsed().as_millis() as u64, "NICs and config drive ready");
    let process = QemuProcess::start(Launch {
        config: &config,
        confinement: &confinement,
        pidfile: &files.pidfile(),
        qmp_socket: &files.qmp_socket(),
        vnc_socket: &files.vnc_socket(),
        log: &files.qemu_log(),
    })
    .await?;
    drop(passed); // QEMU holds its own copies now.
    state.cdrom_inserted = config.cdrom.is_some();
    save_state(files, state).await;
    tracing::debug!(instance = %spec.id, ms = started.elapsed().as_millis() as u64, "QEMU started");
    match connect(process, files, ctx.console_log_bytes).await {
        Ok(vm) => Ok(vm),
        Err(e) => {
            // QEMU gave up during start-up: its own words say why.
            let exited = process.wait_gone(Duration::from_secs(1)).await;
            process.kill().await;
            let complaint = startup_complaint(&files.qemu_log());
            if exited && !complaint.is_empty() {
                return Err(e.context(format!("QEMU failed to start: {complaint}")));
            }
            Err(e)
        }
    }
}

/// Writes the instance's config drive (rewritten at each boot, so it always
/// matches the current spec).
async fn write_config_drive(
    files: &InstanceFiles,
    spec: &InstanceSpec,
    flavor: DriveFlavor,
) -> anyhow::Result<std::path::PathBuf> {
    let path = files.config_drive();
    // Written in root's directory and moved into `vm/` (see `safe_fs::place`).
    let temp = files.dir.join("config.img.new");
    let record = JailRecord::load(files).context("the instance has no jail record")?;
    let drive = ConfigDrive {
        meta_data: guest_data::meta_data(spec),
        user_data: guest_data::user_data(spec),
        network_data: guest_data::network_data(spec),
        vendor_data: serde_json::json!({}),
    };
    let target = path.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        config_drive::write(&temp, &drive, flavor)?;
        safe_fs::place(&temp, &target, &record, 0o600)?;
        Ok(())
    })
    .await??;
    Ok(path)
}

/// Connects to a QEMU's QMP socket and checks that it answers, and starts
/// copying its serial console into a log cut back at `log_bytes`.
async fn connect(
    process: QemuProcess,
    files: &InstanceFiles,
    log_bytes: u64,
) -> anyhow::Result<Vm> {
    // Through a descriptor of the socket itself: `vm/` is QEMU's to write,
    // and a link it planted there must not lead the agent elsewhere.
    let socket = safe_fs::SocketPath::open(&files.qmp_socket()).context("opening QMP's socket")?;
    let (qmp, events) = QmpClient::connect(socket.path())
        .await
        .context("connecting to QMP")?;
    // Answering proves QEMU is ours to control; resuming is converge's job.
    qmp.run_state().await?;
    // Before the guest runs (it starts paused), so its first line is kept.
    let serial = crate::serial_log::SerialLog::attach_with(
        files.serial_socket(),
        files.console_log(),
        log_bytes,
        log_bytes / 2,
    )
    .await;
    Ok(Vm {
        process,
        qmp,
        events,
        guest_shutdown_seen: false,
        _serial: serial,
    })
}

/// Finds the instance's QEMU from an earlier agent run and reconnects to it.
async fn adopt(id: ServerId, files: &InstanceFiles, log_bytes: u64) -> Option<Vm> {
    let process = QemuProcess::from_pidfile(&files.pidfile(), &id.to_string())
        .or_else(|| unrecorded_qemu(&id.to_string()))?;
    match connect(process, files, log_bytes).await {
        Ok(vm) => {
            tracing::info!(instance = %id, pid = process.pid, "adopted running instance");
            Some(vm)
        }
        Err(e) => {
            // A QEMU we cannot control is worse than none: end it, boot afresh.
            tracing::warn!(instance = %id, error = %e, "cannot control running QEMU; killing it");
            process.kill().await;
            None
        }
    }
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
pub use live::migration_ip;

#[cfg(test)]
mod tests;
