//! `make bench`: control-plane overhead of creating a server.
//!
//! In one run, inside a network namespace, it measures for a series of
//! servers the time from `POST /v1/servers` to the guest's QEMU reporting
//! `running` over QMP (the agent records that moment as `launched_at`), and,
//! as the baseline, the same QEMU command line started directly (spawn ->
//! QMP `query-status` = running). It prints both and their ratio at the
//! median. Target: ratio <= 1.2. Not a test: nothing here asserts a time.

#[path = "../tests/support/mod.rs"]
mod support;

use nubis_agent::qemu::{QemuProcess, QmpClient};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::ffi::OsString;
use std::time::{Duration, Instant};
use support::cloud::Cloud;
use support::netns::run_in_netns;

const BOOT: Duration = Duration::from_secs(180);

fn main() {
    let runs: usize = std::env::var("NUBIS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    run_in_netns("bench", move || async move {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login("bench", "bench-password").await;
        cloud.upload_tiny_image();
        // Warm-up: the host caches the image on first use; not measured.
        let (template_id, _) = create(&cloud, "warmup").await;
        let template = qemu_args(&template_id);
        delete(&cloud, &template_id).await;

        let mut nubis = Vec::new();
        let mut direct = Vec::new();
        for i in 0..runs {
            let (id, ms) = create(&cloud, &format!("bench-{i}")).await;
            nubis.push(ms);
            delete(&cloud, &id).await;
            direct.push(start_directly(&cloud, &template, &template_id).await);
        }
        report(&nubis, &direct);
    });
}

/// Creates a server; returns its id and ms from POST to QEMU running.
async fn create(cloud: &Cloud, name: &str) -> (String, f64) {
    let sent = chrono::Utc::now();
    let (s, server) = cloud
        .call(
            Method::POST,
            "/v1/servers",
            Some(json!({"name": name, "image": "tiny", "flavor": "tiny"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{server}");
    let id = server["id"].as_str().unwrap().to_owned();
    let running = cloud.wait_status(&id, "running", BOOT).await;
    let launched: chrono::DateTime<chrono::Utc> =
        running["launched_at"].as_str().unwrap().parse().unwrap();
    let ms = (launched - sent).num_microseconds().unwrap() as f64 / 1000.0;
    (id, ms)
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

/// Starts the same QEMU command line directly on a fresh overlay of the same
/// base image; returns ms from spawn to QMP `running`.
async fn start_directly(cloud: &Cloud, template: &[String], template_id: &str) -> f64 {
    let dir = cloud.data_path().join("baseline");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let instance_dir = cloud
        .data_path()
        .join("agent/instances")
        .join(template_id)
        .to_string_lossy()
        .into_owned();
    let uuid = uuid::Uuid::new_v4().to_string();
    // The same arguments; only the instance's own directory and uuid differ.
    let args: Vec<OsString> = template
        .iter()
        .map(|a| {
            let a = a.replace(&instance_dir, &dir.to_string_lossy());
            OsString::from(a.replace(template_id, &uuid))
        })
        .collect();
    let base = backing_file(template);
    let overlay = dir.join("disk.qcow2");
    let ok = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", &base])
        .arg(&overlay)
        .arg("1G")
        .status()
        .unwrap();
    assert!(ok.success());
    let started = Instant::now();
    let status = tokio::process::Command::new("qemu-system-x86_64")
        .args(&args)
        .status()
        .await
        .unwrap();
    assert!(status.success(), "baseline QEMU failed: {args:?}");
    let (qmp, _events) = QmpClient::connect(&dir.join("qmp.sock")).await.unwrap();
    let state = qmp.run_state().await.unwrap();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(state, "running");
    if let Some(p) = QemuProcess::from_pidfile(&dir.join("qemu.pid"), &uuid) {
        p.kill().await;
    }
    ms
}

/// The base image path from the template's `-blockdev`.
fn backing_file(template: &[String]) -> String {
    let i = template.iter().position(|a| a == "-blockdev").unwrap();
    let v: serde_json::Value = serde_json::from_str(&template[i + 1]).unwrap();
    v["backing"]["file"]["filename"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn report(nubis: &[f64], direct: &[f64]) {
    let mut n = nubis.to_vec();
    let mut d = direct.to_vec();
    n.sort_by(f64::total_cmp);
    d.sort_by(f64::total_cmp);
    let (nm, dm) = (percentile(&n, 0.5), percentile(&d, 0.5));
    println!(
        "create_to_running ({} runs each, TCG, tiny flavor)",
        n.len()
    );
    println!(
        "  nubis  POST /v1/servers -> QMP running: median {nm:7.1} ms  p90 {:7.1} ms  min {:7.1} ms",
        percentile(&n, 0.9),
        n[0]
    );
    println!(
        "  direct qemu-system-x86_64 -> QMP running: median {dm:7.1} ms  p90 {:7.1} ms  min {:7.1} ms",
        percentile(&d, 0.9),
        d[0]
    );
    println!(
        "  ratio (median nubis / median direct): {:.2}  (target <= 1.20)",
        nm / dm
    );
}
