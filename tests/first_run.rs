//! What a new user meets on the first run, end to end inside network
//! namespaces:
//!
//! - a cloud whose data dir sits under a private (0700) directory, like a
//!   clone in root's home, still gives its guests their address by DHCP
//!   (dnsmasq reads its files after dropping to `nobody`);
//! - when DHCP and DNS of a network fail on a host, its servers show it
//!   (status `error` with the fault) until it heals;
//! - `nubis server ssh` to a server re-created on the same fixed address
//!   works (host keys are kept per server id, not per address), while a
//!   changed key of the same server is still refused.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use support::cloud::Cloud;
use support::guest::ssh_stdout;
use support::netns::run_in_netns;

const BOOT: Duration = Duration::from_secs(240);

/// The lines the tiny guest prints once DHCP answered or gave up (20 s).
const LEASE: &str = "nubis-tiny: dhcp eth0";
const NO_LEASE: &str = "nubis-tiny: no dhcp lease on eth0 yet";

#[test]
fn guests_get_their_address_when_the_data_dir_is_in_a_private_directory() {
    run_in_netns("first-dhcp", || async {
        let home = tempfile::Builder::new()
            .prefix("nubis-home-")
            .tempdir()
            .expect("temp dir");
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod 0700");
        let mut cloud = Cloud::start_under(home.path(), &[]).await;
        // The data dir really is out of reach for other users.
        assert!(cloud.data_path().starts_with(home.path()));
        let mode = std::fs::metadata(home.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        cloud.register_and_login("alice", "alice-password").await;
        cloud.upload_tiny_image();
        let key = cloud.keypair("k1").await;
        // No config drive: the address can only come from DHCP, and keys
        // and name from the metadata service, which needs the address.
        let (id, server) = cloud
            .create_server(json!({"name": "web", "image": "tiny", "flavor": "tiny",
                                  "key_name": "k1"}))
            .await;
        let ip = server["addresses"][0]["ip"]
            .as_str()
            .expect("address")
            .to_owned();

        let console = support::wait_for("DHCP to answer or give up", BOOT, || async {
            let log = cloud.console_log(&id).await;
            (log.contains(LEASE) || log.contains(NO_LEASE)).then_some(log)
        })
        .await;
        let (_, b) = cloud
            .call(Method::GET, &format!("/v1/servers/{id}"), None)
            .await;
        assert!(
            console.contains(&format!("{LEASE} {ip}/")),
            "the guest got no lease for {ip} (server: {b})\n{console}\n{}",
            cloud.log()
        );
        cloud
            .wait_console(&id, "nubis-tiny: sshd ready", BOOT)
            .await;
        let server = cloud.wait_status(&id, "running", BOOT).await;
        assert_eq!(server["fault"], serde_json::Value::Null, "{server}");
        assert_eq!(ssh_stdout(&key, &ip, "hostname"), "web\n");
        // The CLI shows the domain the names are in, not the bare zone.
        assert_eq!(server["dns_name"], "web.alice.nubis.internal");
        let list = cloud.cli(&["network", "list"]);
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(list.contains("alice.nubis.internal"), "{list}");

        // dnsmasq's files live outside the data dir, unique to it, and go
        // with the network.
        let runtime =
            nubis_agent::network::runtime_dir(&cloud.data_path().join("agent").join("networks"));
        let network = server["addresses"][0]["network"].as_str().expect("network");
        let hosts = std::fs::read_to_string(runtime.join(network).join("dhcp-hosts"))
            .expect("dhcp-hosts in the runtime dir");
        let mac = server["addresses"][0]["mac"].as_str().expect("mac");
        assert!(hosts.contains(mac), "{hosts}");
        let (s, b) = cloud
            .call(Method::DELETE, &format!("/v1/servers/{id}"), None)
            .await;
        assert!(s.is_success(), "delete: {s} {b}");
        support::wait_for("the runtime dir to go with the network", BOOT, || async {
            (!runtime.exists()).then_some(())
        })
        .await;
    });
}

/// `nubis server ssh web -i KEY -- -o BatchMode=yes hostname`, as a user
/// whose home is `home` (the CLI keeps its files there).
fn server_ssh(cloud: &Cloud, home: &Path, key: &Path) -> Output {
    Command::new(support::cloud::nubis_bin())
        .args(["server", "ssh", "web", "-i"])
        .arg(key)
        .args([
            "--",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
            "hostname",
        ])
        .env("HOME", home)
        .env_remove("NUBIS_CONFIG_DIR")
        .env("NUBIS_URL", &cloud.url)
        .env("NUBIS_TOKEN", cloud.token.as_deref().expect("logged in"))
        .output()
        .expect("running nubis server ssh")
}

/// Root's real `~/.ssh/known_hosts` (ssh finds it through the password
/// database, not `HOME`), if any.
fn real_known_hosts() -> Option<String> {
    let me = nix::unistd::User::from_uid(nix::unistd::getuid()).ok()??;
    std::fs::read_to_string(me.dir.join(".ssh/known_hosts")).ok()
}

/// How often `needle` is on the server's console so far.
async fn console_count(cloud: &Cloud, id: &str, needle: &str) -> usize {
    cloud.console_log(id).await.matches(needle).count()
}

#[test]
fn server_ssh_trusts_a_new_server_on_an_old_address_but_not_a_changed_key() {
    run_in_netns("first-ssh", || async {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login("bob", "bob-password").await;
        cloud.upload_tiny_image();
        let key = cloud.keypair("k1").await;
        let (s, net) = cloud
            .call(
                Method::POST,
                "/v1/networks",
                Some(json!({"name": "lan", "cidr": "10.78.0.0/24"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{net}");
        let home = tempfile::tempdir().expect("home");
        let before = real_known_hosts();
        let known_hosts = home.path().join(".config/nubis/known_hosts");

        let mut ids = Vec::new();
        for round in 0..2 {
            let (id, _) = cloud
                .create_server(json!({
                    "name": "web", "image": "tiny", "flavor": "tiny", "key_name": "k1",
                    "config_drive": true,
                    "networks": [{"network": "lan", "fixed_ip": "10.78.0.50"}],
                }))
                .await;
            cloud.wait_status(&id, "running", BOOT).await;
            cloud
                .wait_console(&id, "nubis-tiny: sshd ready", BOOT)
                .await;
            let out = server_ssh(&cloud, home.path(), &key);
            assert!(
                out.status.success(),
                "round {round}: nubis server ssh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout), "web\n");
            let kept = std::fs::read_to_string(&known_hosts).expect("the CLI's known hosts");
            assert!(kept.contains(&id), "round {round}: {kept}");
            ids.push(id.clone());
            if round == 1 {
                break;
            }
            // Deleted, then made again on the same address with a new host
            // key (the tiny guest makes one at each boot).
            let (s, b) = cloud
                .call(Method::DELETE, &format!("/v1/servers/{id}"), None)
                .await;
            assert!(s.is_success(), "delete: {s} {b}");
            support::wait_for("the server to be gone", BOOT, || async {
                let (s, _) = cloud
                    .call(Method::GET, &format!("/v1/servers/{id}"), None)
                    .await;
                (s == StatusCode::NOT_FOUND).then_some(())
            })
            .await;
        }
        assert_ne!(ids[0], ids[1]);

        // The same server with a new key (a reboot makes one) is refused:
        // the known-hosts file still protects.
        let id = &ids[1];
        let (s, b) = cloud
            .call(Method::POST, &format!("/v1/servers/{id}/reboot"), None)
            .await;
        assert!(s.is_success(), "reboot: {s} {b}");
        support::wait_for("sshd after the reboot", BOOT, || async {
            (console_count(&cloud, id, "nubis-tiny: sshd ready").await >= 2).then_some(())
        })
        .await;
        let out = server_ssh(&cloud, home.path(), &key);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a changed key was accepted");
        assert!(
            stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
                || stderr.contains("Host key verification failed"),
            "{stderr}"
        );

        // The user's own files were not touched.
        assert!(!home.path().join(".ssh").exists());
        assert_eq!(real_known_hosts(), before);
    });
}

/// A server's status and fault, as the API shows them.
async fn status_and_fault(cloud: &Cloud, id: &str) -> (String, serde_json::Value) {
    let (s, b) = cloud
        .call(Method::GET, &format!("/v1/servers/{id}"), None)
        .await;
    assert!(s.is_success(), "GET server: {s} {b}");
    (
        b["status"].as_str().unwrap_or("").to_owned(),
        b["fault"].clone(),
    )
}

#[test]
fn a_network_whose_dhcp_fails_is_a_fault_on_its_servers_until_it_heals() {
    run_in_netns("first-fault", || async {
        let mut cloud = Cloud::start().await;
        cloud.register_and_login("carol", "carol-password").await;
        cloud.upload_tiny_image();
        let (id, _) = cloud
            .create_server(json!({"name": "web", "image": "tiny", "flavor": "tiny"}))
            .await;
        // Positive control: running, no fault.
        cloud.wait_status(&id, "running", BOOT).await;
        assert_eq!(
            status_and_fault(&cloud, &id).await.1,
            serde_json::Value::Null
        );

        // The agent cannot make dnsmasq's directory: a file is in the way.
        let runtime =
            nubis_agent::network::runtime_dir(&cloud.data_path().join("agent").join("networks"));
        std::fs::remove_dir_all(&runtime).expect("runtime dir");
        std::fs::write(&runtime, "in the way").expect("a file in its place");
        let fault = support::wait_for("the network's fault on the server", BOOT, || async {
            match status_and_fault(&cloud, &id).await {
                (status, fault) if status == "error" => Some(fault),
                _ => None,
            }
        })
        .await;
        let fault = fault.as_str().expect("a fault message").to_owned();
        assert!(fault.contains("DHCP and DNS of network"), "{fault}");
        // What went wrong, but not where: tenants never see host paths
        // (the agent's log has them).
        assert!(fault.contains("Not a directory"), "{fault}");
        assert!(fault.contains("<path>"), "{fault}");
        assert!(!fault.contains(&runtime.display().to_string()), "{fault}");

        // Out of the way again: the next pass heals it.
        std::fs::remove_file(&runtime).expect("remove the file");
        let fault = support::wait_for("the server to be running again", BOOT, || async {
            match status_and_fault(&cloud, &id).await {
                (status, fault) if status == "running" => Some(fault),
                _ => None,
            }
        })
        .await;
        assert_eq!(fault, serde_json::Value::Null);
    });
}
