//! `GET /v2/images`'s query: filters (`name`, `status`, `visibility`,
//! `owner`, `disk_format`, ... and any other key as a property filter, as
//! Glance treats unknown keys), sorting (`sort_key`/`sort_dir`, or
//! `sort=key:dir,...`) and pages (`limit`, `marker`, with a `next` link).
//! Applied to the rendered images, so a filter means what the client
//! sees.

use crate::http::error::ApiError;
use serde_json::Value;
use std::cmp::Ordering;

/// The most images in one page (Glance's `api_limit_max` default).
pub const MAX_LIMIT: usize = 1000;

/// Keys that are not filters on an image's fields.
const NOT_FILTERS: &[&str] = &[
    "limit",
    "marker",
    "sort_key",
    "sort_dir",
    "sort",
    "member_status",
];

/// Keys sortable, as Glance allows.
const SORT_KEYS: &[&str] = &[
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
    "visibility",
    "owner",
    "virtual_size",
    "min_disk",
    "min_ram",
];

/// A parsed list query.
#[derive(Debug, Default)]
pub struct ListQuery {
    filters: Vec<(String, String)>,
    sort: Vec<(String, bool)>,
    limit: Option<usize>,
    marker: Option<String>,
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::bad_request(m)
}

impl ListQuery {
    /// Parses the query's pairs (repeated keys allowed).
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut q = ListQuery::default();
        let mut keys: Vec<String> = Vec::new();
        let mut dirs: Vec<bool> = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "limit" => {
                    let n: usize = v
                        .parse()
                        .map_err(|_| bad(format!("limit param must be an integer: {v}")))?;
                    q.limit = Some(n.min(MAX_LIMIT));
                }
                "marker" => q.marker = Some(v.clone()),
                "sort_key" => keys.push(v.clone()),
                "sort_dir" => dirs.push(parse_dir(v)?),
                "sort" => {
                    for part in v.split(',').filter(|p| !p.is_empty()) {
                        let (key, dir) = part.split_once(':').unwrap_or((part, "desc"));
                        q.sort.push((sort_key(key.trim())?, parse_dir(dir.trim())?));
                    }
                }
                "member_status" => {}
                "visibility" if v == "all" => {}
                _ if NOT_FILTERS.contains(&k.as_str()) => {}
                _ => q.filters.push((k.clone(), v.clone())),
            }
        }
        for (i, key) in keys.iter().enumerate() {
            let desc = dirs.get(i).or(dirs.first()).copied().unwrap_or(true);
            q.sort.push((sort_key(key)?, desc));
        }
        if q.sort.is_empty() {
            // Glance's default: newest first.
            q.sort.push(("created_at".into(), true));
        }
        // A stable order between equal keys.
        q.sort.push(("id".into(), true));
        Ok(q)
    }

    /// The page of `images` (rendered) the query asks for, and whether
    /// more follow.
    pub fn apply(&self, mut images: Vec<Value>) -> Result<(Vec<Value>, bool), ApiError> {
        images.retain(|i| self.matches(i));
        images.sort_by(|a, b| self.order(a, b));
        let start = match &self.marker {
            None => 0,
            Some(m) => {
                let at = images
                    .iter()
                    .position(|i| i["id"] == m.as_str())
                    .ok_or_else(|| bad(format!("marker {m} not found")))?;
                at + 1
            }
        };
        let rest: Vec<Value> = images.into_iter().skip(start).collect();
        let limit = self.limit.unwrap_or(MAX_LIMIT);
        let more = rest.len() > limit;
        Ok((rest.into_iter().take(limit).collect(), more))
    }

    /// The query string of the next page after `last_id`.
    pub fn next_query(&self, last_id: &str, pairs: &[(String, String)]) -> String {
        let mut out = url_encode_pairs(
            pairs
                .iter()
                .filter(|(k, _)| k != "marker")
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&url_encode_pairs([("marker", last_id)].into_iter()));
        out
    }

    fn matches(&self, image: &Value) -> bool {
        self.filters.iter().all(|(k, v)| {
            let field = &image[k.as_str()];
            match (k.as_str(), field) {
                // `in:a,b` lists alternatives (Glance's operator for name, status, ...).
                (_, Value::String(s)) if v.starts_with("in:") => {
                    v[3..].split(',').any(|alt| alt == s)
                }
                (_, Value::String(s)) => s == v,
                (_, Value::Bool(b)) => v.eq_ignore_ascii_case(&b.to_string()),
                (_, Value::Number(n)) => n.to_string() == *v,
                _ => false,
            }
        })
    }

    fn order(&self, a: &Value, b: &Value) -> Ordering {
        for (key, desc) in &self.sort {
            let o = compare(&a[key.as_str()], &b[key.as_str()]);
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

fn parse_dir(s: &str) -> Result<bool, ApiError> {
    match s {
        "asc" => Ok(false),
        "desc" => Ok(true),
        other => Err(bad(format!("Invalid sort direction: {other}"))),
    }
}

fn sort_key(s: &str) -> Result<String, ApiError> {
    if SORT_KEYS.contains(&s) {
        Ok(s.to_owned())
    } else {
        Err(bad(format!("Invalid sort key: {s}")))
    }
}

/// `k=v&k2=v2`, percent-encoded.
fn url_encode_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn images() -> Vec<Value> {
        vec![
            json!({"id": "a", "name": "x", "status": "active", "visibility": "private", "created_at": "1", "size": 5}),
            json!({"id": "b", "name": "y", "status": "queued", "visibility": "public", "created_at": "2", "size": null}),
            json!({"id": "c", "name": "x", "status": "active", "visibility": "public", "created_at": "3", "size": 7}),
        ]
    }

    fn ids(v: &[Value]) -> Vec<&str> {
        v.iter().map(|i| i["id"].as_str().unwrap()).collect()
    }

    #[test]
    fn filters_sorts_and_pages() {
        let q = ListQuery::parse(&pairs(&[("name", "x")])).unwrap();
        let (page, more) = q.apply(images()).unwrap();
        assert_eq!(ids(&page), ["c", "a"]); // newest first
        assert!(!more);
        let q =
            ListQuery::parse(&pairs(&[("visibility", "public"), ("sort", "name:asc")])).unwrap();
        assert_eq!(ids(&q.apply(images()).unwrap().0), ["c", "b"]);
        let q = ListQuery::parse(&pairs(&[("visibility", "all")])).unwrap();
        assert_eq!(q.apply(images()).unwrap().0.len(), 3);
        let q = ListQuery::parse(&pairs(&[
            ("limit", "2"),
            ("sort_key", "size"),
            ("sort_dir", "asc"),
        ]))
        .unwrap();
        let (page, more) = q.apply(images()).unwrap();
        assert_eq!(ids(&page), ["b", "a"]);
        assert!(more);
        let q = ListQuery::parse(&pairs(&[
            ("limit", "2"),
            ("marker", "a"),
            ("sort_key", "size"),
            ("sort_dir", "asc"),
        ]))
        .unwrap();
        assert_eq!(ids(&q.apply(images()).unwrap().0), ["c"]);
        let q = ListQuery::parse(&pairs(&[("status", "in:queued,saving")])).unwrap();
        assert_eq!(ids(&q.apply(images()).unwrap().0), ["b"]);
    }

    #[test]
    fn bad_queries_are_refused() {
        assert!(ListQuery::parse(&pairs(&[("limit", "x")])).is_err());
        assert!(ListQuery::parse(&pairs(&[("sort_key", "password")])).is_err());
        assert!(ListQuery::parse(&pairs(&[("sort_dir", "up")])).is_err());
        let q = ListQuery::parse(&pairs(&[("marker", "zz")])).unwrap();
        assert!(q.apply(images()).is_err());
    }

    #[test]
    fn the_next_query_keeps_filters_and_sets_the_marker() {
        let p = pairs(&[("name", "a b"), ("marker", "old"), ("limit", "1")]);
        let q = ListQuery::parse(&p).unwrap();
        assert_eq!(q.next_query("id1", &p), "name=a%20b&limit=1&marker=id1");
    }
}
