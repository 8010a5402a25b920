//! Host failure end to end, on two hosts that share an instance store
//! (tests/support/multihost.rs, `--shared-instance-store`): host 0's agent
//! is killed while its server runs (the host is cut off: its QEMU keeps
//! running), the host goes down, `nubis host evacuate` places the server on
//! host 1 from the shared store; when host 0's agent comes back it stops
//! the QEMU it finds (fencing), never starts the server again, and keeps
//! its leftover until the controller releases it.
//!
//! The data marker is the tiny guest's boot counter (sector 0 of its disk,
//! printed as `boot-count: N` at each boot): `boot-count: 2` on host 1 is
//! the disk host 0's guest wrote.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use support::multihost::{self, host_name, Options};

const BOOT: Duration = Duration::from_secs(300);
/// The controller's heartbeat timeout is 60 s; generous beyond it.
const DOWN: Duration = Duration::from_secs(180);

/// Runs the CLI as the logged-in user; unlike `cloud.cli`, a failure is
/// returned, not a panic.
fn try_cli(cloud: &support::multihost::MultiHost, args: &[&str]) -> std::process::Output {
    std::process::Command::new(support::cloud::nubis_bin())
        .args(args)
        .env("NUBIS_URL", multihost::API)
        .env("NUBIS_CONFIG_DIR", cloud.cli_config())
        .output()
        .expect("running the nubis CLI")
}

/// QEMU processes of instance `id` whose network namespace is `ns`'s.
fn qemus_in(ns: &str, id: &str) -> usize {
    let Ok(ours) = std::fs::read_link(format!("/run/netns/{ns}")).or_else(|_| {
        // A named namespace is a bind mount, not a link: compare inodes.
        std::fs::metadata(format!("/run/netns/{ns}")).map(|m| {
            use std::os::unix::fs::MetadataExt;
            std::path::PathBuf::from(format!("net:[{}]", m.ino()))
        })
    }) else {
        return 0;
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let pid = e.file_name();
            let Some(pid) = pid.to_str().filter(|p| p.parse::<u32>().is_ok()) else {
                return false;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains("qemu-system")
                && cmdline.contains(id)
                && std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() == Some(ours.clone())
        })
        .count()
}

#[test]
fn a_down_hosts_server_restarts_elsewhere_and_is_fenced_on_return() {
    let store = tempfile::Builder::new()
        .prefix("nubis-shared-store-")
        .tempdir()
        .unwrap();
    let flag = vec![
        "--shared-instance-store".to_owned(),
        store.path().to_string_lossy().into_owned(),
    ];
    let options = Options {
        host_agent_args: vec![flag.clone(), flag],
        ..Options::hosts(2)
    };
    let store_path = store.path().to_owned();
    multihost::run("evac", options, |mut cloud| async move {
        cloud.create_admin_and_login("root", "root-password").await;
        cloud.upload_tiny_image();
        let (id, _) = cloud
            .create_server(json!({"name": "survivor", "image": "tiny", "flavor": "tiny"}))
            .await;
        cloud.wait_status(&id, "running", BOOT).await;
        let home = cloud.host_of(&id).await.expect("placed");
        let other = 1 - home;
        cloud.wait_console(&id, "boot-count: 1", BOOT).await;
        let ns_home = cloud.ns(home).to_owned();
        assert_eq!(
            qemus_in(&ns_home, &id),
            1,
            "positive control: its QEMU is seen"
        );

        // An up host is not evacuated.
        let refused = try_cli(&cloud, &["host", "evacuate", &host_name(home)]);
        assert!(
            !refused.status.success(),
            "evacuating an up host is refused"
        );
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("is up"),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );

        // The host is cut off: its agent dies, its guest keeps running.
        cloud.kill_agent(home);
        support::wait_for("the host to go down and be evacuated", DOWN, || async {
            let out = try_cli(&cloud, &["host", "evacuate", &host_name(home)]);
            out.status.success().then_some(())
        })
        .await;
        assert_eq!(
            cloud.host_of(&id).await,
            Some(other),
            "placed on the other host"
        );
        let (_, events) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}/events"), None)
            .await;
        assert!(
            events.to_string().contains("evacuated"),
            "an evacuated event: {events}"
        );

        // The returning agent stops the guest it finds (fencing), never
        // starts it again; the other host then boots it from the shared
        // store with its data.
        cloud.start_agent(home);
        cloud.wait_agent_registered(home).await;
        support::wait_for("host 0 to fence its QEMU", BOOT, || async {
            (qemus_in(&ns_home, &id) == 0).then_some(())
        })
        .await;
        // Until then its boots there fail on the disk's lock (QEMU's own
        // guard against two writers), shown as a transient `error`.
        support::wait_for("the server to run on the other host", BOOT, || async {
            let (_, server) = cloud
                .call(Method::GET, &format!("/v1/servers/{id}"), None)
                .await;
            (server["status"] == "running").then_some(())
        })
        .await;
        cloud.wait_console(&id, "boot-count: 2", BOOT).await;
        support::wait_for("a fenced event", BOOT, || async {
            let (_, events) = cloud
                .call(Method::GET, &format!("/v1/servers/{id}/events"), None)
                .await;
            events.to_string().contains("\"fenced\"").then_some(())
        })
        .await;
        // Released with the directory kept: host 1 uses it.
        support::wait_for("the leftover's release", BOOT, || async {
            (!cloud.hosts[home]
                .agent_dir()
                .join("claims")
                .join(&id)
                .exists())
            .then_some(())
        })
        .await;
        assert!(store_path
            .join("instances")
            .join(&id)
            .join("vm/disk.qcow2")
            .exists());
        // Some time later, still not started again on the returned host.
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert_eq!(qemus_in(&ns_home, &id), 0, "not started again");
        assert_eq!(
            qemus_in(cloud.ns(other), &id),
            1,
            "running on the other host"
        );
        let (s, _) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::OK);
    });
    drop(store);
}
