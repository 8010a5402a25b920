//! The Nubis host agent. One runs on every host: it runs QEMU guests with their
//! disks and consoles, converging the host to the desired state it gets from the
//! controller and reporting what it observes, through the agent protocol only.

pub mod accel;
pub mod api;
pub mod controller_client;
#[cfg(any(test, feature = "test-fixtures"))]
pub mod fixtures;
pub mod guest_data;
pub mod host_info;
pub mod instance;
pub mod jail;
pub mod layout;
pub mod local_instances;
pub mod metadata;
pub mod metering;
pub mod moves;
pub mod network;
pub mod qemu;
pub mod reconciler;
pub mod reports;
pub mod serial_log;
pub mod storage;

use anyhow::Context;
use controller_client::ControllerClient;
use instance::InstanceContext;
use layout::Layout;
use nubis_api::agent::{Accelerator, RegisterHost};
use nubis_pki::{HostCredentials, JoinToken};
use nubis_supervise::{BackgroundTask, SharedListener};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to run an agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The base URL of the controller's agent protocol (its
    /// `--cluster-listen`), e.g. `https://127.0.0.1:8781`, or several
    /// separated by commas (see `controller_client`).
    pub controller_url: String,
    pub data_dir: PathBuf,
    /// This host's name (unique in the cloud).
    pub host_name: String,
    /// Where the agent's own API listens.
    pub listen: SocketAddr,
    /// Force an accelerator instead of detecting one.
    pub accel: Option<qemu::Accel>,
    pub stop_timeout: Duration,
    /// Port of the metadata service on each network's gateway address;
    /// guests reach it as 169.254.169.254:80.
    pub metadata_port: u16,
    /// How often traffic counters are reported (also the heartbeat).
    pub meter_interval: Duration,
    /// Ranges guests may not open connections to (`--management-cidr`):
    /// the operator's LAN, other hosts' agents and controllers.
    pub management_cidrs: Vec<nubis_api::security_groups::Prefix>,
    /// Size limit of the image cache, in GiB: past it, images no instance
    /// here uses are evicted, least recently used first.
    pub image_cache_gib: u64,
    /// Size in MiB at which a serial console log is cut back to its newer half.
    pub console_log_mib: u64,
    /// A join token (`nubis admin join-token`), used only if this host has
    /// no credentials yet in its data dir.
    pub join_token: Option<String>,
    /// This host's underlay address for VXLAN (`--tunnel-ip`); default: the
    /// source address of its route to the controller.
    pub tunnel_ip: Option<std::net::Ipv4Addr>,
    /// `--shared-instance-store PATH`: instance directories live under
    /// PATH (shared with other hosts) rather than in the data dir.
    pub shared_instance_store: Option<PathBuf>,
}

/// A registered agent whose background tasks (its API, the reconcile and
/// report loops, the metadata service) wait to be run under supervision.
pub struct RunningAgent {
    pub api_addr: SocketAddr,
    pub tasks: Vec<BackgroundTask>,
}

