//! Real-time bandwidth limits of a server, shaped like libvirt's
//! `<bandwidth>`: an average rate with an optional peak and burst, per
//! direction. "Inbound" is traffic towards the guest, "outbound" from it.

use crate::whole::Whole;
use serde::{Deserialize, Serialize};

/// The highest rate accepted, in Mbit/s (100 Gbit/s).
pub const MAX_MBIT: u32 = 100_000;
/// The largest burst accepted, in KiB (1 GiB).
pub const MAX_BURST_KIB: u32 = 1 << 20;

/// One direction's limit, checked when parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
// deny_unknown_fields does nothing beside try_from but tells the schema
// what RateLimitFields enforces: unknown fields are refused.
#[serde(try_from = "RateLimitFields", deny_unknown_fields)]
pub struct RateLimit {
    /// Long-term average rate in Mbit/s (1..=100000).
    #[schema(schema_with = mbit_schema)]
    pub average_mbit: u32,
    /// Highest rate while bursting, in Mbit/s; at least `average_mbit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = peak_mbit_schema)]
    pub peak_mbit: Option<u32>,
    /// How much may be sent at `peak_mbit` (or line rate) above the average, in KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = burst_kib_schema)]
    pub burst_kib: Option<u32>,
}

/// A rate as `in_range` accepts it.
fn mbit_schema() -> utoipa::openapi::schema::Object {
    crate::schema::integer(1, MAX_MBIT.into(), &format!("Mbit/s, 1 to {MAX_MBIT}")).build()
}

fn peak_mbit_schema() -> utoipa::openapi::schema::Object {
    crate::schema::nullable(crate::schema::integer(
        1,
        MAX_MBIT.into(),
        &format!("Mbit/s, 1 to {MAX_MBIT}, at least average_mbit"),
    ))
    .build()
}

fn burst_kib_schema() -> utoipa::openapi::schema::Object {
    crate::schema::nullable(crate::schema::integer(
        1,
        MAX_BURST_KIB.into(),
        &format!("KiB, 1 to {MAX_BURST_KIB}"),
    ))
    .build()
}

/// The wire form before validation (signed, so negatives get a clear message).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFields {
    average_mbit: Whole,
    #[serde(default)]
    peak_mbit: Option<Whole>,
    #[serde(default)]
    burst_kib: Option<Whole>,
}

fn in_range(what: &str, Whole(v): Whole, max: u32, unit: &str) -> Result<u32, String> {
    if v < 1 || v > i64::from(max) {
        return Err(format!("{what} must be between 1 and {max}{unit}, got {v}"));
    }
    Ok(v as u32)
}

impl TryFrom<RateLimitFields> for RateLimit {
    type Error = String;
    fn try_from(f: RateLimitFields) -> Result<Self, String> {
        let average_mbit = in_range("average_mbit", f.average_mbit, MAX_MBIT, " Mbit/s")?;
        let peak_mbit = f
            .peak_mbit
            .map(|p| in_range("peak_mbit", p, MAX_MBIT, " Mbit/s"))
            .transpose()?;
        if let Some(peak) = peak_mbit {
            if peak < average_mbit {
                return Err(format!(
                    "peak_mbit ({peak}) must not be below average_mbit ({average_mbit})"
                ));
            }
        }
        let burst_kib = f
            .burst_kib
            .map(|b| in_range("burst_kib", b, MAX_BURST_KIB, " KiB"))
            .transpose()?;
        Ok(Self {
            average_mbit,
            peak_mbit,
            burst_kib,
        })
    }
}

impl RateLimit {
    /// A plain average limit.
    pub fn average(mbit: u32) -> Self {
        Self {
            average_mbit: mbit,
            peak_mbit: None,
            burst_kib: None,
        }
    }

    /// A plain average limit, range-checked.
    pub fn try_from_mbit(mbit: u32) -> Result<Self, String> {
        Ok(Self::average(in_range(
            "average_mbit",
            Whole(i64::from(mbit)),
            MAX_MBIT,
            " Mbit/s",
        )?))
    }

    /// Bytes per second of the average rate.
    pub fn average_bytes(&self) -> u64 {
        u64::from(self.average_mbit) * 125_000
    }

    /// The stricter of two limits (each field the lower; a missing peak is
    /// the average).
    pub fn min(self, other: RateLimit) -> RateLimit {
        let average_mbit = self.average_mbit.min(other.average_mbit);
        let peak = |r: RateLimit| r.peak_mbit.unwrap_or(r.average_mbit);
        let peak_mbit = Some(peak(self).min(peak(other))).filter(|p| *p > average_mbit);
        let burst_kib = match (self.burst_kib, other.burst_kib) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        RateLimit {
            average_mbit,
            peak_mbit,
            burst_kib,
        }
    }
}

/// Limits of both directions; a missing direction is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Bandwidth {
    /// Towards the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<RateLimit>,
    /// From the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<RateLimit>,
}

impl Bandwidth {
    /// Both directions capped at `cap` (used while a server is throttled).
    pub fn capped(self, cap: RateLimit) -> Bandwidth {
        let cap_one = |r: Option<RateLimit>| Some(r.map_or(cap, |r| r.min(cap)));
        Bandwidth {
            inbound: cap_one(self.inbound),
            outbound: cap_one(self.outbound),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.inbound.is_none() && self.outbound.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Bandwidth, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn valid_limits_parse() {
        let b = parse(r#"{"inbound":{"average_mbit":10,"peak_mbit":20,"burst_kib":256},"outbound":{"average_mbit":5}}"#).unwrap();
        assert_eq!(b.inbound.unwrap().peak_mbit, Some(20));
        assert_eq!(b.outbound.unwrap().average_bytes(), 625_000);
        assert!(parse("{}").unwrap().is_unlimited());
    }

    #[test]
    fn bad_limits_are_refused_with_reasons() {
        for (json, why) in [
            (r#"{"inbound":{"average_mbit":0}}"#, "between 1 and 100000"),
            (r#"{"inbound":{"average_mbit":-5}}"#, "got -5"),
            (
                r#"{"outbound":{"average_mbit":100001}}"#,
                "between 1 and 100000",
            ),
            (
                r#"{"outbound":{"average_mbit":10,"peak_mbit":5}}"#,
                "must not be below",
            ),
            (
                r#"{"outbound":{"average_mbit":10,"burst_kib":0}}"#,
                "burst_kib",
            ),
            (
                r#"{"outbound":{"average_mbit":10,"burst_kib":99999999999}}"#,
                "burst_kib",
            ),
            (r#"{"outbound":{"average_mbit":"fast"}}"#, "invalid type"),
            (r#"{"sideways":{"average_mbit":1}}"#, "unknown field"),
        ] {
            let e = parse(json).unwrap_err();
            assert!(e.contains(why), "{json}: {e}");
        }
    }

    #[test]
    fn capping_takes_the_stricter_limit() {
        let b = Bandwidth {
            inbound: Some(RateLimit {
                average_mbit: 100,
                peak_mbit: Some(200),
                burst_kib: None,
            }),
            outbound: Some(RateLimit::average(1)),
        };
        let c = b.capped(RateLimit::average(2));
        assert_eq!(c.inbound, Some(RateLimit::average(2)));
        assert_eq!(c.outbound, Some(RateLimit::average(1)));
        assert_eq!(
            Bandwidth::default().capped(RateLimit::average(2)).inbound,
            Some(RateLimit::average(2))
        );
    }
}
