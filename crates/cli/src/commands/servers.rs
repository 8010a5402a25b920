//! `nubis server ...`: create, inspect, power actions, waits with a spinner.

use crate::client::ApiClient;
use crate::output::{opt, print_list, print_one};
use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use nubis_api::servers::{Server, ServerStatus};
use serde_json::{json, Value};
use std::time::Duration;

/// How long `--wait` waits before giving up.
const WAIT_LIMIT: Duration = Duration::from_secs(600);

pub async fn list(client: &ApiClient, json: bool) -> anyhow::Result<()> {
    let servers: Vec<Server> = client.get("/v1/servers").await?;
    print_list(
        json,
        &servers,
        &["name", "status", "vcpus", "memory_mib", "disk_gib", "id"],
        |s| {
            vec![
                s.name.clone(),
                s.status.to_string(),
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

pub async fn show(client: &ApiClient, reference: &str, json: bool) -> anyhow::Result<()> {
    let server = find(client, reference).await?;
    print_one(json, &server);
    Ok(())
}

/// What `nubis server create` asks for.
pub struct NewServer<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub flavor: Option<&'a str>,
    pub vcpus: Option<u64>,
    pub memory_mib: Option<u64>,
    pub disk_gib: Option<u64>,
}

pub async fn create(
    client: &ApiClient,
    new: NewServer<'_>,
    wait: bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut body = json!({"name": new.name, "image": new.image});
    let fields: [(&str, Value); 4] = [
        ("flavor", json!(new.flavor)),
        ("vcpus", json!(new.vcpus)),
        ("memory_mib", json!(new.memory_mib)),
        ("disk_gib", json!(new.disk_gib)),
    ];
    for (k, v) in fields {
        if !v.is_null() {
            body[k] = v;
        }
    }
    let server: Server = client.post("/v1/servers", &body).await?;
    let server = if wait {
        wait_for(client, &server, &[ServerStatus::Running]).await?
    } else {
        server
    };
    print_one(json, &server);
    Ok(())
}

/// A power action (`start`, `stop`, `reboot`), optionally waiting for its end.
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
    let target = match action {
        "stop" => ServerStatus::Stopped,
        _ => ServerStatus::Running,
    };
    if wait {
        wait_for(client, &server, &[target]).await?;
    }
    println!("{action}: '{}' requested.", server.name);
    Ok(())
}

pub async fn delete(client: &ApiClient, reference: &str, wait: bool) -> anyhow::Result<()> {
    let server = find(client, reference).await?;
    client.delete(&format!("/v1/servers/{}", server.id)).await?;
    if wait {
        let bar = spinner(&format!("deleting {}", server.name));
        let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
        loop {
            let resp = client
                .request(reqwest::Method::GET, &format!("/v1/servers/{}", server.id))
                .send()
                .await?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("server '{}' is still being deleted", server.name);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bar.finish_and_clear();
    }
    println!("Deleted '{}'.", server.name);
    Ok(())
}

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

fn spinner(msg: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"),
    );
    bar.set_message(msg.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Polls until the server reaches one of `targets`; an error status fails.
async fn wait_for(
    client: &ApiClient,
    server: &Server,
    targets: &[ServerStatus],
) -> anyhow::Result<Server> {
    let bar = spinner(&format!("{}: {}", server.name, server.status));
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    loop {
        let current: Server = client.get(&format!("/v1/servers/{}", server.id)).await?;
        bar.set_message(format!("{}: {}", current.name, current.status));
        if targets.contains(&current.status) {
            bar.finish_and_clear();
            return Ok(current);
        }
        if current.status == ServerStatus::Error {
            bar.finish_and_clear();
            bail!("server '{}' failed: {}", current.name, opt(&current.fault));
        }
        if tokio::time::Instant::now() > deadline {
            bar.finish_and_clear();
            bail!(
                "gave up waiting: server '{}' is {}",
                current.name,
                current.status
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
