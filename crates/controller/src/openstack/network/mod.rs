//! Network v2.0 (Neutron) under `/network`, over Nubis's networks,
//! security groups and floating IPs: a Nubis network shows as one network
//! plus one subnet (same id), floating-IP pools as external networks,
//! server NICs as ports. See docs/openstack.md, "Network".

pub mod body;
pub mod discovery;
pub mod error;
pub mod floating_ips;
pub mod networks;
pub mod ports;
pub mod query;
pub mod quotas;
pub mod security_groups;
pub mod subnets;

use crate::http::AppState;
use axum::extract::{OriginalUri, Path};
use axum::http::Method;
use axum::routing::{any, get, MethodRouter};
use axum::Router;
use error::NetworkError;

/// The caller of a Network API request (`X-Auth-Token`).
pub use crate::openstack::auth::OsCaller as Caller;

/// Neutron collections that exist but are not served (answered 501).
const NETWORK_KNOWN: &[&str] = &[
    "routers",
    "agents",
    "availability_zones",
    "network-ip-availabilities",
    "subnetpools",
    "address-scopes",
    "qos",
    "rbac-policies",
    "trunks",
    "segments",
    "metering",
    "service-providers",
    "auto-allocated-topology",
    "network_segment_ranges",
    "address-groups",
    "local_ips",
    "ndp-proxies",
    "flavors",
    "log",
    "fw",
    "lbaas",
    "bgpvpn",
    "floatingip_pools",
];

/// The first segment of a path below the versioned root.
fn collection(rest: &str) -> &str {
    rest.trim_start_matches('/').split('/').next().unwrap_or("")
}

async fn unknown(Path(rest): Path<String>) -> NetworkError {
    match rest.strip_prefix("v2.0/") {
        Some(below) if NETWORK_KNOWN.contains(&collection(below)) => NetworkError(
            crate::openstack::errors::not_implemented(&format!("/network/{rest}")),
        ),
        _ => NetworkError(crate::openstack::errors::unknown_path()),
    }
}

async fn bad_method() -> NetworkError {
    NetworkError(crate::openstack::errors::method_not_allowed())
}

/// 501 for a known operation Nubis does not offer.
pub async fn not_implemented(method: Method, uri: OriginalUri) -> NetworkError {
    NetworkError(crate::openstack::errors::not_implemented(&format!(
        "{method} {}",
        uri.path()
    )))
}

fn route(r: MethodRouter<AppState>) -> MethodRouter<AppState> {
    r.fallback(bad_method)
}

/// Network v2.0 under `/network`.
pub fn routes() -> Router<AppState> {
    let versions = || route(get(discovery::versions));
    let v2 = || route(get(discovery::resources));
    let r = |path: &str| format!("/network/v2.0{path}");
    Router::new()
        .route("/network", versions())
        .route("/network/", versions())
        .route("/network/v2.0", v2())
        .route("/network/v2.0/", v2())
        .route(&r("/extensions"), route(get(discovery::list)))
        .route(&r("/extensions/{alias}"), route(get(discovery::show)))
        .route(
            &r("/networks"),
            route(get(networks::list).post(networks::create)),
        )
        .route(
            &r("/networks/{id}"),
            route(
                get(networks::show)
                    .put(not_implemented)
                    .delete(networks::delete),
            ),
        )
        .route(
            &r("/subnets"),
            route(get(subnets::list).post(subnets::create)),
        )
        .route(
            &r("/subnets/{id}"),
            route(
                get(subnets::show)
                    .put(not_implemented)
                    .delete(subnets::delete),
            ),
        )
        .route(&r("/ports"), route(get(ports::list).post(ports::create)))
        .route(
            &r("/ports/{id}"),
            route(
                get(ports::show)
                    .put(not_implemented)
                    .delete(not_implemented),
            ),
        )
        .route(
            &r("/security-groups"),
            route(get(security_groups::list).post(security_groups::create)),
        )
        .route(
            &r("/security-groups/{id}"),
            route(
                get(security_groups::show)
                    .put(not_implemented)
                    .delete(security_groups::delete),
            ),
        )
        .route(
            &r("/security-group-rules"),
            route(get(security_groups::list_rules).post(security_groups::create_rule)),
        )
        .route(
            &r("/security-group-rules/{id}"),
            route(get(security_groups::show_rule).delete(security_groups::delete_rule)),
        )
        .route(
            &r("/floatingips"),
            route(get(floating_ips::list).post(floating_ips::create)),
        )
        .route(
            &r("/floatingips/{id}"),
            route(
                get(floating_ips::show)
                    .put(floating_ips::update)
                    .delete(floating_ips::delete),
            ),
        )
        .route(
            &r("/quotas/{project}"),
            route(
                get(quotas::show)
                    .put(not_implemented)
                    .delete(not_implemented),
            ),
        )
        .route(&r("/quotas/{project}/details"), route(get(quotas::details)))
        .route(
            &r("/quotas/{project}/default"),
            route(get(quotas::defaults)),
        )
        .route(&r("/quotas"), route(get(not_implemented)))
        .route("/network/{*rest}", any(unknown))
}

/// Fields every Neutron resource has: owner and standard attributes.
pub fn standard(
    project: &nubis_api::ProjectId,
    created_at: chrono::DateTime<chrono::Utc>,
) -> serde_json::Map<String, serde_json::Value> {
    let when = created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut m = serde_json::Map::new();
    m.insert("tenant_id".into(), project.to_string().into());
    m.insert("project_id".into(), project.to_string().into());
    m.insert("created_at".into(), when.clone().into());
    m.insert("updated_at".into(), when.into());
    m.insert("revision_number".into(), 0.into());
    m.insert("description".into(), "".into());
    m.insert("tags".into(), serde_json::Value::Array(vec![]));
    m
}

/// A typed id from a path, or the 404 Neutron gives for an unknown one.
pub fn parse_id<T: std::str::FromStr>(kind: &'static str, id: &str) -> Result<T, NetworkError> {
    id.parse().map_err(|_| error::not_found(kind, id))
}
