//! Metered traffic: a server's monthly quota, what happens when it is used
//! up, and the usage views (`GET /v1/servers/{id}/usage`,
//! `GET /v1/projects/{id}/usage`).

use crate::{ProjectId, ServerId};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// The largest monthly quota accepted, in GiB (1 PiB).
pub const MAX_QUOTA_GIB: u64 = 1 << 20;

/// What happens when a server has used its monthly traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QuotaPolicy {
    /// Bandwidth drops to the operator's throttle rate.
    #[default]
    Throttle,
    /// Networking is cut; the VM keeps running.
    Suspend,
}

impl QuotaPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttle => "throttle",
            Self::Suspend => "suspend",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "throttle" => Some(Self::Throttle),
            "suspend" => Some(Self::Suspend),
            _ => None,
        }
    }
}

/// A server's monthly traffic quota (inbound + outbound), checked when parsed.
/// On the wire `monthly_gib` may be fractional (0.5 = 512 MiB); it is kept in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TrafficQuotaFields", into = "TrafficQuotaFields")]
pub struct TrafficQuota {
    bytes: u64,
    pub policy: QuotaPolicy,
}

/// The wire form of a traffic quota.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficQuotaFields {
    /// GiB per calendar month (UTC), from 0.001 to 1048576.
    #[schema(schema_with = monthly_gib_schema)]
    monthly_gib: f64,
    #[serde(default)]
    policy: QuotaPolicy,
}

crate::schema_as!(TrafficQuota, TrafficQuotaFields);

/// `monthly_gib` as `TrafficQuota::try_from` accepts it.
fn monthly_gib_schema() -> utoipa::openapi::schema::Object {
    crate::schema::number(
        MIN_QUOTA_GIB,
        MAX_QUOTA_GIB as f64,
        &format!("GiB per calendar month (UTC), from {MIN_QUOTA_GIB} to {MAX_QUOTA_GIB}"),
    )
    .build()
}

/// The smallest quota accepted, in GiB (about 1 MiB).
pub const MIN_QUOTA_GIB: f64 = 0.001;

impl TryFrom<TrafficQuotaFields> for TrafficQuota {
    type Error = String;
    fn try_from(f: TrafficQuotaFields) -> Result<Self, String> {
        let gib = f.monthly_gib;
        if !gib.is_finite() || !(MIN_QUOTA_GIB..=MAX_QUOTA_GIB as f64).contains(&gib) {
            return Err(format!(
                "monthly_gib must be between {MIN_QUOTA_GIB} and {MAX_QUOTA_GIB} GiB, got {gib}"
            ));
        }
        Ok(Self {
            bytes: (gib * (1u64 << 30) as f64).round() as u64,
            policy: f.policy,
        })
    }
}

impl From<TrafficQuota> for TrafficQuotaFields {
    fn from(q: TrafficQuota) -> Self {
        Self {
            monthly_gib: q.gib(),
            policy: q.policy,
        }
    }
}

impl TrafficQuota {
    /// A quota of `bytes` per month (as stored).
    pub fn from_bytes(bytes: u64, policy: QuotaPolicy) -> Self {
        Self { bytes, policy }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn gib(&self) -> f64 {
        self.bytes as f64 / (1u64 << 30) as f64
    }
}

/// Where a server stands against its traffic quota.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrafficState {
    #[default]
    Normal,
    /// Quota used up; bandwidth at the throttle rate.
    Throttled,
    /// Quota used up; networking cut.
    Suspended,
}

impl TrafficState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Throttled => "throttled",
            Self::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "normal" => Some(Self::Normal),
            "throttled" => Some(Self::Throttled),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

