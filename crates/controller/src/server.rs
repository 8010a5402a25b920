//! Starting the controller: open the store, seed defaults, serve the API.

use crate::http::console::PublicUrl;
use crate::http::{self, AppState};
use crate::store::Store;
use anyhow::Context;
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
    /// Holds uploaded images.
    pub data_dir: PathBuf,
    /// The secret agents must present.
    pub agent_token: String,
    pub token_ttl: Duration,
    pub max_image_bytes: u64,
    /// The DNS zone of server names.
    pub dns_zone: String,
    pub rental: crate::rental::RentalSettings,
    pub clock: crate::clock::Clock,
    /// The graphical console (public URL, token lifetime, noVNC).
    pub console: crate::http::console::ConsoleSettings,
}

/// A controller serving in the background.
pub struct RunningController {
    pub addr: SocketAddr,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Opens the store and starts serving; returns once the socket listens.
pub async fn start(config: ControllerConfig) -> anyhow::Result<RunningController> {
    let images_dir = config.data_dir.join("images");
    tokio::fs::create_dir_all(&images_dir)
        .await
        .with_context(|| format!("creating {}", images_dir.display()))?;
    let store = Store::connect(&config.database_url)
        .await
        .with_context(|| "opening the state store".to_string())?;
    store.ensure_default_flavors().await?;
    let (revision, _) = watch::channel(1u64);
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let public_url = match &config.console.public_url {
        Some(url) => PublicUrl::parse(url).context("--public-url")?,
        None => {
            if addr.ip().is_unspecified() {
                tracing::warn!(%addr, "listening on every address without --public-url: browsers' console connections will be refused until --public-url names the URL they use");
            }
            PublicUrl::parse(&format!("http://{addr}"))?
        }
    };
    let state = AppState {
        store,
        images_dir,
        agent_token: config.agent_token.into(),
        revision: Arc::new(revision),
        token_ttl: config.token_ttl,
        max_image_bytes: config.max_image_bytes,
        dns_zone: config.dns_zone.into(),
        agent_client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        uploads: Default::default(),
        rental: Arc::new(config.rental),
        clock: config.clock,
        console: Arc::new(config.console),
        public_url: Arc::new(public_url),
    };
    tracing::info!(%addr, "controller API listening");
    tokio::spawn(crate::terms_keeper::run(state.clone()));
    if state.store.backend() == crate::store::Backend::Postgres {
        tokio::spawn(crate::peer_changes::follow(state.clone()));
    }
    // The web portal at `/`, a client of the API router it wraps (`/v1`).
    let app = nubis_portal::router(http::router(state));
    let task =
        tokio::spawn(async move { axum::serve(listener, app).await.context("serving the API") });
    Ok(RunningController { addr, task })
}
