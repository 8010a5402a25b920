//! `nubis server ...`: create, inspect, power actions (waits are in
//! `wait.rs`, the readable `show` in `server_view.rs`, `nubis server ssh` in
//! `ssh.rs`).

use super::server_view::{self, ServerNames};
use super::wait::{wait_for, FinalLine, Goal};
use crate::client::ApiClient;
use crate::output::{print_list, time_text};
use anyhow::{bail, Context};
use base64::Engine;
use nubis_api::networks::ServerAddress;
use nubis_api::servers::{NetworkRequest, Server, ServerStatus, MAX_USER_DATA};
use serde_json::{json, Value};
use std::path::Path;

/// `nubis server list`: one row per server, with its first address.
pub async fn list(client: &ApiClient, json: bool) -> anyhow::Result<()> {
    let servers: Vec<Server> = client.get("/v1/servers").await?;
    print_list(
        json,
        &servers,
        &[
            "name",
            "status",
            "ip",
            "vcpus",
            "memory_mib",
            "disk_gib",
            "id",
        ],
        |s| {
            vec![
                s.name.clone(),
                s.status.to_string(),
                s.addresses
                    .first()
                    .map_or_else(|| "-".into(), |a| a.ip.to_string()),
                s.vcpus.to_string(),
                s.memory_mib.to_string(),
                s.disk_gib.to_string(),
                s.id.to_string(),
            ]
        },
    );
    Ok(())
}

/// Resolves a name or id to a server of the caller's project.
pub async fn find(client: &ApiClient, reference: &str) -> anyhow::Result<Server> {
    if reference.parse::<nubis_api::ServerId>().is_ok() {
        return client.get(&format!("/v1/servers/{reference}")).await;
    }
    let servers: Vec<Server> = client.get("/v1/servers").await?;
    servers
        .into_iter()
        .find(|s| s.name == reference)
        .ok_or_else(|| anyhow::anyhow!("no server named '{reference}'"))
}

/// `nubis server show`.
pub async fn show(client: &ApiClient, reference: &str, json: bool) -> anyhow::Result<()> {
    let server = find(client, reference).await?;
    print_server(client, json, &server).await;
    Ok(())
}

/// Prints a server as a readable table (names, not ids; text, not JSON)
/// or as JSON.
pub async fn print_server(client: &ApiClient, json: bool, server: &Server) {
    let names = if json {
        ServerNames::default()
    } else {
        ServerNames::fetch(client, server).await
    };
    server_view::print_server(json, server, &names);
}

/// `10.64.0.2 (default, 52:54:00:12:34:56)`, one address a line.
pub fn addresses_text(addresses: &[ServerAddress]) -> String {
    if addresses.is_empty() {
        return "-".into();
    }
    addresses
        .iter()
        .map(|a| format!("{} ({}, {})", a.ip, a.network_name, a.mac))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What `nubis server create` asks for.
pub struct NewServer<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub flavor: Option<&'a str>,
    pub vcpus: Option<u64>,
    pub memory_mib: Option<u64>,
    pub disk_gib: Option<u64>,
    /// NICs; empty means the API's default (one on `default`).
    pub networks: &'a [NetworkRequest],
    pub key_name: Option<&'a str>,
    /// A file whose contents become the guest's user data.
    pub user_data_file: Option<&'a Path>,
    pub config_drive: bool,
    pub terms: CreateTerms,
    /// A server group (name or id) to join (`scheduler_hints.group`).
    pub group: Option<&'a str>,
}

/// The rental terms `nubis server create` may set.
#[derive(Default)]
pub struct CreateTerms {
    pub inbound_mbit: Option<u32>,
    pub outbound_mbit: Option<u32>,
    pub traffic_quota_gib: Option<f64>,
    pub quota_policy: crate::commands::terms::PolicyArg,
    pub lease_seconds: Option<i64>,
}

