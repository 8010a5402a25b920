//! `make bench`: control-plane overhead of creating a server.
//!
//! In one run, inside a network namespace, for a series of servers, it
//! measures from `POST /v1/servers` to (a) the guest's QEMU reporting
//! `running` over QMP (the agent records that moment as `launched_at`) and
//! (b) a successful `ssh` login with the server's key pair. The baseline is
//! the same QEMU command line started directly (spawn -> QMP `running`, and
//! -> ssh login), with the same config drive, address, bridge and base
//! image. An idle "anchor" server keeps the default network on the host, as
//! other servers of a project would, so each create finds its network
//! there. It prints
//! both and their ratios at the median. Target: QMP ratio <= 1.2. Not a test:
//! nothing here asserts a time.

#[path = "../tests/support/mod.rs"]
mod support;

use nubis_agent::qemu::QmpClient;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::cloud::Cloud;
use support::netns::run_in_netns;

const BOOT: Duration = Duration::from_secs(180);

/// One measured start: ms to QMP running and ms to a working ssh login.
struct Sample {
    running: f64,
    ssh: f64,
}

fn main() {
    let runs: usize = std::env::var("NUBIS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    run_in_netns("bench", move || async move {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login("bench", "bench-password").await;
        cloud.upload_tiny_image();
        let key = cloud.keypair("bench").await;
        // The anchor: keeps the network (bridge, dnsmasq) on the host.
        create(&cloud, "anchor", &key).await;
        // Warm-up (the host caches the image; not measured). It lends the
        // baseline its command line and config drive, then frees its address.
        let (template_id, ip, _) = create(&cloud, "warmup", &key).await;
        let template = qemu_args(&template_id);
        // Its jail's files (config drive, kernel and initrd copies).
        let config = cloud.data_path().join("template-vm");
        let _ = std::fs::remove_dir_all(&config);
        std::fs::create_dir_all(&config).unwrap();
        let vm = cloud
            .data_path()
            .join("agent/instances")
            .join(&template_id)
            .join("vm");
        for entry in std::fs::read_dir(&vm).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "config.img" || name.ends_with(".kernel") || name.ends_with(".initrd") {
                std::fs::copy(entry.path(), config.join(&name)).unwrap();
            }
        }
        delete(&cloud, &template_id).await;

        let mut nubis = Vec::new();
        let mut direct = Vec::new();
        for i in 0..runs {
            let name = format!("bench-{i}");
            // Same address as the template, so ssh targets are identical.
            forget_neighbour(&ip);
            let (id, _, sample) = create_at(&cloud, &name, &key, Some(&ip)).await;
            nubis.push(sample);
            delete(&cloud, &id).await;
            forget_neighbour(&ip);
            direct.push(start_directly(&cloud, &template, &template_id, &config, &ip, &key).await);
        }
        report(&nubis, &direct);
    });
}

async fn create(cloud: &Cloud, name: &str, key: &Path) -> (String, String, Sample) {
    create_at(cloud, name, key, None).await
}

/// Creates a server (optionally at a fixed address); returns its id, its
/// address and the sample.
async fn create_at(
    cloud: &Cloud,
    name: &str,
    key: &Path,
    ip: Option<&str>,
) -> (String, String, Sample) {
    // A config drive, so the baseline (which has no metadata service of its
    // own to ask) configures its guest the same way.
    let mut body = json!({"name": name, "image": "tiny", "flavor": "tiny", "key_name": "bench", "config_drive": true});
    if let Some(ip) = ip {
        body["networks"] = json!([{"network": "default", "fixed_ip": ip}]);
    }
    let sent = chrono::Utc::now();
    let started = Instant::now();
    let (s, server) = cloud.call(Method::POST, "/v1/servers", Some(body)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{server}");
    let id = server["id"].as_str().unwrap().to_owned();
    let ip = server["addresses"][0]["ip"].as_str().unwrap().to_owned();
    wait_ssh(key, &ip).await;
    let ssh = started.elapsed().as_secs_f64() * 1000.0;
    let running = cloud.wait_status(&id, "running", BOOT).await;
    let launched: chrono::DateTime<chrono::Utc> =
        running["launched_at"].as_str().unwrap().parse().unwrap();
    let running = (launched - sent).num_microseconds().unwrap() as f64 / 1000.0;
    (id, ip, Sample { running, ssh })
}

/// Polls until `ssh root@ip true` works with the key.
async fn wait_ssh(key: &Path, ip: &str) {
    let key = key.to_owned();
    let ip = ip.to_owned();
    support::wait_for("ssh", BOOT, || {
        let (key, ip) = (key.clone(), ip.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new("ssh")
                    .arg("-i")
                    .arg(&key)
                    .args([
                        "-o",
                        "StrictHostKeyChecking=no",
                        "-o",
                        "UserKnownHostsFile=/dev/null",
                        "-o",
                        "BatchMode=yes",
                        "-o",
                        "ConnectTimeout=1",
                        "-o",
                        "LogLevel=QUIET",
                    ])
                    .arg(format!("root@{ip}"))
                    .arg("true")
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            })
            .await
            .unwrap()
            .then_some(())
        }
    })
    .await;
}

/// Drops the host's ARP entry for `ip`: each run puts a new MAC behind it.
fn forget_neighbour(ip: &str) {
    let _ = Command::new("ip")
        .args(["neigh", "flush", "to", ip])
        .status();
}

