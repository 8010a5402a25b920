//! `nubis host ...` (admins): hosts' state, capacity and allocation; keep
//! new servers off a host or let them back; drain or evacuate one.

use crate::client::{segment, ApiClient};
use crate::output::{one_table, print_json, print_list, time_text};
use clap::Subcommand;
use nubis_api::hosts::HostSummary;
use serde_json::json;

/// `nubis host` subcommands.
#[derive(Subcommand, Debug)]
pub enum HostCommand {
    /// List hosts: state, whether they take new servers, capacity and what is placed.
    List,
    /// Show a host (by name or id).
    Show {
        /// The host: name or id.
        host: String,
    },
    /// Place no new servers on a host (those on it keep running).
    Disable {
        /// The host: name or id.
        host: String,
        /// Why, for other administrators.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Let new servers be placed on a host again.
    Enable {
        /// The host: name or id.
        host: String,
    },
    /// Restart the servers of a down host on other hosts: from a shared
    /// instance store with their data, else rebuilt from their image.
    Evacuate {
        /// The host: name or id.
        host: String,
    },
    /// Empty an up host: disable it and move every server off it (running
    /// ones live, stopped ones cold) to hosts the scheduler picks.
    Drain {
        /// The host: name or id.
        host: String,
        /// Why, for other administrators (default: "draining").
        #[arg(long)]
        reason: Option<String>,
        /// Follow the moves until no server is left on the host; fail if a
        /// move fails or a server stays.
        #[arg(long)]
        wait: bool,
    },
}

/// `used/total` of one resource.
fn of(used: u64, total: u64) -> String {
    format!("{used}/{total}")
}

/// Runs one `nubis host` subcommand.
pub async fn run(client: &ApiClient, cmd: HostCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        HostCommand::List => {
            let hosts: Vec<HostSummary> = client.get("/v1/hosts").await?;
            print_list(
                json,
                &hosts,
                &[
                    "name",
                    "state",
                    "enabled",
                    "vcpus",
                    "memory_mib",
                    "disk_gib",
                    "instances",
                    "accel",
                    "cpu_model",
                    "last_seen",
                    "id",
                ],
                |h| {
                    vec![
                        h.name.clone(),
                        h.state.as_str().to_owned(),
                        if h.enabled { "yes" } else { "no" }.to_owned(),
                        of(h.allocated.vcpus, h.vcpus),
                        of(h.allocated.memory_mib, h.memory_mib),
                        of(h.allocated.disk_gib, h.disk_gib),
                        h.instances.to_string(),
                        h.accel.as_str().to_owned(),
                        h.cpu_model.clone(),
                        time_text(&h.last_seen),
                        h.id.to_string(),
                    ]
                },
            );
        }
        HostCommand::Show { host } => {
            let h = find(client, &host).await?;
            print_host(json, &h);
        }
        HostCommand::Disable { host, reason } => {
            let h = find(client, &host).await?;
            let h: HostSummary = client
                .post(
                    &format!("/v1/hosts/{}/disable", h.id),
                    &json!({ "reason": reason }),
                )
                .await?;
            if json {
                print_json(&h);
            } else {
                println!("Disabled host '{}': no new servers go there.", h.name);
            }
        }
        HostCommand::Enable { host } => {
            let h = find(client, &host).await?;
            let h: HostSummary = client
                .post(&format!("/v1/hosts/{}/enable", h.id), &json!({}))
                .await?;
            if json {
                print_json(&h);
            } else {
                println!("Enabled host '{}'.", h.name);
            }
        }
        HostCommand::Evacuate { host } => {
            let h = find(client, &host).await?;
            super::moves::evacuate(client, &h, json).await?;
        }
        HostCommand::Drain { host, reason, wait } => {
            let h = find(client, &host).await?;
            super::drain::drain(client, &h, reason, wait, json).await?;
        }
    }
    Ok(())
}

/// A host by id, or by name from the list.
async fn find(client: &ApiClient, reference: &str) -> anyhow::Result<HostSummary> {
    if reference.parse::<nubis_api::HostId>().is_ok() {
        return client
            .get(&format!("/v1/hosts/{}", segment(reference)))
            .await;
    }
    let hosts: Vec<HostSummary> = client.get("/v1/hosts").await?;
    hosts
        .into_iter()
        .find(|h| h.name == reference)
        .ok_or_else(|| anyhow::anyhow!("no host named '{reference}'"))
}

fn print_host(json: bool, h: &HostSummary) {
    if json {
        print_json(h);
        return;
    }
    println!(
        "{}",
        one_table(h, |field| match field {
            "allocated" => Some(format!(
                "{} vCPUs, {} MiB, {} GiB",
                h.allocated.vcpus, h.allocated.memory_mib, h.allocated.disk_gib
            )),
            "last_seen" => Some(time_text(&h.last_seen)),
            _ => None,
        })
    );
}
