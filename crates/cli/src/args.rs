//! Value parsers for CLI flags, built on the API's own validated types, so a
//! bad value is refused at parse time, before any request, and the message
//! names the flag (clap prints `invalid value '0' for '--memory-mib <MIB>':
//! must be between 64 and 262144 MiB`).

use nubis_api::bandwidth::RateLimit;
use nubis_api::leases::LeaseRequest;
use nubis_api::resources::{DiskGib, MemoryMib, Vcpus};
use nubis_api::traffic::TrafficQuota;
use serde_json::json;

/// The API's message for a field, made to fit after clap's `for '--flag'`:
/// without the wire name of the field (the flag already names it) and
/// without `, got N` (clap already quotes the value).
fn reason(message: &str, field: &str) -> String {
    let message = message
        .strip_prefix(field)
        .map(str::trim_start)
        .unwrap_or(message);
    let message = match message.rfind(", got ") {
        Some(at) => &message[..at],
        None => message,
    };
    message.to_owned()
}

fn whole_number(s: &str) -> Result<i64, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a whole number"))
}

/// `--vcpus`: 1 to 64.
pub fn vcpus(s: &str) -> Result<u64, String> {
    Vcpus::try_from(whole_number(s)?)
        .map(Vcpus::get)
        .map_err(|e| reason(&e, "vcpus"))
}

/// `--memory-mib`: 64 to 262144.
pub fn memory_mib(s: &str) -> Result<u64, String> {
    MemoryMib::try_from(whole_number(s)?)
        .map(MemoryMib::get)
        .map_err(|e| reason(&e, "memory_mib"))
}

/// `--disk-gib`: 1 to 16384.
pub fn disk_gib(s: &str) -> Result<u64, String> {
    DiskGib::try_from(whole_number(s)?)
        .map(DiskGib::get)
        .map_err(|e| reason(&e, "disk_gib"))
}

/// `--inbound-mbit`, `--outbound-mbit`: 1 to 100000 Mbit/s.
pub fn mbit(s: &str) -> Result<u32, String> {
    let n = whole_number(s)?;
    let n = u32::try_from(n).unwrap_or(if n < 0 { 0 } else { u32::MAX });
    RateLimit::try_from_mbit(n)
        .map(|r| r.average_mbit)
        .map_err(|e| reason(&e, "average_mbit"))
}

/// `--traffic-quota-gib`, `--monthly-gib`: a (fractional) number of GiB in
/// the API's range.
pub fn quota_gib(s: &str) -> Result<f64, String> {
    let gib: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of GiB"))?;
    serde_json::from_value::<TrafficQuota>(json!({ "monthly_gib": gib }))
        .map(|_| gib)
        .map_err(|e| reason(&e.to_string(), "monthly_gib"))
}

/// `--lease`, `--for`: a term (`3600`, `90m`, `12h`, `30d`) in the API's
/// range, in seconds.
pub fn lease_term(s: &str) -> Result<i64, String> {
    let seconds = crate::commands::terms::parse_duration(s)?;
    serde_json::from_value::<LeaseRequest>(json!({ "duration_seconds": seconds }))
        .map(|_| seconds)
        .map_err(|e| reason(&e.to_string(), "duration_seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_range_pass() {
        assert_eq!(memory_mib("128"), Ok(128));
        assert_eq!(vcpus("2"), Ok(2));
        assert_eq!(disk_gib("10"), Ok(10));
        assert_eq!(mbit("10"), Ok(10));
        assert_eq!(quota_gib("0.5"), Ok(0.5));
        assert_eq!(lease_term("30d"), Ok(30 * 86_400));
    }

    #[test]
    fn refusals_say_why_without_the_wire_name() {
        assert_eq!(
            memory_mib("0").unwrap_err(),
            "must be between 64 and 262144 MiB"
        );
        assert_eq!(vcpus("65").unwrap_err(), "must be between 1 and 64");
        assert_eq!(
            disk_gib("-1").unwrap_err(),
            "must be between 1 and 16384 GiB"
        );
        assert_eq!(
            mbit("0").unwrap_err(),
            "must be between 1 and 100000 Mbit/s"
        );
        assert_eq!(
            mbit("-3").unwrap_err(),
            "must be between 1 and 100000 Mbit/s"
        );
        assert!(quota_gib("0").unwrap_err().starts_with("must be between"));
        assert!(lease_term("10").unwrap_err().starts_with("must be between"));
        assert_eq!(
            memory_mib("lots").unwrap_err(),
            "'lots' is not a whole number"
        );
        for e in [memory_mib("0"), vcpus("0"), disk_gib("0")] {
            let e = e.unwrap_err();
            assert!(
                !e.contains("_mib") && !e.contains("got") && !e.contains("at line"),
                "{e}"
            );
        }
    }
}
