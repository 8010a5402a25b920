//! `nubis security-group ...`: firewall rules for groups of servers.

use crate::client::{segment, ApiClient};
use crate::output::{one_table, print_json, print_list, time_text};
use clap::{Subcommand, ValueEnum};
use nubis_api::security_groups::{Prefix, Rule, SecurityGroup};
use serde_json::json;

/// `nubis security-group` subcommands.
#[derive(Subcommand, Debug)]
pub enum SecurityGroupCommand {
    /// List the project's security groups.
    List,
    /// Show a security group (by name or id) with its rules.
    Show {
        /// The group: name or id.
        group: String,
    },
    /// Create a security group (it starts with no rules).
    Create {
        /// The group's name.
        name: String,
        /// What the group is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a security group (by name or id) that no server uses.
    Delete {
        /// The group: name or id.
        group: String,
    },
    /// Rules of a security group.
    #[command(subcommand)]
    Rule(RuleCommand),
}

/// `nubis security-group rule` subcommands.
#[derive(Subcommand, Debug)]
pub enum RuleCommand {
    /// Allow traffic: add a rule to a group (servers get it at once).
    Add {
        /// The group: name or id.
        group: String,
        /// Traffic towards the servers (ingress) or from them (egress).
        #[arg(long, value_enum, default_value_t = DirectionArg::Ingress)]
        direction: DirectionArg,
        /// tcp, udp, icmp or any.
        #[arg(long, value_enum)]
        protocol: ProtocolArg,
        /// A port or a range (22, 8000-8080); tcp and udp only.
        #[arg(long, value_name = "PORT[-PORT]", value_parser = parse_ports)]
        port: Option<(u16, u16)>,
        /// Only from (or to) these addresses, e.g. 10.0.0.0/8.
        #[arg(long, value_name = "CIDR", value_parser = parse_prefix)]
        remote_cidr: Option<Prefix>,
        /// Only from (or to) the servers of this group (name or id).
        #[arg(long, value_name = "GROUP", conflicts_with = "remote_cidr")]
        remote_group: Option<String>,
    },
    /// Delete a rule of a group (servers lose it at once).
    Delete {
        /// The group: name or id.
        group: String,
        /// The rule's id (see `nubis security-group show`).
        rule: String,
    },
}

/// A rule's direction.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DirectionArg {
    Ingress,
    Egress,
}

/// A rule's protocol.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProtocolArg {
    Tcp,
    Udp,
    Icmp,
    Any,
}

/// `22` or `8000-8080`.
fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| -> Result<u16, String> {
        match p.trim().parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("'{p}' is not a port (1 to 65535)")),
        }
    };
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (port(lo)?, port(hi)?),
        None => (port(s)?, port(s)?),
    };
    if lo > hi {
        return Err(format!("the range {lo}-{hi} runs backwards"));
    }
    Ok((lo, hi))
}

fn parse_prefix(s: &str) -> Result<Prefix, String> {
    s.parse()
}

/// Runs one `nubis security-group` subcommand.
pub async fn run(client: &ApiClient, cmd: SecurityGroupCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        SecurityGroupCommand::List => {
            let groups: Vec<SecurityGroup> = client.get("/v1/security-groups").await?;
            print_list(
                json,
                &groups,
                &["name", "description", "rules", "id"],
                |g| {
                    vec![
                        g.name.clone(),
                        g.description.clone(),
                        g.rules.len().to_string(),
                        g.id.to_string(),
                    ]
                },
            );
        }
        SecurityGroupCommand::Show { group } => {
            let g = find(client, &group).await?;
            print_group(client, json, &g).await;
        }
        SecurityGroupCommand::Create { name, description } => {
            let g: SecurityGroup = client
                .post(
                    "/v1/security-groups",
                    &json!({"name": name, "description": description}),
                )
                .await?;
            if json {
                print_json(&g);
            } else {
                println!("Created security group '{}' ({}).", g.name, g.id);
            }
        }
        SecurityGroupCommand::Delete { group } => {
            let g = find(client, &group).await?;
            client
                .delete(&format!("/v1/security-groups/{}", g.id))
                .await?;
            println!("Deleted security group '{}'.", g.name);
        }
        SecurityGroupCommand::Rule(RuleCommand::Add {
            group,
            direction,
            protocol,
            port,
            remote_cidr,
            remote_group,
        }) => {
            let g = find(client, &group).await?;
            let body = json!({
                "direction": match direction { DirectionArg::Ingress => "ingress", DirectionArg::Egress => "egress" },
                "protocol": match protocol {
                    ProtocolArg::Tcp => "tcp", ProtocolArg::Udp => "udp",
                    ProtocolArg::Icmp => "icmp", ProtocolArg::Any => "any",
                },
                "port_min": port.map(|p| p.0),
                "port_max": port.map(|p| p.1),
                "remote_cidr": remote_cidr,
                "remote_group": remote_group,
            });
            let rule: Rule = client
                .post(&format!("/v1/security-groups/{}/rules", g.id), &body)
                .await?;
            if json {
                print_json(&rule);
            } else {
                println!(
                    "Added rule {} to '{}': {}.",
                    rule.id,
                    g.name,
                    rule_text(&rule, &[])
                );
            }
        }
        SecurityGroupCommand::Rule(RuleCommand::Delete { group, rule }) => {
            let g = find(client, &group).await?;
            client
                .delete(&format!(
                    "/v1/security-groups/{}/rules/{}",
                    g.id,
                    segment(&rule)
                ))
                .await?;
            println!("Deleted rule {rule} of '{}'.", g.name);
        }
    }
    Ok(())
}