/// Prepares the agent: binds its API and metadata sockets and registers
/// with the controller (retrying until it answers). The caller runs
/// [`RunningAgent::tasks`], e.g. under a `nubis_supervise::Supervisor`.
pub async fn start(config: AgentConfig) -> anyhow::Result<RunningAgent> {
    match network::loopback::ensure_up().await {
        Ok(true) => tracing::info!("loopback was down; brought it up"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot bring loopback up"),
    }
    let layout =
        Layout::new(&config.data_dir).with_shared_store(config.shared_instance_store.clone());
    let shared_store = match &config.shared_instance_store {
        Some(path) => Some(
            moves::shared_store::store_id(path)
                .with_context(|| format!("--shared-instance-store {}", path.display()))?,
        ),
        None => None,
    };
    for dir in [layout.images(), layout.instances()] {
        tokio::fs::create_dir_all(&dir)
            .await
            .with_context(|| format!("creating {}", dir.display()))?;
        // Root's alone: QEMUs reach their own files through their jails.
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .await
            .with_context(|| format!("securing {}", dir.display()))?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("agent listening on {}", config.listen))?;
    let api_addr = listener.local_addr()?;

    let accel = config.accel.unwrap_or_else(accel::detect);
    tracing::info!(?accel, "accelerator");
    let capacity = host_info::capacity(&config.data_dir);
    let tunnel =
        network::overlay::find_tunnel(config.tunnel_ip, &controller_host(&config.controller_url))
            .await;
    let registration = RegisterHost {
        name: config.host_name.clone(),
        url: format!("https://{api_addr}"),
        vcpus: capacity.vcpus,
        memory_mib: capacity.memory_mib,
        disk_gib: capacity.disk_gib,
        accel: match accel {
            qemu::Accel::Kvm => Accelerator::Kvm,
            qemu::Accel::Tcg => Accelerator::Tcg,
        },
        addressing: host_info::addressing()
            .await
            .inspect_err(|e| tracing::warn!(error = %format!("{e:#}"), "cannot read the host's addresses and routes"))
            .ok(),
        cpu_model: host_info::cpu_model(),
        tunnel_ip: tunnel.map(|t| t.local),
        shared_store,
    };
    let credentials = match HostCredentials::load(&config.data_dir)? {
        Some(credentials) => credentials,
        None => join(&config, &registration).await?,
    };
    let client = ControllerClient::new(&config.controller_url, &credentials)?;
    let departures = moves::Departures::default();
    let app = api::router(layout.clone(), departures.clone());
    let api_tls = credentials.server_config()?;
    let api_socket = Arc::new(SharedListener::new(listener)?);
    let api_task = BackgroundTask::new("agent API", move || {
        let (socket, app, tls) = (api_socket.clone(), app.clone(), api_tls.clone());
        async move {
            let listener = socket.listener().context("reusing the agent API socket")?;
            nubis_pki::serve::serve_tls(listener, tls, app)
                .await
                .context("serving the agent API")
        }
    });
    let host = loop {
        match client.register(&registration).await {
            Ok(host) => break host,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot register with the controller; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    tracing::info!(host = %host.name, id = %host.id, "registered with the controller");
    let directory = Arc::new(local_instances::LocalInstances::default());
    let metadata_listener = tokio::net::TcpListener::bind(("0.0.0.0", config.metadata_port))
        .await
        .with_context(|| format!("metadata service on port {}", config.metadata_port))?;
    let metadata_socket = Arc::new(SharedListener::new(metadata_listener)?);
    let metadata_directory = directory.clone();
    let metadata_task = BackgroundTask::new("metadata service", move || {
        let (socket, directory) = (metadata_socket.clone(), metadata_directory.clone());
        async move {
            let listener = socket
                .listener()
                .context("reusing the metadata service socket")?;
            metadata::serve(listener, directory).await
        }
    });
    let ctx = InstanceContext {
        images: storage::ImageCache::new(layout.images(), client.clone())
            .with_limit(config.image_cache_gib.saturating_mul(1 << 30)),
        accel,
        stop_timeout: config.stop_timeout,
        reports: reports::Reports::default(),
        networking: network::HostNetworking::new(layout.networks(), config.metadata_port)
            .with_management_cidrs(config.management_cidrs.clone())
            .with_tunnel(tunnel),
        metadata_service: true,
        console_log_bytes: config.console_log_mib.max(1) << 20,
        migration_ip: instance::migration_ip(api_addr),
        jails: jail::Jails::default(),
        moves: moves::MoveContext {
            credentials: Some(Arc::new(credentials.clone())),
            departures,
        },
    };
    let actors = reconciler::Actors::default();
    let reconcile = {
        let (client, ctx, directory, layout) = (
            client.clone(),
            ctx.clone(),
            directory.clone(),
            layout.clone(),
        );
        BackgroundTask::new("reconcile loop", move || {
            let run = reconciler::follow_desired_state(
                client.clone(),
                host.id,
                layout.clone(),
                ctx.clone(),
                directory.clone(),
                actors.clone(),
            );
            async move {
                run.await;
                Ok(())
            }
        })
    };
    let meter_interval = config.meter_interval;
    let report = BackgroundTask::new("report loop", move || {
        let run = reconciler::report_observed_state(
            client.clone(),
            host.id,
            layout.clone(),
            ctx.clone(),
            directory.clone(),
            meter_interval,
        );
        async move {
            run.await;
            Ok(())
        }
    });
    Ok(RunningAgent {
        api_addr,
        tasks: vec![api_task, reconcile, report, metadata_task],
    })
}

/// The host (address or name) of the first controller URL, e.g.
/// `172.31.0.1` of `https://172.31.0.1:8781,https://...`.
fn controller_host(urls: &str) -> String {
    let first = urls.split(',').next().unwrap_or_default().trim();
    reqwest::Url::parse(first)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
        .unwrap_or_default()
}

/// Joins the cluster with the configured join token: a new key, a
/// certificate for it from the controller, all kept in the data dir (the
/// token is spent; later starts use the stored credentials). Retries while
/// no controller answers; a refusal (bad, used or expired token) is an error.
async fn join(
    config: &AgentConfig,
    registration: &RegisterHost,
) -> anyhow::Result<HostCredentials> {
    let token = config.join_token.as_deref().context(
        "this host has no credentials yet: start it once with --join-token \
         (made by `nubis admin join-token` on the controller's machine)",
    )?;
    let token = JoinToken::parse(token).map_err(|e| anyhow::anyhow!("--join-token: {e}"))?;
    let (key_pem, request) = controller_client::join_request(&token, registration.clone())?;
    let client = ControllerClient::for_join(&config.controller_url, &token)?;
    let joined = loop {
        match client.join(&request).await {
            Ok(Ok(joined)) => break joined,
            Ok(Err(refused)) => {
                anyhow::bail!("the controller refused to let this host join: {refused}")
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot reach the controller to join; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let credentials = HostCredentials::from_join(&token, key_pem, joined.cert_pem, joined.ca_pem)?;
    credentials.save(&config.data_dir)?;
    tracing::info!(host = %joined.host.name, id = %joined.host.id, "joined the cluster");
    Ok(credentials)
}
