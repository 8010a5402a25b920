//! QEMU is jailed: each runs as a uid/gid of its own with no supplementary
//! groups, under seccomp, in a cgroup leaf limited from its flavor, and
//! can open its own disk but neither `/etc/shadow`, nor another
//! instance's disk, nor the image cache; it outlives a `kill -9` of
//! `nubis up` and is adopted after the restart; a delete removes its
//! cgroup leaf and its directory.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::cloud::Cloud;
use support::netns::run_in_netns;
use support::qemu_pids;

const BOOT: Duration = Duration::from_secs(180);
const MEMORY_MIB: u64 = 112;

/// A `Name:` line of /proc/PID/status, split into fields.
fn status_field(pid: i32, name: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The one QEMU of server `id`.
fn qemu_of(id: &str) -> i32 {
    let pids = qemu_pids(id);
    assert_eq!(pids.len(), 1, "one QEMU for {id}: {pids:?}");
    pids[0]
}

/// Opens `path` without following it or needing its parents' permissions
/// later: a descriptor the access check reopens as another user.
fn path_fd(path: &Path) -> OwnedFd {
    // No O_CLOEXEC: the checking child inherits it.
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Whether a process running as `uid`/`gid` (no supplementary groups, as
/// QEMU) can open the file behind `fd` for reading and writing. Reopening
/// through /proc/self/fd checks only the file's own owner and mode (not
/// the directories above it), so this tests the file itself.
fn can_open_as(uid: u32, gid: u32, fd: &OwnedFd, write: bool) -> bool {
    let redirect = if write { "<>" } else { "<" };
    std::process::Command::new("/bin/sh")
        .args([
            "-c",
            &format!(": {redirect} /proc/self/fd/{}", fd.as_raw_fd()),
        ])
        .uid(uid)
        .gid(gid)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The file of `controller` (v1 name) or of its v2 equivalent for the
/// cgroup of process `pid`, e.g. ("memory", "memory.limit_in_bytes",
/// "memory.max").
fn cgroup_file(pid: i32, controller: &str, v1_file: &str, v2_file: &str) -> PathBuf {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        let path = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == controller) {
            return Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(path)
                .join(v1_file);
        }
        if controllers.is_empty() {
            for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                let file = Path::new(root).join(path).join(v2_file);
                if file.exists() {
                    return file;
                }
            }
        }
    }
    panic!("process {pid} has no {controller} cgroup:\n{cgroups}");
}

fn mode(path: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.permissions().mode() & 0o7777)
}

