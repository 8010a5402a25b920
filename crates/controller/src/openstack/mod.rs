//! The OpenStack APIs, served by the same process, store and rules as
//! `/v1` (devstack's layout, on the API's listener): Identity v3 under
//! `/identity`, Compute v2.1 under `/compute/v2.1`. Handlers stay thin:
//! they translate OpenStack's wire format to the domain and store calls
//! `/v1` makes, and errors to OpenStack's shapes (`errors`). Unknown paths
//! answer 404, known operations not served yet 501. See docs/openstack.md.

pub mod auth;
pub mod catalog;
pub mod compute;
pub mod directory;
pub mod discovery;
pub mod errors;
pub mod identity;
pub mod image;
pub mod network;
pub mod token_body;

use crate::http::{timeouts, AppState};
use axum::extract::{OriginalUri, Path};
use axum::http::Method;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{any, get, MethodRouter};
use axum::Router;
use compute::{flavors, keypairs, quotas, server_actions, server_groups, servers};
use errors::{not_implemented, ComputeError, IdentityError};
use std::time::Duration;

/// Keystone collections that exist but are not served (answered 501).
const IDENTITY_KNOWN: &[&str] = &[
    "auth",
    "projects",
    "users",
    "domains",
    "roles",
    "role_assignments",
    "role_inferences",
    "services",
    "endpoints",
    "regions",
    "groups",
    "credentials",
    "policies",
    "limits",
    "registered_limits",
    "system",
    "OS-FEDERATION",
    "OS-TRUST",
    "OS-OAUTH1",
    "OS-EP-FILTER",
    "OS-INHERIT",
    "OS-REVOKE",
    "OS-SIMPLE-CERT",
    "OS-OAUTH2",
];

/// Nova collections that exist but are not served yet (answered 501).
const COMPUTE_KNOWN: &[&str] = &[
    "servers",
    "flavors",
    "os-keypairs",
    "os-quota-sets",
    "os-quota-class-sets",
    "os-server-groups",
    "os-hypervisors",
    "os-availability-zone",
    "os-services",
    "os-aggregates",
    "os-migrations",
    "os-simple-tenant-usage",
    "os-instance-actions",
    "os-volumes",
    "os-volumes_boot",
    "os-snapshots",
    "os-floating-ips",
    "os-floating-ip-pools",
    "os-security-groups",
    "os-security-group-rules",
    "os-networks",
    "os-tenant-networks",
    "os-server-external-events",
    "os-assisted-volume-snapshots",
    "images",
    "extensions",
];

/// Whether `rest` (below the service's versioned root) starts with a known
/// collection.
fn is_known(rest: &str, known: &[&str]) -> bool {
    let first = rest.trim_start_matches('/').split('/').next().unwrap_or("");
    known.contains(&first)
}

async fn identity_unknown(Path(rest): Path<String>) -> IdentityError {
    match rest.strip_prefix("v3/") {
        Some(below) if is_known(below, IDENTITY_KNOWN) => {
            IdentityError(not_implemented(&format!("/identity/{rest}")))
        }
        _ => IdentityError(errors::unknown_path()),
    }
}

async fn compute_unknown(Path(rest): Path<String>) -> ComputeError {
    match rest.strip_prefix("v2.1/") {
        Some(below) if is_known(below, COMPUTE_KNOWN) => {
            ComputeError(not_implemented(&format!("/compute/{rest}")))
        }
        _ => ComputeError(errors::unknown_path()),
    }
}

async fn identity_bad_method() -> IdentityError {
    IdentityError(errors::method_not_allowed())
}

async fn compute_bad_method() -> ComputeError {
    ComputeError(errors::method_not_allowed())
}

/// What a request is, for messages: `DELETE /compute/v2.1/flavors/x`.
fn operation(method: &Method, uri: &OriginalUri) -> String {
    format!("{method} {}", uri.path())
}

async fn identity_not_implemented(method: Method, uri: OriginalUri) -> IdentityError {
    IdentityError(not_implemented(&operation(&method, &uri)))
}

async fn compute_not_implemented(method: Method, uri: OriginalUri) -> ComputeError {
    ComputeError(not_implemented(&operation(&method, &uri)))
}

fn identity_route(r: MethodRouter<AppState>) -> MethodRouter<AppState> {
    r.fallback(identity_bad_method)
}

fn compute_route(r: MethodRouter<AppState>) -> MethodRouter<AppState> {
    r.fallback(compute_bad_method)
}

