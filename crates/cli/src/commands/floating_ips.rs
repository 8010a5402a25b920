//! `nubis floating-ip ...`: public addresses from an operator's pool, mapped
//! to a server's first address; `nubis floating-ip pool ...` for admins.

use crate::client::ApiClient;
use crate::output::{print_list, print_one, time_text};
use clap::Subcommand;
use nubis_api::floating_ips::{FloatingIp, FloatingIpPool};
use nubis_api::servers::Server;
use serde_json::json;
use std::net::Ipv4Addr;

/// `nubis floating-ip` subcommands.
#[derive(Subcommand, Debug)]
pub enum FloatingIpCommand {
    /// List the project's floating IPs and the servers they point at.
    List,
    /// Allocate a floating IP to the project.
    Create {
        /// The pool to take it from (default: the first with a free address).
        #[arg(long, value_name = "POOL")]
        pool: Option<String>,
    },
    /// Release a floating IP (by address or id) back to its pool.
    Delete {
        /// The floating IP: its address or id.
        floating_ip: String,
    },
    /// Point a floating IP at a server (its first address).
    Associate {
        /// The floating IP: its address or id.
        floating_ip: String,
        /// The server (name or id).
        server: String,
    },
    /// Detach a floating IP from its server; the project keeps it.
    Disassociate {
        /// The floating IP: its address or id.
        floating_ip: String,
    },
    /// Pools of floating IPs (creating one needs an admin).
    #[command(subcommand)]
    Pool(PoolCommand),
}

/// `nubis floating-ip pool` subcommands.
#[derive(Subcommand, Debug)]
pub enum PoolCommand {
    /// List the pools.
    List,
    /// Create a pool of the addresses from --first to --last (admin).
    Create {
        /// The pool's name.
        name: String,
        /// The first address of the range.
        #[arg(long, value_name = "IP")]
        first: Ipv4Addr,
        /// The last address of the range (inclusive).
        #[arg(long, value_name = "IP")]
        last: Ipv4Addr,
    },
}

/// Runs one `nubis floating-ip` subcommand.
pub async fn run(client: &ApiClient, cmd: FloatingIpCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        FloatingIpCommand::List => list(client, json).await,
        FloatingIpCommand::Create { pool } => {
            let ip: FloatingIp = client
                .post("/v1/floating-ips", &json!({ "pool": pool }))
                .await?;
            if json {
                print_one(json, &ip);
            } else {
                println!("Allocated floating IP {} from pool '{}'.", ip.ip, ip.pool);
            }
            Ok(())
        }
        FloatingIpCommand::Delete { floating_ip } => {
            let ip = find(client, &floating_ip).await?;
            client
                .delete(&format!("/v1/floating-ips/{}", ip.id))
                .await?;
            println!("Released floating IP {}.", ip.ip);
            Ok(())
        }
        FloatingIpCommand::Associate {
            floating_ip,
            server,
        } => {
            let ip = find(client, &floating_ip).await?;
            let ip: FloatingIp = client
                .patch(
                    &format!("/v1/floating-ips/{}", ip.id),
                    &json!({ "server": server }),
                )
                .await?;
            if json {
                print_one(json, &ip);
            } else {
                println!(
                    "{} now points at '{server}' ({}).",
                    ip.ip,
                    crate::output::opt(&ip.fixed_ip)
                );
            }
            Ok(())
        }
        FloatingIpCommand::Disassociate { floating_ip } => {
            let ip = find(client, &floating_ip).await?;
            let ip: FloatingIp = client
                .patch(
                    &format!("/v1/floating-ips/{}", ip.id),
                    &json!({ "server": null }),
                )
                .await?;
            if json {
                print_one(json, &ip);
            } else {
                println!("{} points at no server now.", ip.ip);
            }
            Ok(())
        }
        FloatingIpCommand::Pool(PoolCommand::List) => {
            let pools: Vec<FloatingIpPool> = client.get("/v1/floating-ip-pools").await?;
            print_list(json, &pools, &["name", "first", "last", "id"], |p| {
                vec![
                    p.name.clone(),
                    p.first.to_string(),
                    p.last.to_string(),
                    p.id.to_string(),
                ]
            });
            Ok(())
        }
        FloatingIpCommand::Pool(PoolCommand::Create { name, first, last }) => {
            let pool: FloatingIpPool = client
                .post(
                    "/v1/floating-ip-pools",
                    &json!({"name": name, "first": first, "last": last}),
                )
                .await?;
            if json {
                print_one(json, &pool);
            } else {
                println!(
                    "Created pool '{}' ({} to {}).",
                    pool.name, pool.first, pool.last
                );
            }
            Ok(())
        }
    }
}

async fn list(client: &ApiClient, json: bool) -> anyhow::Result<()> {
    let ips: Vec<FloatingIp> = client.get("/v1/floating-ips").await?;
    let servers: Vec<Server> = if json || ips.iter().all(|i| i.server.is_none()) {
        Vec::new()
    } else {
        client.get("/v1/servers").await?
    };
    let server_name = |ip: &FloatingIp| match ip.server {
        None => "-".to_owned(),
        Some(id) => servers
            .iter()
            .find(|s| s.id == id)
            .map_or_else(|| id.to_string(), |s| s.name.clone()),
    };
    print_list(
        json,
        &ips,
        &["ip", "pool", "server", "fixed ip", "created", "id"],
        |ip| {
            vec![
                ip.ip.to_string(),
                ip.pool.clone(),
                server_name(ip),
                crate::output::opt(&ip.fixed_ip),
                time_text(&ip.created_at),
                ip.id.to_string(),
            ]
        },
    );
    Ok(())
}

/// A floating IP of the project by its address or id.
async fn find(client: &ApiClient, reference: &str) -> anyhow::Result<FloatingIp> {
    let ips: Vec<FloatingIp> = client.get("/v1/floating-ips").await?;
    ips.into_iter()
        .find(|ip| ip.ip.to_string() == reference || ip.id.to_string() == reference)
        .ok_or_else(|| anyhow::anyhow!("the project has no floating IP '{reference}'"))
}