#[test]
fn qemu_is_jailed_and_adopted_after_a_crash() {
    run_in_netns("jail", || async {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login("jane", "jane-password").await;
        cloud.upload_tiny_image();
        let mut ids = Vec::new();
        for name in ["a", "b"] {
            let (id, _) = cloud
                .create_server(json!({"name": name, "image": "tiny", "vcpus": 1,
                    "memory_mib": MEMORY_MIB, "disk_gib": 1}))
                .await;
            ids.push(id);
        }
        for id in &ids {
            cloud.wait_status(id, "running", BOOT).await;
        }
        let (a, b) = (ids[0].clone(), ids[1].clone());
        let (pid_a, pid_b) = (qemu_of(&a), qemu_of(&b));

        // Unprivileged, own ids, no groups, seccomp filter mode.
        let uids = status_field(pid_a, "Uid");
        let gids = status_field(pid_a, "Gid");
        assert!(uids.iter().all(|u| u != "0"), "QEMU runs as root: {uids:?}");
        assert!(
            gids.iter().all(|g| g != "0"),
            "QEMU's gid is root's: {gids:?}"
        );
        let accel_tcg = std::fs::read(format!("/proc/{pid_a}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains("tcg"))
            .unwrap();
        if accel_tcg {
            assert!(
                status_field(pid_a, "Groups").is_empty(),
                "no supplementary groups"
            );
        }
        assert_eq!(status_field(pid_a, "Seccomp"), ["2"], "seccomp filter mode");
        let uid_a: u32 = uids[0].parse().unwrap();
        let gid_a: u32 = gids[0].parse().unwrap();
        let uid_b: u32 = status_field(pid_b, "Uid")[0].parse().unwrap();
        assert_ne!(uid_a, uid_b, "one uid per instance");

        // Files: the instance directory root's, QEMU's own ones its uid's.
        let instances = cloud.data_path().join("agent/instances");
        let (dir_a, dir_b) = (instances.join(&a), instances.join(&b));
        assert_eq!(mode(&dir_a), (0, 0o700));
        assert_eq!(mode(&dir_a.join("vm")), (uid_a, 0o700));
        assert_eq!(mode(&dir_a.join("vm/disk.qcow2")), (uid_a, 0o600));
        assert_eq!(mode(&instances), (0, 0o700));
        let images = cloud.data_path().join("agent/images");
        assert_eq!(mode(&images), (0, 0o700));
        let image = std::fs::read_dir(&images)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "qcow2"))
            .expect("the cached base image");
        assert_eq!(mode(&image), (0, 0o400));
        assert_eq!(
            mode(&cloud.data_path().join("state.db")),
            (0, 0o600),
            "the SQLite file"
        );

        // What QEMU a's uid can open. Positive control: its own disk.
        let own_disk = path_fd(&dir_a.join("vm/disk.qcow2"));
        assert!(can_open_as(uid_a, gid_a, &own_disk, true), "its own disk");
        let other_disk = path_fd(&dir_b.join("vm/disk.qcow2"));
        assert!(
            !can_open_as(uid_a, gid_a, &other_disk, false),
            "another instance's disk"
        );
        assert!(
            can_open_as(uid_b, uid_b, &other_disk, true),
            "b's disk is b's"
        );
        let shadow = path_fd(Path::new("/etc/shadow"));
        assert!(!can_open_as(uid_a, gid_a, &shadow, false), "/etc/shadow");
        assert!(
            !can_open_as(uid_a, gid_a, &path_fd(&image), false),
            "the image cache"
        );
        // QEMU sees its directory in a jail of its own mount namespace.
        let mounts = std::fs::read_to_string(format!("/proc/{pid_a}/mountinfo")).unwrap();
        assert!(
            mounts
                .lines()
                .any(|l| l.contains(" /run/nubis/jail ") && l.contains(&format!("{a}/vm"))),
            "the jail mount:\n{mounts}"
        );

        // The cgroup leaf and its limits, from the flavor.
        let limits = nubis_agent::jail::Limits::for_flavor(1, MEMORY_MIB, accel_tcg);
        let memory = cgroup_file(pid_a, "memory", "memory.limit_in_bytes", "memory.max");
        let pids = cgroup_file(pid_a, "pids", "pids.max", "pids.max");
        assert!(
            memory.to_string_lossy().contains(&a),
            "a leaf of its own: {}",
            memory.display()
        );
        assert_eq!(
            std::fs::read_to_string(&memory).unwrap().trim(),
            limits.memory_bytes.to_string()
        );
        assert_eq!(
            std::fs::read_to_string(&pids).unwrap().trim(),
            limits.pids.to_string()
        );
        let leaves: Vec<PathBuf> = [memory, pids]
            .iter()
            .map(|f| f.parent().unwrap().to_owned())
            .collect();

        // kill -9 of `nubis up`: QEMU lives on and is adopted.
        cloud.kill9();
        assert_eq!(qemu_pids(&a), [pid_a], "QEMU outlives nubis up");
        cloud.spawn().await;
        support::wait_for("the QEMU to be adopted", BOOT, || async {
            cloud
                .log()
                .contains("adopted running instance")
                .then_some(())
        })
        .await;
        let server = cloud.wait_status(&a, "running", BOOT).await;
        assert_eq!(server["status"], "running");
        assert_eq!(qemu_pids(&a), [pid_a], "the same QEMU, adopted");
        // Adopted means controlled: a stop of b goes through its QMP.
        let (s, _) = cloud
            .call(Method::POST, &format!("/v1/servers/{b}/stop"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        cloud.wait_status(&b, "stopped", BOOT).await;
        assert!(qemu_pids(&b).is_empty());

        // A delete removes the cgroup leaf and the jail.
        let (s, _) = cloud
            .call(Method::DELETE, &format!("/v1/servers/{a}"), None)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        support::wait_for("the QEMU, its cgroup and its files to go", BOOT, || async {
            (qemu_pids(&a).is_empty() && !dir_a.exists() && leaves.iter().all(|l| !l.exists()))
                .then_some(())
        })
        .await;
        assert!(dir_b.exists(), "the other instance keeps its files");
    });
}
