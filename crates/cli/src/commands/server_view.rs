//! `nubis server show` for people: names instead of ids, and readable text
//! for bandwidth, traffic quota and lease instead of raw JSON.

use crate::client::{segment, ApiClient};
use crate::output::print_one_with;
use chrono::{DateTime, Utc};
use nubis_api::bandwidth::{Bandwidth, RateLimit};
use nubis_api::flavors::Flavor;
use nubis_api::images::Image;
use nubis_api::leases::{Lease, LeaseState};
use nubis_api::servers::Server;
use nubis_api::traffic::TrafficQuota;

/// Names of the objects a server refers to by id; `None` when a lookup
/// failed (e.g. the image was deleted since), and the id is shown instead.
#[derive(Default)]
pub struct ServerNames {
    pub image: Option<String>,
    pub flavor: Option<String>,
}

impl ServerNames {
    /// Looks the image and flavor names up with the API.
    pub async fn fetch(client: &ApiClient, server: &Server) -> Self {
        let image = client
            .get::<Image>(&format!(
                "/v1/images/{}",
                segment(&server.image.to_string())
            ))
            .await
            .ok()
            .map(|i| i.name);
        let flavor = match server.flavor {
            Some(id) => client
                .get::<Vec<Flavor>>("/v1/flavors")
                .await
                .ok()
                .and_then(|all| all.into_iter().find(|f| f.id == id))
                .map(|f| f.name),
            None => None,
        };
        Self { image, flavor }
    }
}

/// Prints a server as a table (readable fields) or as JSON (as the API
/// sent it, times to the second).
pub fn print_server(json: bool, server: &Server, names: &ServerNames) {
    let now = Utc::now();
    print_one_with(json, server, |field| field_text(server, names, field, now));
}

/// The table text of one field, or `None` for the default rendering.
fn field_text(
    server: &Server,
    names: &ServerNames,
    field: &str,
    now: DateTime<Utc>,
) -> Option<String> {
    Some(match field {
        "addresses" => super::servers::addresses_text(&server.addresses),
        "image" => names
            .image
            .clone()
            .unwrap_or_else(|| server.image.to_string()),
        "flavor" => match server.flavor {
            None => "- (sized explicitly)".into(),
            Some(id) => names.flavor.clone().unwrap_or_else(|| id.to_string()),
        },
        "bandwidth" => bandwidth_text(&server.bandwidth),
        "traffic_quota" => server
            .traffic_quota
            .as_ref()
            .map_or_else(|| "none".into(), quota_text),
        "lease" => server
            .lease
            .as_ref()
            .map_or_else(|| "none".into(), |l| lease_text(l, now)),
        "security_groups" if server.security_groups.is_empty() => "-".into(),
        "security_groups" => server.security_groups.join(", "),
        _ => return None,
    })
}

/// `10 Mbit/s in, 5 Mbit/s out`; an absent direction is unlimited.
pub fn bandwidth_text(b: &Bandwidth) -> String {
    if b.is_unlimited() {
        return "unlimited".into();
    }
    let one = |r: &Option<RateLimit>| match r {
        None => "unlimited".to_owned(),
        Some(r) => {
            let mut extra = Vec::new();
            if let Some(p) = r.peak_mbit {
                extra.push(format!("peak {p} Mbit/s"));
            }
            if let Some(k) = r.burst_kib {
                extra.push(format!("burst {k} KiB"));
            }
            if extra.is_empty() {
                format!("{} Mbit/s", r.average_mbit)
            } else {
                format!("{} Mbit/s ({})", r.average_mbit, extra.join(", "))
            }
        }
    };
    format!("{} in, {} out", one(&b.inbound), one(&b.outbound))
}

/// `50 GiB/month, throttle`.
pub fn quota_text(q: &TrafficQuota) -> String {
    let gib = q.gib();
    let amount = if gib.fract() == 0.0 {
        format!("{gib:.0}")
    } else {
        format!("{gib:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    };
    format!("{amount} GiB/month, {}", q.policy.as_str())
}

/// `expires 2026-12-01 12:00 UTC (in 3 days)`, or once expired when the
/// server will be deleted.
pub fn lease_text(l: &Lease, now: DateTime<Utc>) -> String {
    let at = |t: &DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let mut text = match l.state {
        LeaseState::Active => format!(
            "expires {} ({})",
            at(&l.expires_at),
            relative(l.expires_at, now)
        ),
        LeaseState::Expired => format!(
            "expired {}; deleted {} ({})",
            at(&l.expires_at),
            at(&l.delete_at),
            relative(l.delete_at, now)
        ),
    };
    if l.exempt {
        text.push_str(", exempt (never enforced)");
    }
    text
}

/// `in 3 days`, `5 hours ago`: the largest whole unit.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (t - now).num_seconds();
    let n = seconds.unsigned_abs();
    let (count, unit) = match n {
        0..=59 => (n, "second"),
        60..=3599 => (n / 60, "minute"),
        3600..=86_399 => (n / 3600, "hour"),
        _ => (n / 86_400, "day"),
    };
    let plural = if count == 1 { "" } else { "s" };
    if seconds >= 0 {
        format!("in {count} {unit}{plural}")
    } else {
        format!("{count} {unit}{plural} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nubis_api::traffic::QuotaPolicy;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn bandwidth_reads_as_text() {
        let b = Bandwidth {
            inbound: Some(RateLimit::average(10)),
            outbound: Some(RateLimit::average(10)),
        };
        assert_eq!(bandwidth_text(&b), "10 Mbit/s in, 10 Mbit/s out");
        let b = Bandwidth {
            inbound: None,
            outbound: Some(RateLimit {
                average_mbit: 5,
                peak_mbit: Some(20),
                burst_kib: Some(256),
            }),
        };
        assert_eq!(
            bandwidth_text(&b),
            "unlimited in, 5 Mbit/s (peak 20 Mbit/s, burst 256 KiB) out"
        );
        assert_eq!(bandwidth_text(&Bandwidth::default()), "unlimited");
    }

    #[test]
    fn quota_reads_as_text() {
        let q = TrafficQuota::from_bytes(50 << 30, QuotaPolicy::Throttle);
        assert_eq!(quota_text(&q), "50 GiB/month, throttle");
        let q = TrafficQuota::from_bytes(1 << 29, QuotaPolicy::Suspend);
        assert_eq!(quota_text(&q), "0.5 GiB/month, suspend");
    }

    #[test]
    fn lease_reads_as_text() {
        let now = t("2026-11-28T12:00:00Z");
        let lease = Lease {
            expires_at: t("2026-12-01T12:00:00.123456789Z"),
            delete_at: t("2026-12-08T12:00:00Z"),
            state: LeaseState::Active,
            exempt: false,
        };
        assert_eq!(
            lease_text(&lease, now),
            "expires 2026-12-01 12:00 UTC (in 3 days)"
        );
        let expired = Lease {
            state: LeaseState::Expired,
            exempt: true,
            ..lease
        };
        assert_eq!(
            lease_text(&expired, t("2026-12-08T10:00:00Z")),
            "expired 2026-12-01 12:00 UTC; deleted 2026-12-08 12:00 UTC (in 2 hours), exempt (never enforced)"
        );
        assert_eq!(relative(t("2026-11-28T11:59:00Z"), now), "1 minute ago");
    }
}