/// A billing period: a calendar month in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    /// The month containing `t`.
    pub fn containing(t: DateTime<Utc>) -> Self {
        Self::month(t.year(), t.month()).expect("a valid month")
    }

    /// The period a `?period=` query names, or the one containing `now`
    /// when none is given.
    pub fn requested(query: Option<&str>, now: DateTime<Utc>) -> Result<Self, String> {
        query.map_or(Ok(Self::containing(now)), Self::parse)
    }

    /// `YYYY-MM`, as in `?period=2026-11`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("period must be YYYY-MM, got '{s}'");
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        Self::month(year, month).ok_or_else(bad)
    }

    fn month(year: i32, month: u32) -> Option<Self> {
        if !(1970..=9999).contains(&year) {
            return None;
        }
        let start = Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single()?;
        let (ny, nm) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        let end = Utc.with_ymd_and_hms(ny, nm, 1, 0, 0, 0).single()?;
        Some(Self { start, end })
    }

    /// `YYYY-MM`.
    pub fn label(&self) -> String {
        self.start.format("%Y-%m").to_string()
    }
}

/// Bytes for people in binary units, e.g. `format_bytes(3 << 29, 2)` is
/// `1.50 GiB`; below 1 KiB plain bytes (`900 B`).
pub fn format_bytes(n: u64, decimals: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.decimals$} {}", UNITS[unit])
    }
}

/// Traffic of one interval of the time series.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsagePoint {
    /// Start of the interval (an hour).
    pub start: DateTime<Utc>,
    /// Bytes towards the guest(s) (inbound).
    pub inbound_bytes: u64,
    /// Bytes from the guest(s) (outbound).
    pub outbound_bytes: u64,
}

/// `GET /v1/servers/{id}/usage`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServerUsage {
    pub server: ServerId,
    pub period: Period,
    pub inbound_bytes: u64,
    pub outbound_bytes: u64,
    pub total_bytes: u64,
    pub quota: Option<TrafficQuota>,
    pub traffic_state: TrafficState,
    pub series: Vec<UsagePoint>,
}

/// One server's total in a project's usage.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServerTotal {
    pub server: ServerId,
    /// The server's name (kept after it is deleted).
    pub name: String,
    pub inbound_bytes: u64,
    pub outbound_bytes: u64,
}

/// `GET /v1/projects/{id}/usage`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProjectUsage {
    pub project: ProjectId,
    pub period: Period,
    pub inbound_bytes: u64,
    pub outbound_bytes: u64,
    pub total_bytes: u64,
    pub servers: Vec<ServerTotal>,
    pub series: Vec<UsagePoint>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_calendar_months_in_utc() {
        let p = Period::parse("2026-12").unwrap();
        assert_eq!(p.start.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(p.end.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        let t = Utc.with_ymd_and_hms(2026, 2, 28, 23, 59, 59).unwrap();
        assert_eq!(Period::containing(t).label(), "2026-02");
        for bad in ["2026-13", "2026-1", "26-01", "x", "2026-00", "0000-01"] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quotas_are_checked() {
        let q: TrafficQuota = serde_json::from_str(r#"{"monthly_gib":5}"#).unwrap();
        assert_eq!(q.policy, QuotaPolicy::Throttle);
        assert_eq!(q.bytes(), 5 << 30);
        let q: TrafficQuota =
            serde_json::from_str(r#"{"monthly_gib":0.5,"policy":"suspend"}"#).unwrap();
        assert_eq!((q.bytes(), q.policy), (512 << 20, QuotaPolicy::Suspend));
        assert_eq!(
            serde_json::to_string(&q).unwrap(),
            r#"{"monthly_gib":0.5,"policy":"suspend"}"#
        );
        for bad in [
            r#"{"monthly_gib":0}"#,
            r#"{"monthly_gib":0.0000001}"#,
            r#"{"monthly_gib":-1}"#,
            r#"{"monthly_gib":99999999999}"#,
            r#"{"monthly_gib":1,"policy":"explode"}"#,
        ] {
            assert!(serde_json::from_str::<TrafficQuota>(bad).is_err(), "{bad}");
        }
    }
}
