//! Shared harness of the end-to-end tests: a network namespace per test, a
//! real `nubis up` process inside it, the tiny guest image, and polling.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

pub mod api;
pub mod browser;
pub mod chaos;
pub mod cloud;
pub mod guest;
pub mod iperf;
pub mod join;
pub mod multihost;
pub mod netns;
pub mod openstack;
pub mod orphans;
pub mod postgres;
pub mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The directory with the tiny guest (`make tiny-image` builds it).
pub fn tiny_image_dir() -> PathBuf {
    let dir = std::env::var_os("NUBIS_TINY_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tiny-image"));
    for file in ["vmlinuz", "initrd.img", "disk.qcow2", "cmdline.txt"] {
        assert!(
            dir.join(file).exists(),
            "the tiny guest image is missing ({}); build it with `make tiny-image`",
            dir.join(file).display()
        );
    }
    dir
}

/// Polls `check` every 200 ms until it yields a value or `limit` passes.
/// Waits until the API at `base` (e.g. `http://127.0.0.1:8780`) answers
/// `/healthz`: a controller process just spawned serves HTTP.
pub async fn wait_for_api(http: &reqwest::Client, base: &str, limit: Duration) {
    wait_for(&format!("the API at {base}"), limit, || async {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
}

pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Cleans up, on drop (also when a test fails), what a `nubis up` or
/// `nubis agent` with `--data-dir` = the string left outside that directory:
/// its QEMUs and dnsmasqs (their command lines or mounts name files in
/// it), its QEMUs' cgroup leaves and the agent's runtime directory of
/// dnsmasq host files.
pub struct Reaper(pub String);

impl Drop for Reaper {
    fn drop(&mut self) {
        kill_processes_mentioning(&self.0);
        // The cgroup leaves of its QEMUs (recorded in each instance's
        // directory), empty once they are killed.
        let instances = std::path::Path::new(&self.0)
            .join("agent")
            .join("instances");
        for entry in std::fs::read_dir(instances).into_iter().flatten().flatten() {
            let files = nubis_agent::layout::InstanceFiles { dir: entry.path() };
            for leaf in nubis_agent::jail::JailRecord::load(&files)
                .map(|r| r.cgroups)
                .unwrap_or_default()
            {
                for _ in 0..50 {
                    if std::fs::remove_dir(&leaf).is_ok() || !leaf.exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
        let networks = std::path::Path::new(&self.0).join("agent").join("networks");
        let _ = std::fs::remove_dir_all(nubis_agent::network::runtime_dir(&networks));
    }
}

/// Kills every process whose command line mentions `needle` (a test's data
/// directory: its dnsmasqs name files in it; its QEMUs have it in their
/// mount table).
pub fn kill_processes_mentioning(needle: &str) {
    for pid in pids_mentioning(needle, "") {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// PIDs of QEMU processes whose command line mentions `needle`.
pub fn qemu_pids(needle: &str) -> Vec<i32> {
    pids_mentioning(needle, "qemu-system")
}

/// PIDs of processes whose command line starts with `program` (any, if
/// empty) and mentions `needle`.
pub fn pids_mentioning(needle: &str, program: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline);
        let name = text.split('\0').next().unwrap_or("");
        let base = name.rsplit('/').next().unwrap_or(name);
        let mentions = text.contains(needle)
            // A jailed QEMU names only jail paths; its mount namespace
            // shows the instance directory bound into its jail.
            || (base.starts_with("qemu-system")
                && std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
                    .is_ok_and(|m| m.contains(needle)));
        if base.starts_with(program) && mentions && pid != std::process::id() as i32 {
            pids.push(pid);
        }
    }
    pids
}
