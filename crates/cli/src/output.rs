//! Printing results: tables for people, JSON with `--json`. Times are shown
//! in RFC 3339 to the second, in UTC, in both.

use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::Table;
use serde::Serialize;
use serde_json::Value;

/// A time as the CLI shows it: `2026-12-01T12:00:00Z`.
pub fn time_text(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `v` with every RFC 3339 time string cut to the second, in UTC (the API
/// sends nanoseconds, which nobody reads).
pub fn tidy_times(v: Value) -> Value {
    match v {
        Value::String(s) => match parse_time(&s) {
            Some(t) => Value::String(time_text(&t)),
            None => Value::String(s),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(tidy_times).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, tidy_times(v))).collect())
        }
        other => other,
    }
}

/// A full RFC 3339 date-time (`2026-11-29T16:09:12.123Z`); dates, names and
/// anything else are not times.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if s.len() < 20 || s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Prints a value as pretty JSON, times cut to the second.
pub fn print_json<T: Serialize>(item: &T) {
    let value = tidy_times(serde_json::to_value(item).unwrap_or_default());
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
}

/// Prints rows as a table, or the values as JSON.
pub fn print_list<T: Serialize>(
    json: bool,
    items: &[T],
    header: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) {
    if json {
        print_json(&items);
        return;
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    for item in items {
        table.add_row(row(item));
    }
    println!("{table}");
}

/// Prints one object as a two-column table, or as JSON.
pub fn print_one<T: Serialize>(json: bool, item: &T) {
    print_one_with(json, item, |_| None);
}

/// Like [`print_one`], but `shown` may give a field's table text (for nested
/// values people should not read as JSON); `None` keeps the default.
pub fn print_one_with<T: Serialize>(json: bool, item: &T, shown: impl Fn(&str) -> Option<String>) {
    if json {
        print_json(item);
        return;
    }
    println!("{}", one_table(item, shown));
}

/// The two-column `field | value` table of an object.
pub fn one_table<T: Serialize>(item: &T, shown: impl Fn(&str) -> Option<String>) -> Table {
    let value = tidy_times(serde_json::to_value(item).unwrap_or_default());
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["field", "value"]);
    if let Some(map) = value.as_object() {
        for (k, v) in map {
            let text = shown(k).unwrap_or_else(|| match v {
                Value::String(s) => s.clone(),
                Value::Null => "-".into(),
                other => other.to_string(),
            });
            table.add_row(vec![k.clone(), text]);
        }
    }
    table
}

/// `Option` as table text.
pub fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_lose_their_fraction_and_keep_utc() {
        let t: DateTime<Utc> = "2026-11-29T16:09:12.123456789Z".parse().unwrap();
        assert_eq!(time_text(&t), "2026-11-29T16:09:12Z");
        let v = tidy_times(json!({
            "created_at": "2026-11-29T16:09:12.123456789Z",
            "lease": {"expires_at": "2026-12-01T13:00:00.5+01:00"},
            "events": [{"time": "2026-11-29T16:09:12.000000001Z"}],
            "name": "web",
            "period": "2026-11",
            "size": 5,
        }));
        assert_eq!(v["created_at"], "2026-11-29T16:09:12Z");
        assert_eq!(v["lease"]["expires_at"], "2026-12-01T12:00:00Z");
        assert_eq!(v["events"][0]["time"], "2026-11-29T16:09:12Z");
        assert_eq!(
            (&v["name"], &v["period"], &v["size"]),
            (&json!("web"), &json!("2026-11"), &json!(5))
        );
    }

    #[test]
    fn tables_show_times_to_the_second() {
        let table = one_table(
            &json!({"created_at": "2026-11-29T16:09:12.987654321Z", "fault": null}),
            |_| None,
        )
        .to_string();
        assert!(table.contains("2026-11-29T16:09:12Z"), "{table}");
        assert!(!table.contains(".987"), "{table}");
        assert!(table.contains('-'), "{table}");
    }
}
