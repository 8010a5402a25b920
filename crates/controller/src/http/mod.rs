//! The controller's HTTP API: the public `/v1` API and the agent protocol.

mod agents;
mod audit;
pub mod audit_recorder;
pub mod console;
pub mod error;
pub mod extract;
mod flavors;
mod floating_ips;
pub mod health;
mod hosts;
mod images;
mod keypairs;
mod moves;
mod networks;
mod openapi;
mod quotas;
pub mod report_memo;
mod security_groups;
mod server_groups;
mod server_terms;
pub(crate) mod servers;
pub mod timeouts;
mod usage_records;
pub(crate) mod users;
pub mod wakeups;

use crate::store::Store;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use axum::Router;
use error::ApiError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Largest JSON request body accepted.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// Shared state of every request handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Where uploaded image files live.
    pub images_dir: PathBuf,
    /// The cluster CA, this controller's certificate, and the mutual-TLS
    /// clients for calls to agents (console logs, VNC).
    pub cluster: Arc<crate::cluster::Cluster>,
    /// Raised whenever desired state changes anywhere (console sessions
    /// watch it to notice their server going away).
    pub revision: Arc<watch::Sender<u64>>,
    /// What wakes agents' long polls: their own host's changes or everyone's.
    pub wakeups: Arc<wakeups::HostWakeups>,
    /// Each host's last report applied (see `report_memo`).
    pub reports: Arc<report_memo::ReportMemo>,
    pub token_ttl: Duration,
    pub max_image_bytes: u64,
    /// The zone server names live in: `<server>.<project>.<zone>`.
    pub dns_zone: Arc<str>,
    /// Images with an upload in progress; see `images::UploadClaim`.
    pub uploads: Arc<std::sync::Mutex<std::collections::HashSet<nubis_api::ImageId>>>,
    pub rental: Arc<crate::rental::RentalSettings>,
    /// "Now" for rental terms (leases, periods).
    pub clock: crate::clock::Clock,
    /// The graphical console: settings and this controller's public URL
    /// (console links, the only `Origin` allowed). Tokens are in the store.
    pub console: Arc<console::ConsoleSettings>,
    pub public_url: Arc<console::PublicUrl>,
    /// How long requests, uploads and long polls may take.
    pub timeouts: timeouts::Timeouts,
    /// What `/readyz` requires.
    pub readiness: health::Readiness,
    /// The states of the process's supervised background tasks, for `/readyz`.
    pub tasks: nubis_supervise::TaskBoard,
    /// Whether `POST /v1/users` is open to anyone.
    pub registration: crate::accounts::Registration,
    /// Failed logins per user name and client address.
    pub login_throttle: Arc<crate::login_throttle::LoginThrottle>,
    /// The bound on concurrent password hashing.
    pub password_work: crate::auth::PasswordWork,
    /// The audit trail's writer, and how long records are kept.
    pub audit: crate::audit::AuditLog,
    pub audit_settings: Arc<crate::audit::AuditSettings>,
    /// Overcommit ratios, weigher, heartbeat timeout.
    pub placement: crate::scheduler::PlacementSettings,
}

impl AppState {
    /// Wakes agents waiting for a change of desired state: those of this
    /// controller at once, and those of other controllers on the same
    /// PostgreSQL database through `peer_changes`.
    pub fn desired_state_changed(&self) {
        self.wake_long_polls();
        self.announce_to_peers();
    }

    /// Like [`Self::desired_state_changed`] for a change that concerns only
    /// the desired state of `hosts` (e.g. a server's power on its host):
    /// only their long polls are woken here. Other controllers are told as
    /// for any change (their polls recompute, and answer only if changed).
    pub fn desired_state_changed_on(&self, hosts: impl IntoIterator<Item = nubis_api::HostId>) {
        self.revision.send_modify(|r| *r += 1);
        self.wakeups.wake(hosts);
        self.announce_to_peers();
    }

    /// A server of `project` came or is going (committed to the store):
    /// wakes the hosts holding the project's servers, the only ones whose
    /// desired state names them. A create on a cloud of thousands of hosts
    /// must not make every agent recompute its state.
    pub async fn project_servers_changed(&self, project: nubis_api::ProjectId) {
        match self.store.project_hosts(project).await {
            Ok(hosts) => self.desired_state_changed_on(hosts),
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell which hosts a change concerns: waking all");
                self.desired_state_changed();
            }
        }
    }

    /// Tells controllers on the same PostgreSQL database (see `peer_changes`).
    fn announce_to_peers(&self) {
        if self.store.backend() == crate::store::Backend::Postgres {
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.announce_change().await {
                    // The others still see it at their long polls' timeout.
                    tracing::warn!(error = %e, "cannot announce a change to other controllers");
                }
            });
        }
    }

    /// Wakes this controller's long-polling agents (and console sessions
    /// watching their server) without telling other controllers.
    pub fn wake_long_polls(&self) {
        self.revision.send_modify(|r| *r += 1);
        self.wakeups.wake_all();
    }
}

