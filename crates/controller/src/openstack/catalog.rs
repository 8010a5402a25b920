//! The service catalog in every scoped token: the OpenStack services this
//! controller serves itself, under its public URL. Only what exists is
//! listed: a client that finds a service in the catalog calls it.

use crate::http::AppState;
use axum::http::HeaderMap;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The region every endpoint is in (clients' usual default).
pub const REGION: &str = "RegionOne";

/// A service served under `path` of the public URL.
#[derive(Clone, Copy, Debug)]
pub struct Service {
    /// The catalog type clients look up (`identity`, `compute`, ...).
    pub kind: &'static str,
    /// The name OpenStack gives it (`keystone`, `nova`, ...).
    pub name: &'static str,
    /// The endpoint's path below the public URL.
    pub path: &'static str,
}

/// Identity v3 (the endpoint is unversioned, as devstack's: clients discover v3).
pub const IDENTITY: Service = Service {
    kind: "identity",
    name: "keystone",
    path: "/identity",
};

/// Compute v2.1.
pub const COMPUTE: Service = Service {
    kind: "compute",
    name: "nova",
    path: "/compute/v2.1",
};

/// Image v2 (unversioned, as devstack's: clients discover v2).
pub const IMAGE: Service = Service {
    kind: "image",
    name: "glance",
    path: "/image",
};

/// Network v2.0 (the endpoint is unversioned, as devstack's).
pub const NETWORK: Service = Service {
    kind: "network",
    name: "neutron",
    path: "/network",
};

/// Every service served, in catalog order.
pub const SERVICES: [Service; 4] = [IDENTITY, COMPUTE, IMAGE, NETWORK];

/// The URL clients reach this controller at: `--public-url` (or the
/// listening address it defaults to), unless that is an unspecified
/// address (`0.0.0.0`, `[::]`), which no client can use: then the scheme
/// with the request's `Host`.
pub fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    let base = &state.public_url.base;
    let unspecified = reqwest::Url::parse(base)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.trim_matches(['[', ']']).to_owned();
            host.parse::<std::net::IpAddr>().ok()
        })
        .is_some_and(|ip| ip.is_unspecified());
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| is_plain_host(h));
    match (unspecified, host) {
        (true, Some(host)) => {
            let scheme = base.split_once("://").map_or("http", |(s, _)| s);
            format!("{scheme}://{host}")
        }
        _ => base.clone(),
    }
}

/// A `Host` header that is only a host and port (no path, no user info),
/// so it cannot bend the URLs built from it.
fn is_plain_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// A stable id (32 hex digits) for a catalog entry, so ids do not change
/// between tokens.
fn stable_id(what: &str) -> String {
    hex::encode(&Sha256::digest(what.as_bytes())[..16])
}

/// The catalog of a token, its URLs under `base`.
pub fn catalog(base: &str) -> Value {
    let entries: Vec<Value> = SERVICES
        .iter()
        .map(|s| {
            json!({
                "id": stable_id(&format!("service:{}", s.kind)),
                "type": s.kind,
                "name": s.name,
                "endpoints": [{
                    "id": stable_id(&format!("endpoint:{}:public", s.kind)),
                    "interface": "public",
                    "region": REGION,
                    "region_id": REGION,
                    "url": format!("{base}{}", s.path),
                }],
            })
        })
        .collect();
    Value::Array(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_lists_each_service_once_under_the_base() {
        let c = catalog("http://cloud.example:8780");
        let entries = c.as_array().unwrap();
        assert_eq!(entries.len(), SERVICES.len());
        let compute = entries.iter().find(|e| e["type"] == "compute").unwrap();
        assert_eq!(
            compute["endpoints"][0]["url"],
            "http://cloud.example:8780/compute/v2.1"
        );
        assert_eq!(compute["endpoints"][0]["interface"], "public");
        // Stable ids: the same in every token.
        assert_eq!(catalog("http://x")[0]["id"], catalog("http://y")[0]["id"]);
    }

    #[test]
    fn only_plain_hosts_are_taken_from_the_request() {
        assert!(is_plain_host("10.0.0.1:8780"));
        assert!(is_plain_host("[::1]:8780"));
        assert!(!is_plain_host("evil.example/path"));
        assert!(!is_plain_host("user@host"));
        assert!(!is_plain_host(""));
    }
}
