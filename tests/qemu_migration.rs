//! The QEMU side of live migration on one machine, without an agent: two
//! jailed QEMUs of the tiny guest in one network namespace, the source's
//! disk mirrored over NBD and its RAM migrated over loopback
//! (`nubis_agent::qemu::migration`). The guest keeps its RAM (a file in
//! its tmpfs) and its disk (a marker written before, read back after with
//! the page cache dropped, so from the target's disk), and runs on the
//! target. A target killed half-way leaves the source running.

mod support;

use nubis_agent::jail::{fds, spawn::Confinement, FIRST_UID, JAIL_DIR, UID_COUNT};
use nubis_agent::qemu::cmdline::{fdset_path, DiskDriver};
use nubis_agent::qemu::migration::{self, IncomingEndpoints, MigrationSettings};
use nubis_agent::qemu::process::Launch;
use nubis_agent::qemu::{Accel, QemuProcess, QmpClient, VmConfig};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::netns::run_in_netns;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const MEMORY_MIB: u64 = 112;
const BOOT: Duration = Duration::from_secs(240);
const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// One jailed QEMU of the tiny guest: its directory, process and QMP.
struct Guest {
    dir: PathBuf,
    process: QemuProcess,
    qmp: Arc<QmpClient>,
}

impl Guest {
    fn vm(&self) -> PathBuf {
        self.dir.join("vm")
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.process.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// A uid for a test QEMU, from the top of the jail range (the agent
/// allocates from the bottom).
fn test_uid(slot: u32) -> u32 {
    FIRST_UID + UID_COUNT - 1 - (std::process::id() % 1000) * 4 - slot
}

/// Copies `from` into the guest's `vm/` as `name`, owned by `uid`.
fn place(from: &Path, vm: &Path, name: &str, uid: u32, mode: u32) {
    let to = vm.join(name);
    std::fs::copy(from, &to).unwrap();
    std::os::unix::fs::chown(&to, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Starts the tiny guest's QEMU jailed in `dir`, on a fresh overlay of
/// `base`; `incoming`: as a migration target.
async fn start_guest(dir: &Path, base: &Path, uid: u32, incoming: bool) -> Guest {
    let tiny = support::tiny_image_dir();
    let vm = dir.join("vm");
    std::fs::create_dir_all(&vm).unwrap();
    std::os::unix::fs::chown(&vm, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(&vm, std::fs::Permissions::from_mode(0o700)).unwrap();
    let overlay = dir.join("disk.qcow2.new");
    nubis_agent::storage::overlay::create(&overlay, base, DiskDriver::Qcow2, 1)
        .await
        .unwrap();
    std::fs::rename(&overlay, vm.join("disk.qcow2")).unwrap();
    std::os::unix::fs::chown(vm.join("disk.qcow2"), Some(uid), Some(uid)).unwrap();
    place(&tiny.join("vmlinuz"), &vm, "kernel", uid, 0o400);
    place(&tiny.join("initrd.img"), &vm, "initrd", uid, 0o400);
    let image = fds::open_image(base).unwrap();
    let jailed = |name: &str| Path::new(JAIL_DIR).join(name);
    let config = VmConfig {
        uuid: uuid::Uuid::new_v4().to_string(),
        name: "migrating".into(),
        accel: Accel::Tcg,
        vcpus: 1,
        memory_mib: MEMORY_MIB,
        disk: jailed("disk.qcow2"),
        backing: Some((fdset_path(1), DiskDriver::Qcow2)),
        cdrom: None,
        kernel: Some(jailed("kernel")),
        initrd: Some(jailed("initrd")),
        cmdline: Some(
            std::fs::read_to_string(tiny.join("cmdline.txt"))
                .unwrap()
                .trim()
                .to_owned(),
        ),
        qmp_socket: jailed("qmp.sock"),
        serial_socket: jailed("serial.sock"),
        vnc_socket: jailed("vnc.sock"),
        nics: vec![],
        config_drive: None,
        paused: true,
        tap_fds: vec![],
        fd_sets: vec![(image.as_raw_fd(), 1)],
        incoming,
    };
    let confinement = Confinement {
        uid,
        gid: uid,
        groups: vec![],
        vm_dir: vm.clone(),
        cgroup_procs: vec![],
        keep_fds: vec![image.as_raw_fd()],
    };
    std::fs::create_dir_all(JAIL_DIR).unwrap();
    let process = QemuProcess::start(Launch {
        config: &config,
        confinement: &confinement,
        pidfile: &dir.join("qemu.pid"),
        qmp_socket: &vm.join("qmp.sock"),
        vnc_socket: &vm.join("vnc.sock"),
        log: &dir.join("qemu.log"),
    })
    .await
    .unwrap_or_else(|e| panic!("starting QEMU: {e}"));
    drop(image);
    let (qmp, _events) = QmpClient::connect(&vm.join("qmp.sock")).await.unwrap();
    Guest {
        dir: dir.to_owned(),
        process,
        qmp: Arc::new(qmp),
    }
}

/// The guest's serial console: a root shell (see images/tiny/inittab).
struct Console {
    lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    write: tokio::net::unix::OwnedWriteHalf,
}

impl Console {
    async fn open(guest: &Guest) -> Self {
        let stream = UnixStream::connect(guest.vm().join("serial.sock"))
            .await
            .unwrap();
        let (read, write) = stream.into_split();
        Self {
            lines: BufReader::new(read).lines(),
            write,
        }
    }

    /// Reads lines until one contains `needle`; returns them all.
    async fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        let mut seen = String::new();
        let found = tokio::time::timeout(limit, async {
            while let Ok(Some(line)) = self.lines.next_line().await {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            found == Ok(true),
            "{needle:?} not seen on the console; saw:\n{seen}"
        );
        seen
    }

    /// Runs `command` in the console shell; its output ends with a line
    /// `done-<n>` that the echoed command line itself does not contain.
    async fn run(&mut self, command: &str, n: u32) -> String {
        let line = format!("{command}; echo done-$((0+{n}))\n");
        self.write.write_all(line.as_bytes()).await.unwrap();
        self.wait_for(&format!("done-{n}"), Duration::from_secs(60))
            .await
    }
}

/// The base image both hosts share, root's (the QEMUs get a descriptor).
fn base_image(dir: &Path) -> PathBuf {
    let base = dir.join("base.qcow2");
    std::fs::copy(support::tiny_image_dir().join("disk.qcow2"), &base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o600)).unwrap();
    base
}

/// A booted source guest (with a marker in RAM and one on its disk, after
/// the guest's own boot counter) and a target waiting for it.
async fn source_and_target(root: &Path, slot: u32) -> (Guest, Console, Guest, IncomingEndpoints) {
    let base = base_image(root);
    let source = start_guest(&root.join("source"), &base, test_uid(slot), false).await;
    let mut console = Console::open(&source).await;
    source.qmp.execute("cont", None).await.unwrap();
    console.wait_for("nubis-tiny: ready", BOOT).await;
    // Markers spelled so that the echoed commands do not contain them.
    let out = console
        .run(
            "echo RAM-MARK-$((6*7)) > /tmp/marker; \
             echo DISK-MARK-$((6*7)) | dd of=/dev/vda bs=512 seek=8192 conv=notrunc,fsync",
            1,
        )
        .await;
    assert!(!out.contains("can't"), "writing the markers: {out}");
    let target = start_guest(&root.join("target"), &base, test_uid(slot + 1), true).await;
    assert_eq!(target.qmp.run_state().await.unwrap(), "inmigrate");
    let endpoints = IncomingEndpoints {
        nbd: SocketAddr::new(LOOPBACK, migration::free_port(LOOPBACK).unwrap()),
        migration: SocketAddr::new(LOOPBACK, migration::free_port(LOOPBACK).unwrap()),
    };
    migration::prepare_incoming(&target.qmp, endpoints)
        .await
        .unwrap();
    (source, console, target, endpoints)
}

#[test]
fn a_running_guest_moves_with_its_ram_and_disk() {
    run_in_netns("qemu-migrate", || async {
        let root = tempfile::tempdir().unwrap();
        let (source, mut source_console, target, endpoints) =
            source_and_target(root.path(), 0).await;
        let arriving = {
            let qmp = target.qmp.clone();
            tokio::spawn(
                async move { migration::finish_incoming(&qmp, Duration::from_secs(600)).await },
            )
        };
        let outcome = migration::migrate_out(&source.qmp, endpoints, MigrationSettings::default())
            .await
            .unwrap_or_else(|e| panic!("migration failed: {e}"));
        arriving.await.unwrap().unwrap();
        eprintln!(
            "migrated: downtime {} ms, total {} ms",
            outcome.downtime_ms, outcome.total_ms
        );
        assert!(outcome.total_ms > 0, "QEMU measured the migration");
        assert_eq!(source.qmp.run_state().await.unwrap(), "postmigrate");
        assert_eq!(target.qmp.run_state().await.unwrap(), "running");
        let jobs = source.qmp.execute("query-block-jobs", None).await.unwrap();
        assert_eq!(jobs, serde_json::json!([]), "the mirror is gone");
        source.qmp.execute("quit", None).await.ok();
        assert!(source.process.wait_gone(Duration::from_secs(20)).await);
        drop(source_console.write.shutdown().await);

        let mut console = Console::open(&target).await;
        let out = console
            .run(
                "sync; echo 3 > /proc/sys/vm/drop_caches; cat /tmp/marker; \
                 dd if=/dev/vda bs=512 skip=8192 count=1 2>/dev/null | head -n 1",
                2,
            )
            .await;
        assert!(out.contains("RAM-MARK-42"), "RAM kept: {out}");
        assert!(out.contains("DISK-MARK-42"), "disk kept: {out}");
        // Positive control of the disk read: a block never written reads
        // as zeros, not as the marker.
        let out = console
            .run(
                "dd if=/dev/vda bs=512 skip=9000 count=1 2>/dev/null | tr -d '\\000' | wc -c",
                3,
            )
            .await;
        assert!(out.lines().any(|l| l.trim() == "0"), "blank block: {out}");
        // The target's disk is writable and is the guest's now.
        let out = console
            .run(
                "echo AFTER-MARK-$((6*7)) | dd of=/dev/vda bs=512 seek=8200 conv=notrunc,fsync; \
                 echo 3 > /proc/sys/vm/drop_caches; \
                 dd if=/dev/vda bs=512 skip=8200 count=1 2>/dev/null | head -n 1",
                4,
            )
            .await;
        assert!(out.contains("AFTER-MARK-42"), "written after: {out}");
        // The guest's kernel saw nothing wrong with its memory after the
        // switch-over (a page copied while the guest still ran would show
        // as "bad pte" or an oops); the boot banner is the control that
        // the kernel log is readable at all.
        let out = console
            .run(
                "dmesg | grep -c 'Linux version'; \
                 dmesg | grep -c -e 'bad pte' -e 'Oops' -e 'BUG:'",
                5,
            )
            .await;
        let counts: Vec<u32> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
        assert_eq!(counts, vec![1, 0], "kernel log after the move: {out}");
        target.qmp.execute("quit", None).await.ok();
        assert!(target.process.wait_gone(Duration::from_secs(20)).await);
        // The marker is in the target's overlay file itself.
        let raw = root.path().join("target-disk.raw");
        let status = std::process::Command::new("qemu-img")
            .args(["convert", "-f", "qcow2", "-O", "raw"])
            .arg(target.vm().join("disk.qcow2"))
            .arg(&raw)
            .status()
            .unwrap();
        assert!(status.success());
        let bytes = std::fs::read(&raw).unwrap();
        assert!(bytes[8192 * 512..].starts_with(b"DISK-MARK-42"));
        assert!(bytes[8200 * 512..].starts_with(b"AFTER-MARK-42"));
    });
}

#[test]
fn a_target_killed_half_way_leaves_the_source_running() {
    run_in_netns("qemu-migrate-fail", || async {
        let root = tempfile::tempdir().unwrap();
        let (source, mut console, target, endpoints) = source_and_target(root.path(), 2).await;
        // Slow enough (2 MiB/s for 112 MiB of RAM) to be caught half-way.
        let settings = MigrationSettings {
            max_bandwidth: 2 << 20,
            ..MigrationSettings::default()
        };
        let migrating = {
            let qmp = source.qmp.clone();
            tokio::spawn(async move { migration::migrate_out(&qmp, endpoints, settings).await })
        };
        // Wait until RAM is on its way (the disk mirror is done by then).
        let mut seen = Vec::new();
        for _ in 0..1200 {
            let info = source.qmp.execute("query-migrate", None).await.unwrap();
            let status = info["status"].as_str().unwrap_or("none").to_owned();
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            if status == "active" && info["ram"]["transferred"].as_u64().unwrap_or(0) > 1 << 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen.last().map(String::as_str), Some("active"), "{seen:?}");
        target.process.kill().await;
        let err = migrating
            .await
            .unwrap()
            .expect_err("the migration cannot succeed without its target");
        eprintln!("failed as it should: {err}");
        assert_eq!(source.qmp.run_state().await.unwrap(), "running");
        let jobs = source.qmp.execute("query-block-jobs", None).await.unwrap();
        assert_eq!(jobs, serde_json::json!([]), "no mirror left");
        let info = source.qmp.execute("query-migrate", None).await.unwrap();
        assert!(
            matches!(info["status"].as_str(), Some("failed" | "cancelled")),
            "{info}"
        );
        // The guest still runs and answers on the source, its data intact.
        let out = console
            .run(
                "cat /tmp/marker; echo 3 > /proc/sys/vm/drop_caches; \
                 dd if=/dev/vda bs=512 skip=8192 count=1 2>/dev/null | head -n 1",
                5,
            )
            .await;
        assert!(out.contains("RAM-MARK-42"), "{out}");
        assert!(out.contains("DISK-MARK-42"), "{out}");
        assert!(!target.process.is_alive());
    });
}
