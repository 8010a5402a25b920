//! `nubis server limit|quota|lease|usage|events`: a server's rental terms
//! and what it used.

use crate::client::ApiClient;
use crate::commands::servers::{find, print_server};
use crate::output::print_list;
use anyhow::bail;
use clap::{Subcommand, ValueEnum};
use nubis_api::events::ServerEvent;
use nubis_api::servers::Server;
use nubis_api::traffic::{ProjectUsage, ServerUsage, UsagePoint};
use serde_json::{json, Value};

/// The rental-term subcommands of `nubis server`.
#[derive(Subcommand, Debug)]
pub enum TermsCommand {
    /// Set a server's bandwidth limits (applied at once, also while running).
    Limit {
        /// The server: name or id.
        server: String,
        /// Towards the server, Mbit/s.
        #[arg(long, value_name = "MBIT", value_parser = crate::args::mbit)]
        inbound_mbit: Option<u32>,
        /// From the server, Mbit/s.
        #[arg(long, value_name = "MBIT", value_parser = crate::args::mbit)]
        outbound_mbit: Option<u32>,
        /// Burst above the average, KiB (both directions).
        #[arg(long, value_name = "KIB")]
        burst_kib: Option<u32>,
    },
    /// Set or remove a server's monthly traffic quota.
    Quota {
        /// The server: name or id.
        server: String,
        /// GiB per month, inbound + outbound (fractions allowed).
        #[arg(long, value_name = "GIB", required_unless_present = "remove", value_parser = crate::args::quota_gib)]
        monthly_gib: Option<f64>,
        /// What happens when it is used up.
        #[arg(long, value_enum, default_value_t = PolicyArg::Throttle)]
        policy: PolicyArg,
        /// Remove the quota instead.
        #[arg(long, conflicts_with = "monthly_gib")]
        remove: bool,
    },
    /// Renew a server's lease (e.g. `--for 30d`), or exempt it (admin).
    Lease {
        /// The server: name or id.
        server: String,
        /// New term from now: seconds, or with a unit: 90m, 12h, 30d.
        #[arg(long = "for", value_name = "DURATION", value_parser = crate::args::lease_term)]
        term: Option<i64>,
        /// New expiry, RFC 3339 (e.g. 2027-01-01T00:00:00Z).
        #[arg(long, value_name = "TIME", conflicts_with = "term")]
        expires_at: Option<String>,
        /// Exempt from lease enforcement (admin); `--exempt false` lifts it.
        #[arg(long, value_name = "BOOL")]
        exempt: Option<bool>,
    },
    /// Traffic of a server, or of the whole project without a server.
    Usage {
        /// The server (name or id); without it, the whole project.
        server: Option<String>,
        /// Billing month, YYYY-MM; default this month.
        #[arg(long)]
        period: Option<String>,
    },
    /// What happened to a server (quota, lease), or to all of the project's.
    Events {
        /// The server (name or id); without it, all of the project's.
        server: Option<String>,
    },
}

/// A traffic-quota policy.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum PolicyArg {
    /// Bandwidth drops to the operator's throttle rate.
    #[default]
    Throttle,
    /// Networking is cut; the server keeps running.
    Suspend,
}

/// Seconds from `3600`, `90m`, `12h` or `30d`.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let (number, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: i64 = number
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 3600, 90m, 12h or 30d"))?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("unknown unit in '{s}': use s, m, h or d")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("'{s}' is too long"))
}

/// The `bandwidth` object for the given limits (absent = unlimited).
pub fn bandwidth_json(inbound: Option<u32>, outbound: Option<u32>, burst: Option<u32>) -> Value {
    let one = |mbit: Option<u32>| {
        mbit.map(|m| {
            let mut v = json!({"average_mbit": m});
            if let Some(b) = burst {
                v["burst_kib"] = json!(b);
            }
            v
        })
    };
    let mut b = json!({});
    if let Some(i) = one(inbound) {
        b["inbound"] = i;
    }
    if let Some(o) = one(outbound) {
        b["outbound"] = o;
    }
    b
}