/// `nubis server create`, optionally waiting until the server runs.
pub async fn create(
    client: &ApiClient,
    new: NewServer<'_>,
    wait: bool,
    json: bool,
) -> anyhow::Result<()> {
    let user_data = new.user_data_file.map(read_user_data).transpose()?;
    let body = create_body(&new, user_data);
    let server: Server = client.post("/v1/servers", &body).await?;
    let server = if wait {
        wait_for(
            client,
            &server,
            Goal::Status(&[ServerStatus::Running]),
            FinalLine::Stderr,
        )
        .await?
        .unwrap_or(server)
    } else {
        server
    };
    print_server(client, json, &server).await;
    Ok(())
}

/// Reads a user data file and base64-encodes it, as the API wants it.
fn read_user_data(path: &Path) -> anyhow::Result<String> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading user data {}", path.display()))?;
    if bytes.len() > MAX_USER_DATA {
        bail!(
            "user data {} is {} bytes; at most {MAX_USER_DATA} are accepted",
            path.display(),
            bytes.len()
        );
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The `POST /v1/servers` body: only the fields that were given.
fn create_body(new: &NewServer<'_>, user_data: Option<String>) -> Value {
    let mut body = json!({"name": new.name, "image": new.image});
    let networks = (!new.networks.is_empty()).then_some(new.networks);
    let t = &new.terms;
    let bandwidth = (t.inbound_mbit.is_some() || t.outbound_mbit.is_some())
        .then(|| crate::commands::terms::bandwidth_json(t.inbound_mbit, t.outbound_mbit, None));
    let quota = t.traffic_quota_gib.map(|gib| {
        json!({"monthly_gib": gib, "policy": match t.quota_policy {
            crate::commands::terms::PolicyArg::Throttle => "throttle",
            crate::commands::terms::PolicyArg::Suspend => "suspend",
        }})
    });
    let lease = t.lease_seconds.map(|s| json!({ "duration_seconds": s }));
    let hints = new.group.map(|g| json!({ "group": g }));
    let fields: [(&str, Value); 12] = [
        ("flavor", json!(new.flavor)),
        ("vcpus", json!(new.vcpus)),
        ("memory_mib", json!(new.memory_mib)),
        ("disk_gib", json!(new.disk_gib)),
        ("networks", json!(networks)),
        ("key_name", json!(new.key_name)),
        ("user_data", json!(user_data)),
        ("config_drive", json!(new.config_drive.then_some(true))),
        ("bandwidth", json!(bandwidth)),
        ("traffic_quota", json!(quota)),
        ("lease", json!(lease)),
        ("scheduler_hints", json!(hints)),
    ];
    for (k, v) in fields {
        if !v.is_null() {
            body[k] = v;
        }
    }
    body
}

/// A power action (`start`, `stop`, `reboot`), optionally waiting for its
/// end (which prints the final state).
pub async fn action(
    client: &ApiClient,
    reference: &str,
    action: &str,
    wait: bool,
) -> anyhow::Result<()> {
    let server = find(client, reference).await?;
    let server: Server = client
        .action(&format!("/v1/servers/{}/{action}", server.id))
        .await?;
    if wait {
        let target: &'static [ServerStatus] = match action {
            "stop" => &[ServerStatus::Stopped],
            _ => &[ServerStatus::Running],
        };
        wait_for(client, &server, Goal::Status(target), FinalLine::Stdout).await?;
    } else {
        println!(
            "{}: {action} requested (now {}).",
            server.name, server.status
        );
    }
    Ok(())
}

/// `nubis server eject`: the ISO leaves the CD-ROM drive.
pub async fn eject(client: &ApiClient, reference: &str) -> anyhow::Result<()> {
    let server = find(client, reference).await?;
    let server: Server = client
        .action(&format!("/v1/servers/{}/eject", server.id))
        .await?;
    println!(
        "eject: the ISO is out of '{}'; it boots from its disk from its next start or reboot.",
        server.name
    );
    Ok(())
}

