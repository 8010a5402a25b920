//! `nubis network ...`: the project's private networks.

use crate::client::{segment, ApiClient};
use crate::output::{print_list, print_one};
use clap::Subcommand;
use nubis_api::networks::{Cidr, Network};
use serde_json::json;
use std::net::Ipv4Addr;

/// `nubis network` subcommands.
#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// List the project's networks (`default` is made on first use).
    List,
    /// Show a network (by name or id).
    Show {
        /// The network: name or id.
        network: String,
    },
    /// Create a network; its range must not overlap another network's.
    Create {
        /// The network's name.
        name: String,
        /// The subnet, from /16 to /29.
        #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
        cidr: Cidr,
        /// Default: the first host address of the subnet.
        #[arg(long, value_name = "IP")]
        gateway: Option<Ipv4Addr>,
        /// DNS zone of its servers' names. Default: the cloud's zone.
        #[arg(long, value_name = "ZONE")]
        dns_zone: Option<String>,
    },
    /// Delete a network (by name or id) that no server uses.
    Delete {
        /// The network: name or id.
        network: String,
    },
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    s.parse()
}

/// Runs one `nubis network` subcommand.
pub async fn run(client: &ApiClient, cmd: NetworkCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        NetworkCommand::List => list(client, json).await,
        NetworkCommand::Show { network } => {
            print_one(json, &find(client, &network).await?);
            Ok(())
        }
        NetworkCommand::Create {
            name,
            cidr,
            gateway,
            dns_zone,
        } => create(client, &name, cidr, gateway, dns_zone.as_deref(), json).await,
        NetworkCommand::Delete { network } => delete(client, &network).await,
    }
}

async fn list(client: &ApiClient, json: bool) -> anyhow::Result<()> {
    let networks: Vec<Network> = client.get("/v1/networks").await?;
    print_list(
        json,
        &networks,
        &["name", "cidr", "gateway", "domain", "id"],
        |n| {
            vec![
                n.name.clone(),
                n.cidr.to_string(),
                n.gateway.to_string(),
                // Where its servers' names are, not the bare zone.
                n.domain.clone(),
                n.id.to_string(),
            ]
        },
    );
    Ok(())
}

/// Looks a network up by name or id (the API accepts either).
pub async fn find(client: &ApiClient, reference: &str) -> anyhow::Result<Network> {
    client
        .get(&format!("/v1/networks/{}", segment(reference)))
        .await
}

async fn create(
    client: &ApiClient,
    name: &str,
    cidr: Cidr,
    gateway: Option<Ipv4Addr>,
    dns_zone: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let network: Network = client
        .post(
            "/v1/networks",
            &json!({"name": name, "cidr": cidr, "gateway": gateway, "dns_zone": dns_zone}),
        )
        .await?;
    if json {
        print_one(json, &network);
    } else {
        println!(
            "Created network '{}' {} (gateway {}, server names in {}, id {}).",
            network.name, network.cidr, network.gateway, network.domain, network.id
        );
    }
    Ok(())
}

async fn delete(client: &ApiClient, reference: &str) -> anyhow::Result<()> {
    // DELETE takes only the id.
    let network = find(client, reference).await?;
    client
        .delete(&format!("/v1/networks/{}", network.id))
        .await?;
    println!("Deleted network '{}'.", network.name);
    Ok(())
}