/// The whole API router. Every request is bounded in time (see
/// [`timeouts`]): ordinary ones by `timeouts.request`, the agents' long poll
/// by `timeouts.long_poll` plus that, and an image upload by the idle
/// timeout between its bytes. A console websocket's handshake is bounded;
/// its session, which runs after the response, is not.
pub fn router(state: AppState) -> Router {
    let request_limit = state.timeouts.request;
    let bounded = Router::new()
        .route("/users", post(users::register))
        .route("/registration", get(users::registration))
        .route("/tokens", post(users::login))
        .route("/tokens/current", axum::routing::delete(users::logout))
        .route("/users/me", get(users::me))
        .route("/flavors", get(flavors::list).post(flavors::create))
        .route("/images", get(images::list).post(images::create))
        .route("/images/{id}", get(images::show).delete(images::delete))
        .route("/servers", get(servers::list).post(servers::create))
        .route(
            "/servers/{id}",
            get(servers::show)
                .patch(server_terms::update)
                .delete(servers::delete),
        )
        .route("/servers/{id}/lease", post(server_terms::renew_lease))
        .route("/servers/{id}/usage", get(server_terms::server_usage))
        .route("/servers/{id}/events", get(server_terms::server_events))
        .route("/events", get(server_terms::project_events))
        .route("/projects/{id}/usage", get(server_terms::project_usage))
        .route("/servers/{id}/start", post(servers::start))
        .route("/servers/{id}/stop", post(servers::stop))
        .route("/servers/{id}/reboot", post(servers::reboot))
        .route("/servers/{id}/eject", post(servers::eject))
        .route("/servers/{id}/migrate", post(moves::migrate))
        .route("/servers/{id}/live-migrate", post(moves::live_migrate))
        .route("/servers/{id}/migrations", get(moves::list))
        .route("/hosts/{id}/evacuate", post(moves::evacuate))
        .route("/servers/{id}/console-log", get(servers::console_log))
        .route("/servers/{id}/console", post(console::create))
        .route("/console/websocket", get(console::websocket))
        .route("/networks", get(networks::list).post(networks::create))
        .route(
            "/networks/{id}",
            get(networks::show).delete(networks::delete),
        )
        .route("/keypairs", get(keypairs::list).post(keypairs::create))
        .route(
            "/keypairs/{id}",
            get(keypairs::show).delete(keypairs::delete),
        )
        .route(
            "/floating-ip-pools",
            get(floating_ips::list_pools).post(floating_ips::create_pool),
        )
        .route(
            "/floating-ips",
            get(floating_ips::list).post(floating_ips::allocate),
        )
        .route(
            "/floating-ips/{id}",
            get(floating_ips::show)
                .patch(floating_ips::update)
                .delete(floating_ips::release),
        )
        .route(
            "/security-groups",
            get(security_groups::list).post(security_groups::create),
        )
        .route(
            "/security-groups/{id}",
            get(security_groups::show).delete(security_groups::delete),
        )
        .route(
            "/security-groups/{id}/rules",
            post(security_groups::add_rule),
        )
        .route(
            "/security-groups/{id}/rules/{rule}",
            axum::routing::delete(security_groups::delete_rule),
        )
        .route(
            "/projects/{id}/quotas",
            get(quotas::show).put(quotas::update),
        )
        .route("/projects/{id}/usage-records", get(usage_records::list))
        .route("/hosts", get(hosts::list))
        .route("/hosts/{id}", get(hosts::show))
        .route("/hosts/{id}/disable", post(hosts::disable))
        .route("/hosts/{id}/enable", post(hosts::enable))
        .route("/hosts/{id}/drain", post(hosts::drain))
        .route(
            "/server-groups",
            get(server_groups::list).post(server_groups::create),
        )
        .route(
            "/server-groups/{id}",
            get(server_groups::show).delete(server_groups::delete),
        )
        .route("/audit", get(audit::list))
        .route("/openapi.json", get(openapi::serve))
        .route_layer(from_fn_with_state(request_limit, timeouts::within));
    // Bounded by the idle timeout between bytes inside the handler.
    let upload = Router::new().route(
        "/images/{id}/file",
        put(images::upload).layer(DefaultBodyLimit::disable()),
    );
    // Outside `/v1`, its authentication and its OpenAPI document.
    let health = health::routes().route_layer(from_fn_with_state(request_limit, timeouts::within));
    Router::new()
        .nest("/v1", bounded.merge(upload))
        .merge(health)
        // OpenStack's Identity and Compute APIs over the same store and rules.
        .merge(crate::openstack::routes(request_limit))
        .merge(console::pages(&state.console.novnc_dir))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API path")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this path",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        // Every state-changing call, answered or refused, into the audit trail.
        .layer(from_fn_with_state(state.clone(), audit_recorder::record))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// The agent protocol (`/v1/agent/...`), served on its own mutual-TLS
/// listener (`--cluster-listen`), never on the public API's: every call but
/// the join must come with a host certificate of the cluster CA (see
/// `extract::AgentCaller`). Bounded in time like the API.
pub fn agent_router(state: AppState) -> Router {
    let request_limit = state.timeouts.request;
    let bounded = Router::new()
        .route("/agent/join", post(agents::join))
        .route("/agent/hosts", post(agents::register))
        .route("/agent/hosts/{id}/report", put(agents::report))
        // Only the response head is bounded: the file itself streams.
        .route("/agent/images/{id}/file", get(agents::image_file))
        .route("/agent/images", get(images::agent_catalog))
        .route_layer(from_fn_with_state(request_limit, timeouts::within));
    let long_poll = Router::new()
        .route("/agent/hosts/{id}/desired", get(agents::desired))
        .route_layer(from_fn_with_state(
            state.timeouts.long_poll + request_limit,
            timeouts::within,
        ));
    Router::new()
        .nest("/v1", bounded.merge(long_poll))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such agent protocol path",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        // Joins and refused calls into the audit trail, like the API's.
        .layer(from_fn_with_state(state.clone(), audit_recorder::record))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

pub use crate::scheduler::HEARTBEAT_TIMEOUT;
pub use openapi::ApiDoc;
