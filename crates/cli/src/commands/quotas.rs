//! `nubis quota ...`: project quotas (limits beside what is in use).

use crate::client::{segment, ApiClient};
use crate::output::print_list;
use clap::Subcommand;
use nubis_api::quotas::{ProjectQuotas, UpdateQuotas};
use nubis_api::users::User;

/// `nubis quota` subcommands.
#[derive(Subcommand, Debug)]
pub enum QuotaCommand {
    /// Show a project's limits and what it holds now.
    Show {
        /// The project (id). Default: your own.
        #[arg(long, value_name = "ID")]
        project: Option<String>,
    },
    /// Set a project's limits (admin); limits not given stay as they are.
    Set {
        /// The project (id).
        project: String,
        /// Most servers.
        #[arg(long, value_name = "N")]
        servers: Option<u64>,
        /// Most virtual CPUs, over all servers.
        #[arg(long, value_name = "N")]
        vcpus: Option<u64>,
        /// Most memory in MiB, over all servers.
        #[arg(long, value_name = "MIB")]
        memory_mib: Option<u64>,
        /// Most disk in GiB, over all servers.
        #[arg(long, value_name = "GIB")]
        disk_gib: Option<u64>,
        /// Most floating IPs.
        #[arg(long, value_name = "N")]
        floating_ips: Option<u64>,
        /// Most networks.
        #[arg(long, value_name = "N")]
        networks: Option<u64>,
        /// Most images.
        #[arg(long, value_name = "N")]
        images: Option<u64>,
        /// Most GiB of image files, over all images.
        #[arg(long, value_name = "GIB")]
        image_gib: Option<u64>,
        /// Most security groups (besides `default`).
        #[arg(long, value_name = "N")]
        security_groups: Option<u64>,
        /// Most security group rules, over all groups.
        #[arg(long, value_name = "N")]
        security_group_rules: Option<u64>,
        /// Most server groups.
        #[arg(long, value_name = "N")]
        server_groups: Option<u64>,
    },
}

/// Runs one `nubis quota` subcommand.
pub async fn run(client: &ApiClient, cmd: QuotaCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        QuotaCommand::Show { project } => {
            let project = match project {
                Some(p) => p,
                None => {
                    let me: User = client.get("/v1/users/me").await?;
                    me.project.to_string()
                }
            };
            let quotas: ProjectQuotas = client.get(&path(&project)).await?;
            print(&quotas, json);
            Ok(())
        }
        QuotaCommand::Set {
            project,
            servers,
            vcpus,
            memory_mib,
            disk_gib,
            floating_ips,
            networks,
            images,
            image_gib,
            security_groups,
            security_group_rules,
            server_groups,
        } => {
            let update = UpdateQuotas {
                servers,
                vcpus,
                memory_mib,
                disk_gib,
                floating_ips,
                networks,
                images,
                image_gib,
                security_groups,
                security_group_rules,
                server_groups,
            };
            // Send only what was given, so the others stay.
            let body: serde_json::Map<String, serde_json::Value> = serde_json::to_value(update)?
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if body.is_empty() {
                anyhow::bail!("give at least one limit, e.g. --servers 5");
            }
            let quotas: ProjectQuotas = client.put(&path(&project), &body).await?;
            if !json {
                println!("Set the quotas of project {}.", quotas.project);
            }
            print(&quotas, json);
            Ok(())
        }
    }
}

fn path(project: &str) -> String {
    format!("/v1/projects/{}/quotas", segment(project))
}

/// One row per resource: limit, in use, and what is left.
fn print(quotas: &ProjectQuotas, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(quotas).unwrap_or_default()
        );
        return;
    }
    let rows = quotas.limits.pairs(&quotas.in_use);
    print_list(
        false,
        &rows,
        &["resource", "limit", "in use", "free"],
        |(name, limit, used)| {
            vec![
                name.to_string(),
                limit.to_string(),
                used.to_string(),
                limit.saturating_sub(*used).to_string(),
            ]
        },
    );
    println!(
        "Image files hold {} bytes ({} GiB rounded up).",
        quotas.image_bytes_in_use, quotas.in_use.image_gib
    );
}
