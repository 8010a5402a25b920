//! Printing results: tables for people, JSON with `--json`.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::Table;
use serde::Serialize;

/// Prints rows as a table, or the values as JSON.
pub fn print_list<T: Serialize>(
    json: bool,
    items: &[T],
    header: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(items).unwrap_or_default()
        );
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
    let value = serde_json::to_value(item).unwrap_or_default();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return;
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["field", "value"]);
    if let Some(map) = value.as_object() {
        for (k, v) in map {
            let text = shown(k).unwrap_or_else(|| match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".into(),
                other => other.to_string(),
            });
            table.add_row(vec![k.clone(), text]);
        }
    }
    println!("{table}");
}

/// `Option` as table text.
pub fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "-".into())
}