/// Identity v3 under `/identity`.
fn identity_routes() -> Router<AppState> {
    let versions = || identity_route(get(discovery::identity_versions));
    let v3 = || identity_route(get(discovery::identity_version));
    Router::new()
        .route("/identity", versions())
        .route("/identity/", versions())
        .route("/identity/v3", v3())
        .route("/identity/v3/", v3())
        .route(
            "/identity/v3/auth/tokens",
            identity_route(
                get(identity::validate)
                    .post(identity::issue)
                    .delete(identity::revoke),
            ),
        )
        .route(
            "/identity/v3/auth/projects",
            identity_route(get(directory::auth_projects)),
        )
        .route(
            "/identity/v3/auth/catalog",
            identity_route(get(directory::auth_catalog)),
        )
        .route(
            "/identity/v3/projects",
            identity_route(get(directory::list_projects).post(identity_not_implemented)),
        )
        .route(
            "/identity/v3/projects/{id}",
            identity_route(
                get(directory::show_project)
                    .patch(identity_not_implemented)
                    .delete(identity_not_implemented),
            ),
        )
        .route(
            "/identity/v3/users",
            identity_route(get(directory::list_users).post(identity_not_implemented)),
        )
        .route(
            "/identity/v3/users/{id}",
            identity_route(
                get(directory::show_user)
                    .patch(identity_not_implemented)
                    .delete(identity_not_implemented),
            ),
        )
        .route(
            "/identity/v3/users/{id}/projects",
            identity_route(get(directory::user_projects)),
        )
        .route("/identity/{*rest}", any(identity_unknown))
}

/// Compute v2.1 under `/compute`.
fn compute_routes() -> Router<AppState> {
    let versions = || compute_route(get(discovery::compute_versions));
    let v21 = || compute_route(get(discovery::compute_version));
    let r = |path: &str| format!("/compute/v2.1{path}");
    Router::new()
        .route("/compute", versions())
        .route("/compute/", versions())
        .route("/compute/v2.1", v21())
        .route("/compute/v2.1/", v21())
        .route(
            &r("/flavors"),
            compute_route(get(flavors::list).post(flavors::create)),
        )
        .route(
            &r("/flavors/detail"),
            compute_route(get(flavors::list_detail)),
        )
        .route(
            &r("/flavors/{id}"),
            compute_route(
                get(flavors::show)
                    .put(compute_not_implemented)
                    .delete(compute_not_implemented),
            ),
        )
        .route(
            &r("/flavors/{id}/os-extra_specs"),
            compute_route(get(flavors::extra_specs).post(compute_not_implemented)),
        )
        .route(
            &r("/os-keypairs"),
            compute_route(get(keypairs::list).post(keypairs::create)),
        )
        .route(
            &r("/os-keypairs/{name}"),
            compute_route(get(keypairs::show).delete(keypairs::delete)),
        )
        .route(&r("/limits"), compute_route(get(quotas::limits)))
        .route(
            &r("/os-quota-sets/{project}"),
            compute_route(
                get(quotas::show)
                    .put(quotas::update)
                    .delete(quotas::not_implemented),
            ),
        )
        .route(
            &r("/os-quota-sets/{project}/detail"),
            compute_route(get(quotas::detail)),
        )
        .route(
            &r("/os-quota-sets/{project}/defaults"),
            compute_route(get(quotas::defaults)),
        )
        .merge(server_routes())
        .route("/compute/{*rest}", any(compute_unknown))
        .layer(from_fn(compute::microversion::negotiate))
}

/// Nova's servers, their actions and server groups (`compute/servers*.rs`).
fn server_routes() -> Router<AppState> {
    let r = |path: &str| format!("/compute/v2.1{path}");
    Router::new()
        .route(
            &r("/servers"),
            compute_route(get(servers::list).post(servers::create)),
        )
        .route(
            &r("/servers/detail"),
            compute_route(get(servers::list_detail)),
        )
        .route(
            &r("/servers/{id}"),
            compute_route(
                get(servers::show)
                    .put(compute_not_implemented)
                    .delete(servers::delete),
            ),
        )
        .route(
            &r("/servers/{id}/action"),
            compute_route(axum::routing::post(server_actions::action)),
        )
        .route(
            &r("/servers/{id}/ips"),
            compute_route(get(server_actions::ips)),
        )
        .route(
            &r("/servers/{id}/ips/{network}"),
            compute_route(get(server_actions::ips_of_network)),
        )
        .route(
            &r("/os-server-groups"),
            compute_route(get(server_groups::list).post(server_groups::create)),
        )
        .route(
            &r("/os-server-groups/{id}"),
            compute_route(get(server_groups::show).delete(server_groups::delete)),
        )
}

/// Every OpenStack route, each bounded in time like `/v1`'s.
pub fn routes(request_limit: Duration) -> Router<AppState> {
    identity_routes()
        .merge(compute_routes())
        .merge(network::routes())
        .route_layer(from_fn_with_state(request_limit, timeouts::within))
        // Bounded itself: its upload only by the idle time between bytes.
        .merge(image::routes(request_limit))
}
