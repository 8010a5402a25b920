//! `nubis server-group ...`: where a group's servers run relative to each
//! other (affinity: one host; anti-affinity: all different hosts).

use crate::client::{segment, ApiClient};
use crate::output::{one_table, print_json, print_list, time_text};
use clap::{Subcommand, ValueEnum};
use nubis_api::server_groups::ServerGroup;
use serde_json::json;

/// `nubis server-group` subcommands.
#[derive(Subcommand, Debug)]
pub enum ServerGroupCommand {
    /// List the project's server groups.
    List,
    /// Show a server group (by name or id) with its members.
    Show {
        /// The group: name or id.
        group: String,
    },
    /// Create a server group; servers join it with `server create --group`.
    Create {
        /// The group's name.
        name: String,
        /// affinity (one host) or anti-affinity (all different hosts).
        #[arg(long, value_enum)]
        policy: PolicyArg,
    },
    /// Delete a server group that has no members.
    Delete {
        /// The group: name or id.
        group: String,
    },
}

/// A group's policy.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PolicyArg {
    Affinity,
    AntiAffinity,
}

/// Runs one `nubis server-group` subcommand.
pub async fn run(client: &ApiClient, cmd: ServerGroupCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        ServerGroupCommand::List => {
            let groups: Vec<ServerGroup> = client.get("/v1/server-groups").await?;
            print_list(json, &groups, &["name", "policy", "members", "id"], |g| {
                vec![
                    g.name.clone(),
                    g.policy.as_str().to_owned(),
                    g.members.len().to_string(),
                    g.id.to_string(),
                ]
            });
        }
        ServerGroupCommand::Show { group } => {
            let g: ServerGroup = find(client, &group).await?;
            if json {
                print_json(&g);
            } else {
                println!(
                    "{}",
                    one_table(&g, |field| match field {
                        "members" => Some(
                            g.members
                                .iter()
                                .map(|m| m.to_string())
                                .collect::<Vec<_>>()
                                .join("\n")
                        ),
                        "created_at" => Some(time_text(&g.created_at)),
                        _ => None,
                    })
                );
            }
        }
        ServerGroupCommand::Create { name, policy } => {
            let policy = match policy {
                PolicyArg::Affinity => "affinity",
                PolicyArg::AntiAffinity => "anti-affinity",
            };
            let g: ServerGroup = client
                .post(
                    "/v1/server-groups",
                    &json!({"name": name, "policy": policy}),
                )
                .await?;
            if json {
                print_json(&g);
            } else {
                println!("Created server group '{}' ({policy}, {}).", g.name, g.id);
            }
        }
        ServerGroupCommand::Delete { group } => {
            let g = find(client, &group).await?;
            client
                .delete(&format!("/v1/server-groups/{}", g.id))
                .await?;
            println!("Deleted server group '{}'.", g.name);
        }
    }
    Ok(())
}

/// A group of the project by name or id (the API accepts either).
async fn find(client: &ApiClient, reference: &str) -> anyhow::Result<ServerGroup> {
    client
        .get(&format!("/v1/server-groups/{}", segment(reference)))
        .await
}
