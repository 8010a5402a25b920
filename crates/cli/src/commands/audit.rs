//! `nubis audit`: the audit trail (every state-changing call: who, from
//! where, what, on which object, how it ended), newest first. Admins see
//! every project's records, others their own project's.

use crate::client::{segment, ApiClient};
use crate::output::{print_json, print_list, time_text};
use chrono::{DateTime, Utc};
use clap::Args;
use nubis_api::audit::{AuditEvent, AuditPage, NEXT_MARKER_HEADER};

/// Records shown per page by default.
const DEFAULT_LIMIT: u32 = 50;
/// Records fetched per request of an export.
const EXPORT_PAGE: u32 = 10_000;

/// `nubis audit` options.
#[derive(Args, Debug, Clone, Default)]
pub struct AuditArgs {
    /// Only this user's records (name or id).
    #[arg(long)]
    pub user: Option<String>,
    /// Only this project's records (id, or `current`; admins).
    #[arg(long)]
    pub project: Option<String>,
    /// Only this action, e.g. server.create, server.delete, token.create.
    #[arg(long)]
    pub action: Option<String>,
    /// Only this outcome: success, denied or failure.
    #[arg(long, value_parser = ["success", "denied", "failure"])]
    pub outcome: Option<String>,
    /// From this time on: RFC 3339 (2026-11-29T12:00:00Z) or an age (90m, 24h, 7d).
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    pub since: Option<DateTime<Utc>>,
    /// Before this time: RFC 3339 or an age.
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    pub until: Option<DateTime<Utc>>,
    /// Records per page (1 to 1000; default 50).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// The page after the one that printed this marker.
    #[arg(long)]
    pub marker: Option<String>,
    /// Export every matching record as JSON lines (one record per line),
    /// following all pages.
    #[arg(long, conflicts_with_all = ["limit", "marker"])]
    pub jsonl: bool,
}

/// `--since`/`--until`: an RFC 3339 time, or an age before now.
fn time_arg(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let seconds = crate::commands::terms::parse_duration(s)
        .map_err(|_| format!("'{s}' is neither an RFC 3339 time nor an age such as 24h or 7d"))?;
    Ok(Utc::now() - chrono::Duration::seconds(seconds))
}

/// The request path for one page.
fn path(args: &AuditArgs, limit: u32, marker: Option<&str>, jsonl: bool) -> String {
    let mut query = vec![format!("limit={limit}")];
    let mut add = |key: &str, value: Option<&str>| {
        if let Some(v) = value {
            query.push(format!("{key}={}", segment(v)));
        }
    };
    add("user", args.user.as_deref());
    add("project", args.project.as_deref());
    add("action", args.action.as_deref());
    add("outcome", args.outcome.as_deref());
    let since = args.since.map(|t| t.to_rfc3339());
    let until = args.until.map(|t| t.to_rfc3339());
    add("since", since.as_deref());
    add("until", until.as_deref());
    add("marker", marker);
    if jsonl {
        query.push("format=jsonl".into());
    }
    format!("/v1/audit?{}", query.join("&"))
}

/// Runs `nubis audit`.
pub async fn run(client: &ApiClient, args: AuditArgs, json: bool) -> anyhow::Result<()> {
    if args.jsonl {
        return export(client, &args).await;
    }
    let limit = args.limit.unwrap_or(DEFAULT_LIMIT);
    let page: AuditPage = client
        .get(&path(&args, limit, args.marker.as_deref(), false))
        .await?;
    if json {
        print_json(&page);
        return Ok(());
    }
    print_list(
        false,
        &page.events,
        &["time", "user", "source", "action", "object", "result"],
        row,
    );
    if let Some(next) = &page.next_marker {
        eprintln!("More records: nubis audit --marker {next} (with the same filters)");
    }
    Ok(())
}

fn row(e: &AuditEvent) -> Vec<String> {
    let user = match (&e.user_name, e.initiator) {
        (Some(name), _) => name.clone(),
        (None, i) => format!("({})", i.as_str()),
    };
    let object = match (&e.object_type, &e.object_id) {
        (Some(t), Some(id)) => format!("{t} {id}"),
        (Some(t), None) => t.clone(),
        _ => String::new(),
    };
    let result = match &e.error {
        Some(code) => format!("{} {} ({code})", e.status, e.outcome.as_str()),
        None => format!("{} {}", e.status, e.outcome.as_str()),
    };
    vec![
        time_text(&e.time),
        user,
        e.source_address.clone().unwrap_or_default(),
        e.action.clone(),
        object,
        result,
    ]
}

/// Prints every matching record as JSON lines, page after page.
async fn export(client: &ApiClient, args: &AuditArgs) -> anyhow::Result<()> {
    let mut marker: Option<String> = None;
    loop {
        let req = client.request(
            reqwest::Method::GET,
            &path(args, EXPORT_PAGE, marker.as_deref(), true),
        );
        let resp = client.send(req).await?;
        let next = resp
            .headers()
            .get(NEXT_MARKER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        print!("{}", resp.text().await?);
        match next {
            Some(m) => marker = Some(m),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: AuditArgs,
    }

    #[test]
    fn filters_become_query_parameters() {
        let cli = Cli::try_parse_from([
            "audit",
            "--user",
            "bob smith",
            "--action",
            "server.create",
            "--outcome",
            "denied",
            "--since",
            "2026-11-29T12:00:00Z",
        ])
        .unwrap();
        assert_eq!(
            path(&cli.args, 50, Some("m1"), false),
            "/v1/audit?limit=50&user=bob%20smith&action=server.create&outcome=denied\
             &since=2026-11-29T12%3A00%3A00%2B00%3A00&marker=m1"
        );
        assert!(path(&AuditArgs::default(), 10, None, true).ends_with("&format=jsonl"));
    }

    #[test]
    fn times_are_rfc3339_or_ages() {
        let age = time_arg("24h").unwrap();
        let want = Utc::now() - chrono::Duration::hours(24);
        assert!((age - want).num_seconds().abs() < 60);
        assert!(time_arg("yesterday").unwrap_err().contains("RFC 3339"));
        assert!(Cli::try_parse_from(["audit", "--outcome", "ok"]).is_err());
        assert!(Cli::try_parse_from(["audit", "--jsonl", "--limit", "5"]).is_err());
        assert!(Cli::try_parse_from(["audit", "--limit", "0"]).is_err());
    }
}
