//! Starting the controller: open the store, seed defaults, serve the API.

use crate::cluster::Cluster;
use crate::http::console::PublicUrl;
use crate::http::{self, AppState};
use crate::store::Store;
use anyhow::Context;
use nubis_supervise::{BackgroundTask, Policy, SharedListener, Supervisor, TaskBoard};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How to run a controller.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub listen: SocketAddr,
    /// `sqlite://...` or `postgres://...`.
    pub database_url: String,
    /// Holds uploaded images and the cluster CA (`ca.crt`, `ca.key`).
    pub data_dir: PathBuf,
    pub token_ttl: Duration,
    pub max_image_bytes: u64,
    /// The DNS zone of server names.
    pub dns_zone: String,
    pub rental: crate::rental::RentalSettings,
    pub clock: crate::clock::Clock,
    /// The graphical console (public URL, token lifetime, noVNC).
    pub console: crate::http::console::ConsoleSettings,
    /// How long requests, uploads and long polls may take.
    pub timeouts: crate::http::timeouts::Timeouts,
    /// What `/readyz` requires.
    pub readiness: crate::http::health::Readiness,
    /// Registration, login throttling, bounded password hashing.
    pub accounts: crate::accounts::AccountSettings,
    /// How long the audit trail keeps records.
    pub audit: crate::audit::AuditSettings,
    /// The operator's tenant address pools (`--tenant-pool`): networks must
    /// lie inside one. Default: `10.64.0.0/10`.
    pub tenant_pools: crate::address_space::TenantPools,
    /// Address of the agent protocol (mutual TLS, host certificates).
    pub cluster_listen: SocketAddr,
    /// Serve the API and portal over HTTPS with this certificate and key
    /// (and mark cookies `Secure`); plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// Overcommit ratios, weigher (spread or pack), heartbeat timeout.
    pub placement: crate::scheduler::PlacementSettings,
    /// `--auto-evacuate SECONDS`: evacuate hosts down that long; `None`:
    /// only `nubis host evacuate` does.
    pub auto_evacuate: Option<Duration>,
}

/// The API's own certificate chain and private key (PEM files).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        nubis_pki::tls::public_server_config(&read(&self.cert)?, &read(&self.key)?)
            .context("--tls-cert/--tls-key")
    }
}

/// A controller ready to serve: its socket listens, and its background
/// tasks (the HTTP server and the terms keeper) wait to be run by a
/// [`Supervisor`] that writes to `board`, where `/readyz` reads them.
pub struct RunningController {
    pub addr: SocketAddr,
    /// Where the agent protocol listens (mutual TLS).
    pub cluster_addr: SocketAddr,
    /// The cluster CA and this controller's certificate.
    pub cluster: Arc<Cluster>,
    /// The API's base URL (`https://` with TLS).
    pub url: String,
    /// The state store (e.g. for join tokens made in-process by `nubis up`).
    pub store: Store,
    pub tasks: Vec<BackgroundTask>,
    pub board: TaskBoard,
}

impl RunningController {
    /// Runs the tasks under a new supervisor (which stops them when dropped).
    pub fn supervise(self, policy: Policy) -> (SocketAddr, Supervisor) {
        let mut supervisor = Supervisor::new(self.board, policy);
        supervisor.spawn_all(self.tasks);
        (self.addr, supervisor)
    }
}