/// Runs one rental-term subcommand.
pub async fn run(client: &ApiClient, cmd: TermsCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        TermsCommand::Limit {
            server,
            inbound_mbit,
            outbound_mbit,
            burst_kib,
        } => {
            let s = find(client, &server).await?;
            let body = json!({"bandwidth": bandwidth_json(inbound_mbit, outbound_mbit, burst_kib)});
            let updated: Server = client
                .patch(&format!("/v1/servers/{}", s.id), &body)
                .await?;
            print_server(client, json, &updated).await;
        }
        TermsCommand::Quota {
            server,
            monthly_gib,
            policy,
            remove,
        } => {
            let s = find(client, &server).await?;
            let quota = match (remove, monthly_gib) {
                (true, _) => Value::Null,
                (false, Some(gib)) => json!({
                    "monthly_gib": gib,
                    "policy": match policy { PolicyArg::Throttle => "throttle", PolicyArg::Suspend => "suspend" },
                }),
                (false, None) => bail!("give --monthly-gib or --remove"),
            };
            let body = json!({ "traffic_quota": quota });
            let updated: Server = client
                .patch(&format!("/v1/servers/{}", s.id), &body)
                .await?;
            print_server(client, json, &updated).await;
        }
        TermsCommand::Lease {
            server,
            term,
            expires_at,
            exempt,
        } => {
            let s = find(client, &server).await?;
            let mut body = json!({});
            if let Some(seconds) = term {
                body["term"] = json!({ "duration_seconds": seconds });
            }
            if let Some(t) = expires_at {
                body["term"] = json!({ "expires_at": t });
            }
            if let Some(e) = exempt {
                body["exempt"] = json!(e);
            }
            let updated: Server = client
                .post(&format!("/v1/servers/{}/lease", s.id), &body)
                .await?;
            print_server(client, json, &updated).await;
        }
        TermsCommand::Usage { server, period } => {
            let query = period.map(|p| format!("?period={p}")).unwrap_or_default();
            match server {
                Some(server) => {
                    let s = find(client, &server).await?;
                    let u: ServerUsage = client
                        .get(&format!("/v1/servers/{}/usage{query}", s.id))
                        .await?;
                    if json {
                        crate::output::print_json(&u);
                    } else {
                        let quota = u
                            .quota
                            .map(|q| format!("{} GiB, {}", q.gib(), q.policy.as_str()))
                            .unwrap_or_else(|| "none".into());
                        println!(
                            "{} in {}: {} in, {} out, {} total; quota {}; {}",
                            s.name,
                            u.period.label(),
                            bytes(u.inbound_bytes),
                            bytes(u.outbound_bytes),
                            bytes(u.total_bytes),
                            quota,
                            u.traffic_state.as_str()
                        );
                        print_series(&u.series);
                    }
                }
                None => {
                    let u: ProjectUsage = client
                        .get(&format!("/v1/projects/current/usage{query}"))
                        .await?;
                    if json {
                        crate::output::print_json(&u);
                    } else {
                        println!(
                            "project in {}: {} in, {} out, {} total",
                            u.period.label(),
                            bytes(u.inbound_bytes),
                            bytes(u.outbound_bytes),
                            bytes(u.total_bytes)
                        );
                        print_list(false, &u.servers, &["server", "inbound", "outbound"], |t| {
                            vec![
                                t.name.clone(),
                                bytes(t.inbound_bytes),
                                bytes(t.outbound_bytes),
                            ]
                        });
                    }
                }
            }
        }
        TermsCommand::Events { server } => {
            let events: Vec<ServerEvent> = match server {
                Some(server) => {
                    let s = find(client, &server).await?;
                    client.get(&format!("/v1/servers/{}/events", s.id)).await?
                }
                None => client.get("/v1/events").await?,
            };
            print_list(
                json,
                &events,
                &["time", "server", "event", "message"],
                |e| {
                    vec![
                        crate::output::time_text(&e.time),
                        e.server_name.clone(),
                        e.kind.as_str().to_owned(),
                        e.message.clone(),
                    ]
                },
            );
        }
    }
    Ok(())
}

fn print_series(series: &[UsagePoint]) {
    print_list(false, series, &["hour (UTC)", "inbound", "outbound"], |p| {
        vec![
            p.start.format("%Y-%m-%d %H:00").to_string(),
            bytes(p.inbound_bytes),
            bytes(p.outbound_bytes),
        ]
    });
}

/// Bytes for people, in binary units.
fn bytes(b: u64) -> String {
    nubis_api::traffic::format_bytes(b, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_bytes() {
        assert_eq!(parse_duration("3600"), Ok(3600));
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("d").is_err());
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 29), "1.50 GiB");
        let b = bandwidth_json(Some(10), None, Some(64));
        assert_eq!(b, json!({"inbound": {"average_mbit": 10, "burst_kib": 64}}));
    }
}
