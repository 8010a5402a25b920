//! Neutron's list filters: `GET /v2.0/networks?name=x&id=a&id=b`. Every
//! query parameter naming a field of the listed objects keeps the objects
//! whose field equals one of its values; paging and field selection
//! (`fields`, `limit`, `marker`, `sort_*`, `page_reverse`) are not applied
//! (the whole list is answered, which clients accept).

use serde_json::Value;

/// Parameters that are not filters.
const NOT_FILTERS: &[&str] = &[
    "fields",
    "limit",
    "marker",
    "sort_key",
    "sort_dir",
    "page_reverse",
];

/// A field's value as a query writes it (`True`/`true` both match `true`).
fn matches(field: &Value, wanted: &str) -> bool {
    match field {
        Value::String(s) => s == wanted,
        Value::Bool(b) => wanted.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Value::Number(n) => n.to_string() == wanted,
        Value::Null => wanted.is_empty() || wanted.eq_ignore_ascii_case("none"),
        Value::Array(items) => items.iter().any(|i| matches(i, wanted)),
        Value::Object(_) => false,
    }
}

/// `fixed_ips=ip_address=10.0.0.5` or `fixed_ips=subnet_id=...`: an entry
/// of the port's `fixed_ips` with that key and value.
fn matches_fixed_ips(field: &Value, wanted: &str) -> bool {
    let Some((key, value)) = wanted.split_once('=') else {
        return false;
    };
    field
        .as_array()
        .is_some_and(|ips| ips.iter().any(|ip| matches(&ip[key], value)))
}

/// The items that pass every filter of `params`.
pub fn filter(items: Vec<Value>, params: &[(String, String)]) -> Vec<Value> {
    items
        .into_iter()
        .filter(|item| {
            let mut keys: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
            keys.dedup();
            keys.iter().filter(|k| !NOT_FILTERS.contains(k)).all(|key| {
                let Some(field) = item.get(*key) else {
                    // Not a field of these objects: not a filter here.
                    return true;
                };
                params.iter().filter(|(k, _)| k == key).any(|(_, v)| {
                    if *key == "fixed_ips" {
                        matches_fixed_ips(field, v)
                    } else {
                        matches(field, v)
                    }
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filters_keep_matching_objects_only() {
        let items = vec![
            json!({"id": "a", "name": "x", "router:external": true,
                   "fixed_ips": [{"ip_address": "10.0.0.5", "subnet_id": "s"}]}),
            json!({"id": "b", "name": "y", "router:external": false, "fixed_ips": []}),
        ];
        let ids = |v: Vec<Value>| v.iter().map(|i| i["id"].clone()).collect::<Vec<_>>();
        assert_eq!(ids(filter(items.clone(), &p(&[]))), vec!["a", "b"]);
        assert_eq!(ids(filter(items.clone(), &p(&[("name", "y")]))), vec!["b"]);
        assert_eq!(
            ids(filter(items.clone(), &p(&[("id", "a"), ("id", "b")]))),
            vec!["a", "b"]
        );
        assert_eq!(
            ids(filter(items.clone(), &p(&[("router:external", "True")]))),
            vec!["a"]
        );
        assert_eq!(
            ids(filter(
                items.clone(),
                &p(&[("fixed_ips", "ip_address=10.0.0.5")])
            )),
            vec!["a"]
        );
        assert!(filter(items.clone(), &p(&[("name", "z")])).is_empty());
        // Paging and unknown fields are not filters.
        assert_eq!(filter(items, &p(&[("limit", "1"), ("nope", "1")])).len(), 2);
    }
}
