//! The server-side subcommands: `up`, `controller`, `agent`, `admin`.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use nubis_agent::qemu::Accel;
use nubis_agent::AgentConfig;
use nubis_controller::clock::Clock;
use nubis_controller::rental::RentalSettings;
use nubis_controller::ControllerConfig;
use nubis_supervise::{Policy, Supervisor, TaskBoard};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AccelChoice {
    /// KVM if a hardware KVM module is loaded, else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// `--registration open|closed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RegistrationChoice {
    /// Anyone may create an account.
    Open,
    /// Only the operator creates accounts (`nubis admin create-user`).
    Closed,
}

#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Where state, images and instance disks live.
    #[arg(long, env = "NUBIS_DATA_DIR", default_value = "./.nubis")]
    pub data_dir: PathBuf,
    /// `postgres://...` for a shared store; default SQLite under --data-dir.
    #[arg(long, env = "NUBIS_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl StoreArgs {
    fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("state.db").display()))
    }
}

#[derive(Args, Debug, Clone)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address of the API.
    #[arg(long, default_value = "127.0.0.1:8780")]
    pub listen: SocketAddr,
    /// Lifetime of login tokens, in hours.
    #[arg(long, default_value_t = 24)]
    pub token_hours: u64,
    /// Largest image upload, in GiB.
    #[arg(long, default_value_t = 64)]
    pub max_image_gib: u64,
    /// DNS zone of server names: `<server>.<project>.<zone>`.
    #[arg(long, default_value = "nubis.internal")]
    pub dns_zone: String,
    /// Rate (Mbit/s, each direction) of a server whose traffic quota is used
    /// up under the `throttle` policy.
    #[arg(long, default_value_t = 1)]
    pub throttle_mbit: u32,
    /// Seconds an expired lease's stopped server is kept before deletion.
    #[arg(long, default_value_t = 3 * 86_400)]
    pub lease_grace: u64,
    /// Seconds between checks of leases and traffic-quota periods.
    #[arg(long, default_value_t = 10)]
    pub rental_check_interval: u64,
    /// The URL browsers use to reach the API, e.g. `https://cloud.example.com`:
    /// console links start with it, and the console websocket accepts only
    /// its origin. Default: `http://` + the --listen address (set this when
    /// listening on 0.0.0.0 or behind a proxy).
    #[arg(long, env = "NUBIS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds a console link (single-use token) stays valid.
    #[arg(long, default_value_t = 60)]
    pub console_token_ttl: u64,
    /// Where noVNC is installed (Debian package `novnc`).
    #[arg(long, default_value = "/usr/share/novnc")]
    pub novnc_dir: PathBuf,
    /// Seconds an ordinary API request may take before it is answered 503
    /// `timeout` (uploads, long polls and console sessions have their own bounds).
    #[arg(long, default_value_t = nubis_controller::http::timeouts::DEFAULT_REQUEST_TIMEOUT.as_secs())]
    pub request_timeout: u64,
    /// Seconds an image upload may go without receiving a byte before it
    /// fails (408); the image stays queued for another try.
    #[arg(long, default_value_t = nubis_controller::http::timeouts::DEFAULT_UPLOAD_IDLE_TIMEOUT.as_secs())]
    pub upload_idle_timeout: u64,
    /// Seconds an agent's desired-state long poll waits for a change (at
    /// most 50: agents give up on a long poll after 60 s).
    #[arg(long, default_value_t = nubis_controller::http::timeouts::DEFAULT_LONG_POLL.as_secs())]
    pub long_poll: u64,
    /// Seconds after which a host's last report makes `/readyz` answer 503.
    #[arg(long, default_value_t = nubis_controller::http::health::DEFAULT_STALE_REPORT_AFTER.as_secs())]
    pub stale_report_after: u64,
    /// Testing only: a file holding seconds to add to the clock of rental
    /// terms (leases, billing periods).
    #[arg(long, hide = true)]
    pub clock_offset_file: Option<PathBuf>,
    /// Whether anyone may register an account (`POST /v1/users`, the
    /// portal's form): default closed for `nubis controller`, open for
    /// `nubis up`. Admins are made only by `nubis admin create-user --admin`.
    #[arg(long, value_enum)]
    pub registration: Option<RegistrationChoice>,
    /// Days the audit trail keeps its records (older ones are purged).
    #[arg(long, default_value_t = nubis_controller::audit::DEFAULT_RETENTION_DAYS, value_parser = clap::value_parser!(u32).range(1..))]
    pub audit_retention_days: u32,
    /// Address of the agent protocol: mutual TLS, where agents join (with a
    /// join token) and then call with their host certificates.
    #[arg(long, default_value = "127.0.0.1:8781")]
    pub cluster_listen: SocketAddr,
    /// Serve the API and portal over HTTPS with this certificate chain
    /// (PEM); needs --tls-key. Cookies are then `Secure`.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub pools: TenantPoolArgs,
    #[command(flatten)]
    pub placement: PlacementArgs,
    /// Evacuate a host that has been down (silent) this many seconds:
    /// its servers restart on other hosts (from a shared instance store
    /// with their data, else rebuilt from their image). Off by default.
    #[arg(long, value_name = "SECONDS")]
    pub auto_evacuate: Option<u64>,
}

