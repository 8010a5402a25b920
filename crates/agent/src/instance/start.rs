//! Starting an instance's QEMU: its disk (an overlay over the image, or
//! blank for an ISO install), its jail (uid, directories, cgroup), the
//! descriptors QEMU gets (images, TAPs), the config drive, the launch, and
//! the QMP connection, also to a QEMU of an earlier agent run (adopt).

use super::{save_state, unrecorded_qemu, InstanceContext, InstanceState, Vm};
use crate::guest_data;
use crate::jail::{self, safe_fs, spawn::Confinement, JailRecord, Limits};
use crate::layout::InstanceFiles;
use crate::qemu::cmdline::{fdset_path, DiskDriver};
use crate::qemu::process::{startup_complaint, Launch};
use crate::qemu::{QemuProcess, QmpClient, VmConfig};
use crate::storage::config_drive::{self, ConfigDrive, DriveFlavor};
use crate::storage::overlay;
use anyhow::Context;
use nubis_api::agent::{ImageRef, InstanceSpec};
use nubis_api::images::{ConfigFormat, ImageFormat};
use nubis_api::ServerId;
use std::time::Duration;

pub(super) fn disk_driver(format: ImageFormat) -> anyhow::Result<DiskDriver> {
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

pub(super) async fn boot(
    ctx: &InstanceContext,
    files: &InstanceFiles,
    spec: &InstanceSpec,
    state: &mut InstanceState,
) -> anyhow::Result<Vm> {
    boot_with(ctx, files, spec, state, false).await
}

/// A kernel or initrd image (`kind`) for direct boot, as QEMU sees its
/// jailed copy; none when the spec has none.
async fn boot_file(
    ctx: &InstanceContext,
    files: &InstanceFiles,
    record: &JailRecord,
    image: Option<&ImageRef>,
    kind: &str,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    let Some(image) = image else {
        return Ok(None);
    };
    let source = ctx.images.ensure(image).await?;
    let copy = jailed_copy(files, record, source, format!("{}.{kind}", image.id)).await?;
    Ok(Some(files.jailed(&copy)))
}

/// Starts the instance's QEMU, paused; `incoming`: as the target of a live
/// migration, waiting for the guest's state instead of booting it.
pub(super) async fn boot_with(
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
    let kernel = boot_file(ctx, files, &record, spec.kernel.as_ref(), "kernel").await?;
    let initrd = boot_file(ctx, files, &record, spec.initrd.as_ref(), "initrd").await?;
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
pub(super) async fn connect(
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
pub(super) async fn adopt(id: ServerId, files: &InstanceFiles, log_bytes: u64) -> Option<Vm> {
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
