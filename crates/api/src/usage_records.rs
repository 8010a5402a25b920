//! Usage records for billing (`GET /v1/projects/{id}/usage-records`): what a
//! project held during a period, in billable units, as JSON or CSV.

use crate::traffic::Period;
use crate::ProjectId;
use serde::{Deserialize, Serialize};

/// What a record measures.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum UsageKind {
    /// Hours a server was meant to be running, by size.
    Instance,
    /// GiB-hours of disk held.
    Disk,
    /// Floating-IP hours held.
    FloatingIp,
    /// Traffic in and out, in GiB.
    Traffic,
}

impl UsageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Instance => "instance",
            Self::Disk => "disk",
            Self::FloatingIp => "floating_ip",
            Self::Traffic => "traffic",
        }
    }

    /// The unit of `quantity`.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Instance => "hours",
            Self::Disk => "GiB-hours",
            Self::FloatingIp => "hours",
            Self::Traffic => "GiB",
        }
    }
}

/// One billable line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageRecord {
    pub kind: UsageKind,
    /// The server or floating IP id.
    pub resource: String,
    /// Its name or address.
    pub name: String,
    /// The size billed: `2vcpu-1024mib` for instances, `20gib` for disks, the
    /// direction for traffic.
    pub size: String,
    pub quantity: f64,
    pub unit: String,
}

/// All records of a project for a period.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageReport {
    pub project: ProjectId,
    pub period: Period,
    pub records: Vec<UsageRecord>,
}

impl UsageReport {
    /// The report as CSV (RFC 4180), one header line then one line per record.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("project,period,kind,resource,name,size,quantity,unit\r\n");
        for r in &self.records {
            let fields = [
                self.project.to_string(),
                self.period.label(),
                r.kind.as_str().to_owned(),
                r.resource.clone(),
                r.name.clone(),
                r.size.clone(),
                format!("{:.6}", r.quantity),
                r.unit.clone(),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push_str("\r\n");
        }
        out
    }
}

/// Quotes a field when it holds a comma, quote or line break; a leading
/// `=`, `+`, `-` or `@` is prefixed with `'` so spreadsheets do not run it.
fn csv_field(f: &str) -> String {
    let f = if f.starts_with(['=', '+', '-', '@']) {
        format!("'{f}")
    } else {
        f.to_owned()
    };
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_fields() {
        assert_eq!(csv_field("web"), "web");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }
}