/// `--placement spread|pack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlacementChoice {
    /// Most free memory first: servers spread across hosts.
    Spread,
    /// Least free memory first: hosts fill up one by one.
    Pack,
}

/// Placement: overcommit ratios (Nova's names and defaults), weigher,
/// heartbeat timeout.
#[derive(Args, Debug, Clone)]
pub struct PlacementArgs {
    /// vCPUs that may be promised per host CPU.
    #[arg(long, default_value_t = 4.0)]
    pub cpu_allocation_ratio: f64,
    /// Memory that may be promised per MiB of host memory.
    #[arg(long, default_value_t = 1.0)]
    pub ram_allocation_ratio: f64,
    /// Disk that may be promised per GiB of the host's instance store.
    #[arg(long, default_value_t = 1.0)]
    pub disk_allocation_ratio: f64,
    /// How new servers are spread over hosts that can take them.
    #[arg(long, value_enum, default_value = "spread")]
    pub placement: PlacementChoice,
    /// Seconds without a heartbeat (long poll or report) after which a host
    /// is `down` and gets no new servers.
    #[arg(long, default_value_t = nubis_controller::scheduler::HEARTBEAT_TIMEOUT.as_secs())]
    pub host_down_after: u64,
}

impl PlacementArgs {
    /// The settings, or an error naming a bad ratio.
    pub fn settings(&self) -> anyhow::Result<nubis_controller::scheduler::PlacementSettings> {
        use nubis_controller::scheduler::{Overcommit, PlacementSettings, Weigher};
        for (flag, v) in [
            ("--cpu-allocation-ratio", self.cpu_allocation_ratio),
            ("--ram-allocation-ratio", self.ram_allocation_ratio),
            ("--disk-allocation-ratio", self.disk_allocation_ratio),
        ] {
            anyhow::ensure!(
                v.is_finite() && v > 0.0,
                "{flag} must be a positive number, got {v}"
            );
        }
        Ok(PlacementSettings {
            overcommit: Overcommit {
                cpu: self.cpu_allocation_ratio,
                memory: self.ram_allocation_ratio,
                disk: self.disk_allocation_ratio,
            },
            weigher: match self.placement {
                PlacementChoice::Spread => Weigher::Spread,
                PlacementChoice::Pack => Weigher::Pack,
            },
            host_down_after: Duration::from_secs(self.host_down_after.max(1)),
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct TenantPoolArgs {
    /// An IPv4 range tenants' networks may use (repeat for several):
    /// every network's range must lie inside one, clear of the hosts'
    /// own addresses and routes and of floating-IP pools.
    #[arg(long = "tenant-pool", value_name = "CIDR", default_value = nubis_controller::address_space::DEFAULT_TENANT_POOL)]
    pub tenant_pool: Vec<nubis_api::security_groups::Prefix>,
}

impl TenantPoolArgs {
    fn pools(&self) -> anyhow::Result<nubis_controller::address_space::TenantPools> {
        nubis_controller::address_space::TenantPools::new(self.tenant_pool.clone())
            .map_err(|e| anyhow::anyhow!("--tenant-pool: {e}"))
    }
}

#[derive(Args, Debug, Clone)]
pub struct AgentOnlyArgs {
    /// Address of this agent's own API (console logs).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub agent_listen: SocketAddr,
    /// This host's name; default: the system host name.
    #[arg(long)]
    pub host_name: Option<String>,
    /// How QEMU runs guests: kvm where a hardware KVM module is loaded,
    /// else tcg (emulation); auto detects it.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Seconds a guest gets to power down before a hard stop.
    #[arg(long, default_value_t = 60)]
    pub stop_timeout: u64,
    /// Port of the metadata service on instance gateways (guests use
    /// 169.254.169.254:80).
    #[arg(long, default_value_t = 8775)]
    pub metadata_port: u16,
    /// Seconds between traffic-counter reports (and heartbeats).
    #[arg(long, default_value_t = 10)]
    pub meter_interval: u64,
    /// A range guests may not open connections to, e.g. the operator's LAN
    /// with the other hosts' agents and controllers (repeatable). The
    /// host's own addresses are always closed to guests but for DHCP, DNS
    /// and metadata.
    #[arg(long = "management-cidr", value_name = "CIDR")]
    pub management_cidrs: Vec<nubis_api::security_groups::Prefix>,
    /// Size limit of the agent's image cache, in GiB: past it, cached
    /// images no instance on the host uses are evicted, least recently
    /// used first (deleted images are removed whatever the size).
    #[arg(long, default_value_t = nubis_agent::storage::image_cache::DEFAULT_LIMIT_GIB)]
    pub image_cache_gib: u64,
    /// Size in MiB at which a guest's serial console log is cut back to its
    /// newer half (so it never exceeds this).
    #[arg(long, default_value_t = nubis_agent::serial_log::ROTATE_AT >> 20)]
    pub console_log_mib: u64,
    /// This host's underlay address, where other hosts send the VXLAN
    /// traffic of networks spanning hosts. Default: the source address of
    /// the route to the controller (none when that is a loopback address).
    #[arg(long)]
    pub tunnel_ip: Option<std::net::Ipv4Addr>,
    /// A directory every host that shares it has mounted at this path
    /// (NFS, CephFS...): instance directories live there, so moving or
    /// evacuating a server between such hosts copies nothing.
    #[arg(long, value_name = "PATH")]
    pub shared_instance_store: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// The controller's agent protocol (its --cluster-listen). Several
    /// controllers (on one PostgreSQL database): repeat the flag or separate
    /// URLs with commas; the agent fails over to the next when one does not
    /// answer.
    #[arg(
        long,
        env = "NUBIS_CONTROLLER_URL",
        default_value = "https://127.0.0.1:8781",
        value_delimiter = ','
    )]
    pub controller_url: Vec<String>,
    /// Where images and instance disks live.
    #[arg(long, env = "NUBIS_DATA_DIR", default_value = "./.nubis")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub agent: AgentOnlyArgs,
    /// A join token from `nubis admin join-token`, needed only on the first
    /// start: the host's certificate is then kept in its data dir.
    #[arg(long, env = "NUBIS_JOIN_TOKEN")]
    pub join_token: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub controller: ControllerArgs,
    #[command(flatten)]
    pub agent: AgentOnlyArgs,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create a user directly in the state store.
    CreateUser {
        /// The user's name (also the project's).
        name: String,
        /// Make the user an admin.
        #[arg(long)]
        admin: bool,
        /// Otherwise NUBIS_PASSWORD or a line of standard input.
        #[arg(long)]
        password: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List networks and fixed IPs that break the address-space rules
    /// (outside the tenant pools, overlapping a host's own range, a
    /// floating-IP pool or a special range); exits non-zero when any does.
    Check {
        #[command(flatten)]
        pools: TenantPoolArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Make a single-use join token for a new host (`nubis agent
    /// --join-token`). It also carries the cluster CA's fingerprint, so the
    /// agent knows it joins this cluster.
    JoinToken {
        /// Minutes until the token expires.
        #[arg(long, default_value_t = 60)]
        ttl_minutes: u64,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The controller's settings; `registration` is used when
/// `--registration` is not given (each command has its own default).
fn controller_config(
    args: &ControllerArgs,
    registration: RegistrationChoice,
) -> anyhow::Result<ControllerConfig> {
    let registration = match args.registration.unwrap_or(registration) {
        RegistrationChoice::Open => nubis_controller::accounts::Registration::Open,
        RegistrationChoice::Closed => nubis_controller::accounts::Registration::Closed,
    };
    let data_dir = &args.store.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    Ok(ControllerConfig {
        listen: args.listen,
        database_url: args.store.database_url(),
        data_dir: data_dir.clone(),
        token_ttl: Duration::from_secs(args.token_hours * 3600),
        max_image_bytes: args.max_image_gib << 30,
        dns_zone: nubis_api::networks::DnsZone::try_from(args.dns_zone.clone())
            .map_err(|e| anyhow::anyhow!("--dns-zone: {e}"))?
            .as_str()
            .to_owned(),
        rental: RentalSettings {
            throttle: nubis_api::bandwidth::RateLimit::try_from_mbit(args.throttle_mbit)
                .map_err(|e| anyhow::anyhow!("--throttle-mbit: {e}"))?,
            lease_grace: chrono::Duration::seconds(args.lease_grace.min(i64::MAX as u64) as i64),
            sweep_interval: Duration::from_secs(args.rental_check_interval.max(1)),
        },
        clock: match &args.clock_offset_file {
            Some(path) => Clock::with_offset_file(path.clone()),
            None => Clock::system(),
        },
        console: nubis_controller::http::console::ConsoleSettings {
            public_url: args.public_url.clone(),
            token_ttl: Duration::from_secs(args.console_token_ttl.max(1)),
            novnc_dir: args.novnc_dir.clone(),
        },
        timeouts: nubis_controller::http::timeouts::Timeouts {
            request: Duration::from_secs(args.request_timeout.max(1)),
            upload_idle: Duration::from_secs(args.upload_idle_timeout.max(1)),
            long_poll: Duration::from_secs(args.long_poll.clamp(1, 50)),
        },
        readiness: nubis_controller::http::health::Readiness {
            stale_report_after: Duration::from_secs(args.stale_report_after.max(1)),
        },
        accounts: nubis_controller::accounts::AccountSettings {
            registration,
            ..Default::default()
        },
        audit: nubis_controller::audit::AuditSettings {
            retention_days: args.audit_retention_days,
            ..Default::default()
        },
        tenant_pools: args.pools.pools()?,
        cluster_listen: args.cluster_listen,
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(nubis_controller::server::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        placement: args.placement.settings()?,
        auto_evacuate: args.auto_evacuate.map(Duration::from_secs),
    })
}

fn agent_config(
    controller_url: String,
    data_dir: &Path,
    join_token: Option<String>,
    args: &AgentOnlyArgs,
) -> anyhow::Result<AgentConfig> {
    let host_name = match &args.host_name {
        Some(n) => n.clone(),
        None => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into()),
    };
    Ok(AgentConfig {
        controller_url,
        data_dir: data_dir.join("agent"),
        host_name,
        listen: args.agent_listen,
        accel: match args.accel {
            AccelChoice::Auto => None,
            AccelChoice::Kvm => Some(Accel::Kvm),
            AccelChoice::Tcg => Some(Accel::Tcg),
        },
        stop_timeout: Duration::from_secs(args.stop_timeout),
        metadata_port: args.metadata_port,
        meter_interval: Duration::from_secs(args.meter_interval.max(1)),
        management_cidrs: args.management_cidrs.clone(),
        image_cache_gib: args.image_cache_gib,
        console_log_mib: args.console_log_mib,
        join_token,
        tunnel_ip: args.tunnel_ip,
        shared_instance_store: args.shared_instance_store.clone(),
    })
}

/// Waits until the process is asked to stop. Guests keep running.
async fn until_signalled() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping; running guests keep running and are adopted on the next start");
    Ok(())
}

/// Runs until a signal asks it to stop (`Ok`) or a background task fails
/// past its restart budget (an error naming it, so the process exits non-zero).
async fn run_supervised(mut supervisor: Supervisor) -> anyhow::Result<()> {
    tokio::select! {
        e = supervisor.gave_up() => Err(e.context("stopping: a background task cannot be kept running")),
        r = until_signalled() => r,
    }
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    // One machine, one operator at its keyboard: anyone may register.
    let config = controller_config(&args.controller, RegistrationChoice::Open)?;
    let data_dir = config.data_dir.clone();
    let controller = nubis_controller::server::start(config).await?;
    let url = controller.url.clone();
    // This host joins its own controller the way any host does, with a
    // join token made here (only the first time: its certificate is kept).
    let agent_dir = data_dir.join("agent");
    let join_token = if nubis_pki::HostCredentials::load(&agent_dir)?.is_none() {
        let token = controller
            .cluster
            .issue_join_token(
                &controller.store,
                Duration::from_secs(600),
                chrono::Utc::now(),
            )
            .await?;
        Some(token.to_string())
    } else {
        None
    };
    let mut cluster_addr = controller.cluster_addr;
    if cluster_addr.ip().is_unspecified() {
        cluster_addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    // The controller's tasks run (and are supervised) before the agent
    // registers with it; the agent's join the same supervisor and board,
    // so `/readyz` sees them all.
    let (_, mut supervisor) = controller.supervise(Policy::DEFAULT);
    let agent = nubis_agent::start(agent_config(
        format!("https://{cluster_addr}"),
        &data_dir,
        join_token,
        &args.agent,
    )?)
    .await?;
    supervisor.spawn_all(agent.tasks);
    tracing::info!(api = %url, agent = %agent.api_addr, "nubis is up");
    println!("Nubis is up: portal at {url}/, API at {url}/v1");
    run_supervised(supervisor).await
}

pub async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    let config = controller_config(&args, RegistrationChoice::Closed)?;
    let controller = nubis_controller::server::start(config).await?;
    let (_, supervisor) = controller.supervise(Policy::DEFAULT);
    run_supervised(supervisor).await
}

pub async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let config = agent_config(
        args.controller_url.join(","),
        &args.data_dir,
        args.join_token.clone(),
        &args.agent,
    )?;
    let agent = nubis_agent::start(config).await?;
    let mut supervisor = Supervisor::new(TaskBoard::default(), Policy::DEFAULT);
    supervisor.spawn_all(agent.tasks);
    run_supervised(supervisor).await
}

pub async fn admin(cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::CreateUser {
            name,
            admin,
            password,
            store,
        } => {
            let name: nubis_api::Name = name.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let password = nubis_cli::commands::auth::read_password(password)?;
            let password =
                nubis_api::users::Password::try_from(password).map_err(|e| anyhow::anyhow!(e))?;
            if store.database_url.is_none() {
                std::fs::create_dir_all(&store.data_dir)
                    .with_context(|| format!("creating {}", store.data_dir.display()))?;
            }
            let db = nubis_controller::store::Store::connect(&store.database_url()).await?;
            let hash = nubis_controller::auth::hash_password(password.expose())?;
            let user = db.create_user(name.as_str(), &hash, admin).await?;
            println!(
                "Created user '{}'{}.",
                user.name,
                if user.admin { " (admin)" } else { "" }
            );
            Ok(())
        }
        AdminCommand::Check { pools, store } => {
            let pools = pools.pools()?;
            std::fs::create_dir_all(&store.data_dir)?;
            let db = nubis_controller::store::Store::connect(&store.database_url())
                .await?
                .with_tenant_pools(pools.clone());
            let findings = db.address_space_findings().await?;
            for finding in &findings {
                println!("{finding}");
            }
            if findings.is_empty() {
                println!("Every network and fixed IP keeps the address-space rules (tenant pools: {pools}).");
                Ok(())
            } else {
                anyhow::bail!(
                    "{} network(s) or fixed IP(s) break the address-space rules (tenant pools: {pools}); they keep working, but new ones like them are refused",
                    findings.len()
                )
            }
        }
        AdminCommand::JoinToken { ttl_minutes, store } => {
            std::fs::create_dir_all(&store.data_dir)?;
            let ca = nubis_pki::ClusterCa::load_or_create(&store.data_dir)?;
            let db = nubis_controller::store::Store::connect(&store.database_url()).await?;
            let token = nubis_controller::cluster::issue_join_token(
                &ca,
                &db,
                Duration::from_secs(ttl_minutes.max(1) * 60),
                chrono::Utc::now(),
            )
            .await?;
            println!("{token}");
            Ok(())
        }
    }
}