fn ip_cmd(args: &[&str]) {
    let ok = Command::new("ip").args(args).status().unwrap();
    assert!(ok.success(), "ip {args:?}");
}

async fn delete(cloud: &Cloud, id: &str) {
    let (s, _) = cloud
        .call(Method::DELETE, &format!("/v1/servers/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    support::wait_for("delete", BOOT, || async {
        let (s, _) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}"), None)
            .await;
        (s == StatusCode::NOT_FOUND && support::qemu_pids(id).is_empty()).then_some(())
    })
    .await;
}

/// The exact argument vector Nubis gave QEMU for instance `id`.
fn qemu_args(id: &str) -> Vec<String> {
    let pid = support::qemu_pids(id)[0];
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .skip(1)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Starts the template's QEMU command line directly (as root, no jail) on
/// a fresh overlay of the same base image, with the template's config
/// drive, kernel and initrd and a TAP of its own on the same bridge (made
/// before the clock starts). Paths in the jail become paths in the
/// baseline's directory, the base image's descriptor its path, the TAP's
/// descriptor its name.
async fn start_directly(
    cloud: &Cloud,
    template: &[String],
    template_id: &str,
    config: &Path,
    ip: &str,
    key: &Path,
) -> Sample {
    let dir = cloud.data_path().join("baseline");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(config).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let base = base_image(cloud);
    // A TAP of its own on the network's bridge (kept by the anchor).
    let bridge = bridge_name();
    let tap = "nbench0";
    let _ = Command::new("ip")
        .args(["link", "del", tap])
        .stderr(std::process::Stdio::null())
        .status();
    ip_cmd(&["tuntap", "add", "dev", tap, "mode", "tap"]);
    ip_cmd(&["link", "set", tap, "master", &bridge, "up"]);
    let uuid = uuid::Uuid::new_v4().to_string();
    // The same arguments; only the instance's own directory, uuid and TAP differ.
    let mut args: Vec<OsString> = Vec::new();
    let mut skip = false;
    for a in template {
        if std::mem::take(&mut skip) {
            continue;
        }
        if a == "-add-fd" {
            skip = true;
            continue;
        }
        let a = a.replace(nubis_agent::jail::JAIL_DIR, &dir.to_string_lossy());
        let a = a.replace("/dev/fdset/1", &base);
        let a = match a.split_once(",fd=") {
            Some((netdev, _)) if netdev.starts_with("tap,") => {
                format!("{netdev},ifname={tap},script=no,downscript=no")
            }
            _ => a,
        };
        args.push(OsString::from(a.replace(template_id, &uuid)));
    }
    let ok = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", &base])
        .arg(dir.join("disk.qcow2"))
        .arg("1G")
        .status()
        .unwrap();
    assert!(ok.success());
    let started = Instant::now();
    let mut child = tokio::process::Command::new("qemu-system-x86_64")
        .args(&args)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let socket = dir.join("qmp.sock");
    while !socket.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "baseline QEMU failed: {args:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (qmp, _events) = QmpClient::connect(&socket).await.unwrap();
    // The command line starts paused (-S), as Nubis starts guests: resume it.
    if qmp.run_state().await.unwrap() != "running" {
        qmp.execute("cont", None).await.unwrap();
    }
    let state = qmp.run_state().await.unwrap();
    let running = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(state, "running");
    wait_ssh(key, ip).await;
    let ssh = started.elapsed().as_secs_f64() * 1000.0;
    let _ = child.kill().await;
    ip_cmd(&["link", "del", tap]);
    Sample { running, ssh }
}

/// The default network's bridge.
fn bridge_name() -> String {
    std::fs::read_to_string("/proc/thread-self/net/dev")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_owned()))
        .find(|n| n.starts_with("nbr-"))
        .expect("the anchor keeps a bridge")
}

/// The cached base image (the only qcow2 in the agent's image cache; Nubis
/// hands it to QEMU as fd set 1).
fn base_image(cloud: &Cloud) -> String {
    std::fs::read_dir(cloud.data_path().join("agent/images"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "qcow2"))
        .expect("the cached base image")
        .to_string_lossy()
        .into_owned()
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.9), v[0])
}

fn report(nubis: &[Sample], direct: &[Sample]) {
    println!(
        "create_to_running ({} runs each, TCG, tiny flavor, 1 NIC, config drive)",
        nubis.len()
    );
    for (what, pick) in [
        (
            "QMP running",
            (|s: &Sample| s.running) as fn(&Sample) -> f64,
        ),
        ("ssh login  ", |s: &Sample| s.ssh),
    ] {
        let (nm, n90, nmin) = stats(nubis.iter().map(pick).collect());
        let (dm, d90, dmin) = stats(direct.iter().map(pick).collect());
        println!("  {what}: nubis  POST /v1/servers ->   median {nm:8.1} ms  p90 {n90:8.1} ms  min {nmin:8.1} ms");
        println!("  {what}: direct qemu-system-x86_64 -> median {dm:8.1} ms  p90 {d90:8.1} ms  min {dmin:8.1} ms");
        println!("  {what}: ratio of medians {:.2}", nm / dm);
    }
    println!("  target: QMP running ratio <= 1.20");
}