/// `nubis server delete`, optionally waiting until the server is gone.
pub async fn delete(client: &ApiClient, reference: &str, wait: bool) -> anyhow::Result<()> {
    let server = find(client, reference).await?;
    client.delete(&format!("/v1/servers/{}", server.id)).await?;
    if wait {
        wait_for(client, &server, Goal::Gone, FinalLine::Stdout).await?;
    } else {
        println!("{}: delete requested.", server.name);
    }
    Ok(())
}

/// `nubis server console`: a single-use link to the graphical console.
pub async fn console(client: &ApiClient, reference: &str, json: bool) -> anyhow::Result<()> {
    let server = find(client, reference).await?;
    let access: nubis_api::console::ConsoleAccess = client
        .action(&format!("/v1/servers/{}/console", server.id))
        .await?;
    if json {
        crate::output::print_json(&access);
    } else {
        println!("{}", access.url);
        eprintln!(
            "Open it in a browser before {} (it works once).",
            time_text(&access.expires_at)
        );
    }
    Ok(())
}

/// `nubis server console-log`: the serial console output.
pub async fn console_log(client: &ApiClient, reference: &str) -> anyhow::Result<()> {
    let server = find(client, reference).await?;
    let resp = client
        .send(client.request(
            reqwest::Method::GET,
            &format!("/v1/servers/{}/console-log", server.id),
        ))
        .await?;
    print!("{}", resp.text().await?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn new_server<'a>(networks: &'a [NetworkRequest]) -> NewServer<'a> {
        NewServer {
            name: "web",
            image: "tiny",
            flavor: Some("tiny"),
            vcpus: None,
            memory_mib: None,
            disk_gib: None,
            networks,
            key_name: None,
            user_data_file: None,
            config_drive: false,
            terms: CreateTerms::default(),
            group: None,
        }
    }

    #[test]
    fn create_body_has_only_given_fields() {
        let body = create_body(&new_server(&[]), None);
        assert_eq!(
            body,
            json!({"name": "web", "image": "tiny", "flavor": "tiny"})
        );
        let nics = [
            NetworkRequest {
                network: "lan".into(),
                fixed_ip: Some(Ipv4Addr::new(10, 0, 0, 5)),
            },
            NetworkRequest {
                network: "default".into(),
                fixed_ip: None,
            },
        ];
        let mut new = new_server(&nics);
        new.key_name = Some("k");
        new.config_drive = true;
        let body = create_body(&new, Some("aGk=".into()));
        assert_eq!(
            body["networks"],
            json!([{"network": "lan", "fixed_ip": "10.0.0.5"},
                   {"network": "default", "fixed_ip": null}])
        );
        assert_eq!(body["key_name"], "k");
        assert_eq!(body["user_data"], "aGk=");
        assert_eq!(body["config_drive"], true);
    }

    #[test]
    fn user_data_is_base64_and_limited() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cloud-config");
        std::fs::write(&path, "#cloud-config\n").unwrap();
        assert_eq!(read_user_data(&path).unwrap(), "I2Nsb3VkLWNvbmZpZwo=");
        std::fs::write(&path, vec![b'x'; MAX_USER_DATA + 1]).unwrap();
        let err = read_user_data(&path).unwrap_err().to_string();
        assert!(err.contains("at most"), "{err}");
        let err = read_user_data(&dir.path().join("missing")).unwrap_err();
        assert!(format!("{err:#}").contains("reading user data"), "{err:#}");
    }

    #[test]
    fn addresses_one_per_line() {
        let a = |ip: [u8; 4], net: &str, mac: &str| ServerAddress {
            network: nubis_api::NetworkId::new(),
            network_name: net.into(),
            ip: Ipv4Addr::from(ip),
            mac: mac.into(),
        };
        assert_eq!(addresses_text(&[]), "-");
        assert_eq!(
            addresses_text(&[
                a([10, 64, 0, 2], "default", "52:54:00:00:00:01"),
                a([10, 0, 0, 5], "lan", "52:54:00:00:00:02"),
            ]),
            "10.64.0.2 (default, 52:54:00:00:00:01)\n10.0.0.5 (lan, 52:54:00:00:00:02)"
        );
    }
}