/// A group of the project by name or id (the API accepts either).
async fn find(client: &ApiClient, reference: &str) -> anyhow::Result<SecurityGroup> {
    client
        .get(&format!("/v1/security-groups/{}", segment(reference)))
        .await
}

/// The group's fields, then one row per rule.
async fn print_group(client: &ApiClient, json: bool, g: &SecurityGroup) {
    if json {
        print_json(g);
        return;
    }
    let groups: Vec<SecurityGroup> = if g.rules.iter().any(|r| r.remote_group.is_some()) {
        client.get("/v1/security-groups").await.unwrap_or_default()
    } else {
        Vec::new()
    };
    println!(
        "{}",
        one_table(g, |field| match field {
            "rules" => Some(g.rules.len().to_string()),
            "created_at" => Some(time_text(&g.created_at)),
            _ => None,
        })
    );
    print_list(false, &g.rules, &["rule", "id"], |r| {
        vec![rule_text(r, &groups), r.id.to_string()]
    });
}

/// `ingress tcp 22 from 10.0.0.0/8`, `egress any to anywhere`.
pub fn rule_text(r: &Rule, groups: &[SecurityGroup]) -> String {
    use nubis_api::security_groups::Direction;
    let (dir, word) = match r.direction {
        Direction::Ingress => ("ingress", "from"),
        Direction::Egress => ("egress", "to"),
    };
    let ports = match (r.port_min, r.port_max) {
        (Some(lo), Some(hi)) if lo != hi => format!(" {lo}-{hi}"),
        (Some(lo), _) => format!(" {lo}"),
        _ => String::new(),
    };
    let remote = match (&r.remote_cidr, r.remote_group) {
        (Some(c), _) => c.to_string(),
        (None, Some(id)) => {
            let name = groups
                .iter()
                .find(|g| g.id == id)
                .map_or_else(|| id.to_string(), |g| g.name.clone());
            format!("group {name}")
        }
        (None, None) => "anywhere".into(),
    };
    format!("{dir} {}{ports} {word} {remote}", r.protocol.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nubis_api::security_groups::{Direction, Protocol};

    #[test]
    fn ports_parse_as_one_or_a_range() {
        assert_eq!(parse_ports("22"), Ok((22, 22)));
        assert_eq!(parse_ports("8000-8080"), Ok((8000, 8080)));
        assert!(parse_ports("0").is_err());
        assert!(parse_ports("80-22").is_err());
        assert!(parse_ports("http").is_err());
    }

    #[test]
    fn rules_read_as_text() {
        let rule = |direction, protocol, ports: Option<(u16, u16)>, cidr: Option<&str>| Rule {
            id: Default::default(),
            direction,
            protocol,
            port_min: ports.map(|p| p.0),
            port_max: ports.map(|p| p.1),
            remote_cidr: cidr.map(|c| c.parse().unwrap()),
            remote_group: None,
        };
        assert_eq!(
            rule_text(
                &rule(
                    Direction::Ingress,
                    Protocol::Tcp,
                    Some((22, 22)),
                    Some("10.0.0.0/8")
                ),
                &[]
            ),
            "ingress tcp 22 from 10.0.0.0/8"
        );
        assert_eq!(
            rule_text(&rule(Direction::Egress, Protocol::Any, None, None), &[]),
            "egress any to anywhere"
        );
        assert_eq!(
            rule_text(
                &rule(Direction::Ingress, Protocol::Udp, Some((1000, 2000)), None),
                &[]
            ),
            "ingress udp 1000-2000 from anywhere"
        );
    }
}
