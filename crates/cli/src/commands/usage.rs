//! `nubis usage ...`: usage records for billing.

use crate::client::{segment, ApiClient};
use crate::output::print_list;
use clap::Subcommand;
use nubis_api::usage_records::{UsageRecord, UsageReport};

/// `nubis usage` subcommands.
#[derive(Subcommand, Debug)]
pub enum UsageCommand {
    /// What the project held in a period: instance hours by size, disk
    /// GiB-hours, floating-IP hours and traffic.
    Records {
        /// The calendar month (UTC), YYYY-MM. Default: the current one.
        #[arg(long, value_name = "YYYY-MM")]
        period: Option<String>,
        /// Print the records as CSV, for billing (instead of a table or JSON).
        #[arg(long)]
        csv: bool,
        /// Another project's records (admin). Default: your own.
        #[arg(long, value_name = "ID", default_value = "current")]
        project: String,
    },
}

/// Runs one `nubis usage` subcommand.
pub async fn run(client: &ApiClient, cmd: UsageCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        UsageCommand::Records {
            period,
            csv,
            project,
        } => records(client, &project, period.as_deref(), csv, json).await,
    }
}

/// The request path for a project's records.
fn records_path(project: &str, period: Option<&str>, csv: bool) -> String {
    let mut query = Vec::new();
    if let Some(p) = period {
        query.push(format!("period={}", segment(p)));
    }
    if csv {
        query.push("format=csv".to_owned());
    }
    let mut path = format!("/v1/projects/{}/usage-records", segment(project));
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    path
}

async fn records(
    client: &ApiClient,
    project: &str,
    period: Option<&str>,
    csv: bool,
    json: bool,
) -> anyhow::Result<()> {
    let path = records_path(project, period, csv);
    if csv {
        let resp = client
            .send(client.request(reqwest::Method::GET, &path))
            .await?;
        print!("{}", resp.text().await?);
        return Ok(());
    }
    let report: UsageReport = client.get(&path).await?;
    if json {
        crate::output::print_json(&report);
        return Ok(());
    }
    println!(
        "Usage of project {} in {}:",
        report.project,
        report.period.label()
    );
    print_list(
        false,
        &report.records,
        &["kind", "name", "size", "quantity", "unit", "resource"],
        |r: &UsageRecord| {
            vec![
                r.kind.as_str().to_owned(),
                r.name.clone(),
                r.size.clone(),
                format!("{:.3}", r.quantity),
                r.unit.clone(),
                r.resource.clone(),
            ]
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{records_path, UsageCommand};
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: UsageCommand,
    }

    #[test]
    fn records_takes_period_csv_and_project() {
        let cli =
            Cli::try_parse_from(["usage", "records", "--period", "2026-11", "--csv"]).unwrap();
        let UsageCommand::Records {
            period,
            csv,
            project,
        } = cli.command;
        assert_eq!(period.as_deref(), Some("2026-11"));
        assert!(csv);
        assert_eq!(project, "current");
    }

    #[test]
    fn paths_carry_period_and_format() {
        assert_eq!(
            records_path("current", None, false),
            "/v1/projects/current/usage-records"
        );
        assert_eq!(
            records_path("current", Some("2026-11"), true),
            "/v1/projects/current/usage-records?period=2026-11&format=csv"
        );
    }
}