/// Opens the store and binds the socket; the caller runs the tasks.
pub async fn start(config: ControllerConfig) -> anyhow::Result<RunningController> {
    let images_dir = config.data_dir.join("images");
    tokio::fs::create_dir_all(&images_dir)
        .await
        .with_context(|| format!("creating {}", images_dir.display()))?;
    let store = Store::connect(&config.database_url)
        .await
        .with_context(|| "opening the state store".to_string())?
        .with_tenant_pools(config.tenant_pools.clone());
    store.ensure_default_flavors().await?;
    let (revision, _) = watch::channel(1u64);
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let cluster = Arc::new(Cluster::load_or_create(&config.data_dir)?);
    let cluster_listener = TcpListener::bind(config.cluster_listen)
        .await
        .with_context(|| format!("listening on {} (--cluster-listen)", config.cluster_listen))?;
    let cluster_addr = cluster_listener.local_addr()?;
    let public_tls = config
        .tls
        .as_ref()
        .map(TlsFiles::server_config)
        .transpose()?;
    let scheme = if public_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{addr}");
    let public_url = match &config.console.public_url {
        Some(url) => PublicUrl::parse(url).context("--public-url")?,
        None => {
            if addr.ip().is_unspecified() {
                tracing::warn!(%addr, "listening on every address without --public-url: browsers' console connections will be refused until --public-url names the URL they use");
            }
            PublicUrl::parse(&url)?
        }
    };
    let state = AppState {
        store: store.clone(),
        images_dir,
        cluster: cluster.clone(),
        revision: Arc::new(revision),
        wakeups: Default::default(),
        reports: Default::default(),
        token_ttl: config.token_ttl,
        max_image_bytes: config.max_image_bytes,
        dns_zone: config.dns_zone.into(),
        uploads: Default::default(),
        rental: Arc::new(config.rental),
        clock: config.clock,
        console: Arc::new(config.console),
        public_url: Arc::new(public_url),
        timeouts: config.timeouts,
        readiness: config.readiness,
        tasks: TaskBoard::default(),
        registration: config.accounts.registration,
        login_throttle: Arc::new(crate::login_throttle::LoginThrottle::new(
            config.accounts.throttle,
        )),
        password_work: crate::auth::PasswordWork::per_core(config.accounts.password_queue),
        audit: crate::audit::AuditLog::start(store.clone()),
        audit_settings: Arc::new(config.audit),
        placement: config.placement,
    };
    tracing::info!(%addr, %cluster_addr, "controller API and agent protocol listening");
    let board = state.tasks.clone();
    let keeper_state = state.clone();
    let terms_keeper = BackgroundTask::new("terms keeper", move || {
        let state = keeper_state.clone();
        async move {
            crate::terms_keeper::run(state).await;
            Ok(())
        }
    });
    let evacuator = config.auto_evacuate.map(|after| {
        let evacuator_state = state.clone();
        BackgroundTask::new("evacuator", move || {
            let state = evacuator_state.clone();
            async move {
                crate::app::evacuator::run(state, after).await;
                Ok(())
            }
        })
    });
    // On PostgreSQL, other controllers' changes wake this one's long polls.
    let peer_changes = (state.store.backend() == crate::store::Backend::Postgres).then(|| {
        let peer_state = state.clone();
        BackgroundTask::new("peer changes", move || {
            let state = peer_state.clone();
            async move {
                crate::peer_changes::follow(state).await;
                Ok(())
            }
        })
    });
    let store = state.store.clone();
    let agent_app = http::agent_router(state.clone());
    let agent_tls = cluster.agent_protocol_tls()?;
    let cluster_socket = Arc::new(SharedListener::new(cluster_listener)?);
    let agent_protocol = BackgroundTask::new("agent protocol", move || {
        let (socket, app, tls) = (cluster_socket.clone(), agent_app.clone(), agent_tls.clone());
        async move {
            let listener = socket
                .listener()
                .context("reusing the agent protocol socket")?;
            nubis_pki::serve::serve_tls(listener, tls, app)
                .await
                .context("serving the agent protocol")
        }
    });
    // The web portal at `/`, a client of the API router it wraps (`/v1`).
    let app = nubis_portal::router(http::router(state));
    let socket = Arc::new(SharedListener::new(listener)?);
    let api = match public_tls {
        Some(tls) => {
            let app = app.layer(axum::middleware::map_response(secure_cookies));
            BackgroundTask::new("controller API", move || {
                let (socket, app, tls) = (socket.clone(), app.clone(), tls.clone());
                async move {
                    let listener = socket.listener().context("reusing the API socket")?;
                    nubis_pki::serve::serve_tls(listener, tls, app)
                        .await
                        .context("serving the API")
                }
            })
        }
        None => BackgroundTask::new("controller API", move || {
            let (socket, app) = (socket.clone(), app.clone());
            async move {
                let listener = socket.listener().context("reusing the API socket")?;
                // With the client's address (`ConnectInfo`) in every request's
                // extensions (as `serve_tls` does): the audit trail and login
                // throttling use it.
                let app = app.into_make_service_with_connect_info::<SocketAddr>();
                axum::serve(listener, app).await.context("serving the API")
            }
        }),
    };
    Ok(RunningController {
        addr,
        cluster_addr,
        cluster,
        url,
        store,
        tasks: [api, agent_protocol, terms_keeper]
            .into_iter()
            .chain(peer_changes)
            .chain(evacuator)
            .collect(),
        board,
    })
}

/// Over HTTPS every cookie (the portal's session and CSRF cookies) is
/// `Secure`, so a browser never sends it over plain HTTP.
async fn secure_cookies(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    let cookies: Vec<_> = headers
        .get_all(axum::http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            if v.to_ascii_lowercase().contains("; secure") {
                v.to_owned()
            } else {
                format!("{v}; Secure")
            }
        })
        .collect();
    if cookies.is_empty() {
        return response;
    }
    headers.remove(axum::http::header::SET_COOKIE);
    for cookie in cookies {
        if let Ok(value) = axum::http::HeaderValue::from_str(&cookie) {
            headers.append(axum::http::header::SET_COOKIE, value);
        }
    }
    response
}
