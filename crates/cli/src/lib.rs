//! The Nubis command-line client: every subcommand that talks to the API.

pub mod args;
pub mod client;
pub mod commands;
pub mod output;

use clap::{Args, Subcommand};
use client::ApiClient;
use commands::{
    audit, auth, flavors, floating_ips, hosts, images, keypairs, moves, networks, quotas,
    security_groups, server_groups, servers, ssh, terms, usage,
};
use nubis_api::images::ImageFormat;
use nubis_api::servers::NetworkRequest;
use std::path::PathBuf;

/// Options every client command takes.
#[derive(Args, Debug, Clone)]
pub struct ClientOptions {
    /// The Nubis API.
    #[arg(
        long,
        global = true,
        env = "NUBIS_URL",
        default_value = "http://127.0.0.1:8780"
    )]
    pub url: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Trust this CA certificate (PEM) for an `https://` API, e.g. a
    /// controller's own or self-signed `--tls-cert`, instead of the system's.
    #[arg(long, global = true, env = "NUBIS_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
}

/// The client subcommands.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Create an account, where the cloud takes registrations (admins are
    /// made by its operator: `nubis admin create-user NAME --admin`).
    Register {
        /// The account's name (also the project's).
        name: String,
        /// Otherwise NUBIS_PASSWORD or a line of standard input.
        #[arg(long)]
        password: Option<String>,
    },
    /// Log in and save the token for later commands.
    Login {
        /// The account's name.
        name: String,
        /// Otherwise NUBIS_PASSWORD or a line of standard input.
        #[arg(long)]
        password: Option<String>,
    },
    /// Revoke the saved token.
    Logout,
    /// Flavors: named sizes.
    #[command(subcommand)]
    Flavor(FlavorCommand),
    /// The image catalog.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Servers (virtual machines).
    #[command(subcommand)]
    Server(ServerCommand),
    /// Private networks.
    #[command(subcommand)]
    Network(networks::NetworkCommand),
    /// SSH key pairs for servers.
    #[command(subcommand)]
    Keypair(keypairs::KeypairCommand),
    /// Project quotas: limits and what is in use.
    #[command(subcommand)]
    Quota(quotas::QuotaCommand),
    /// Usage records for billing.
    #[command(subcommand)]
    Usage(usage::UsageCommand),
    /// Floating IPs: public addresses mapped to servers.
    #[command(subcommand, name = "floating-ip")]
    FloatingIp(floating_ips::FloatingIpCommand),
    /// Security groups: which traffic reaches servers.
    #[command(subcommand, name = "security-group")]
    SecurityGroup(security_groups::SecurityGroupCommand),
    /// Server groups: affinity or anti-affinity of their servers.
    #[command(subcommand, name = "server-group")]
    ServerGroup(server_groups::ServerGroupCommand),
    /// Hosts (admins): state, capacity, allocation; disable, enable, drain, evacuate.
    #[command(subcommand)]
    Host(hosts::HostCommand),
    /// The audit trail: who changed what, from where, and how it ended
    /// (admins: every project; others: their own).
    Audit(audit::AuditArgs),
}

#[derive(Subcommand, Debug)]
pub enum FlavorCommand {
    /// List the flavors.
    List,
    /// Create a flavor (admin).
    Create {
        /// The flavor's name.
        name: String,
        /// Virtual CPUs (1 to 64).
        #[arg(long, value_name = "N", value_parser = args::vcpus)]
        vcpus: u64,
        /// Memory in MiB (64 to 262144).
        #[arg(long, value_name = "MIB", value_parser = args::memory_mib)]
        memory_mib: u64,
        /// Disk size in GiB (1 to 16384).
        #[arg(long, value_name = "GIB", value_parser = args::disk_gib)]
        disk_gib: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List the images the project can use.
    List,
    /// Show an image (by name or id).
    Show {
        /// The image: name or id.
        image: String,
    },
    /// Delete an image (refused while a server uses it); frees its bytes.
    Delete {
        /// The image: name or id.
        image: String,
    },
    /// Create an image and upload its file.
    Create {
        /// The image's name.
        name: String,
        /// The file to upload.
        #[arg(long)]
        file: PathBuf,
        /// qcow2, raw, aki (kernel), ari (initrd) or iso (an installer CD:
        /// servers made from it get a blank disk and boot the ISO first).
        #[arg(long, value_parser = parse_format)]
        format: ImageFormat,
        /// The operating system, for people choosing an image.
        #[arg(long, default_value = "linux")]
        os: String,
        /// The operating system's version.
        #[arg(long, default_value = "1")]
        os_version: String,
        /// Kernel image (aki) for direct kernel boot.
        #[arg(long)]
        kernel: Option<String>,
        /// Initrd image (ari) for direct kernel boot.
        #[arg(long)]
        initrd: Option<String>,
        /// Kernel command line for direct kernel boot.
        #[arg(long)]
        cmdline: Option<String>,
        /// Visible to every project (admin).
        #[arg(long)]
        public: bool,
        /// How the image reads its first-boot configuration: config-2
        /// (OpenStack config drive, on request) or nocloud (always).
        #[arg(long, default_value = "config-2", value_parser = ["config-2", "nocloud"])]
        config_format: String,
    },
}

fn parse_format(s: &str) -> Result<ImageFormat, String> {
    s.parse()
}

#[derive(Subcommand, Debug)]
pub enum ServerCommand {
    /// List the project's servers with their status and first address.
    List,
    /// Show a server (by name or id): addresses, size, terms, lease.
    Show {
        /// The server: name or id.
        server: String,
    },
    /// Create a server from an image, sized by a flavor or explicitly.
    Create {
        /// The server's name (also its DNS name).
        name: String,
        /// The image to boot (name or id).
        #[arg(long)]
        image: String,
        /// The size, as a flavor (name or id); or give --vcpus, --memory-mib
        /// and --disk-gib.
        #[arg(long, required_unless_present_any = ["vcpus", "memory_mib", "disk_gib"])]
        flavor: Option<String>,
        /// Virtual CPUs (1 to 64), without a flavor.
        #[arg(long, value_name = "N", value_parser = args::vcpus,
            conflicts_with = "flavor", requires_all = ["memory_mib", "disk_gib"])]
        vcpus: Option<u64>,
        /// Memory in MiB (64 to 262144), without a flavor.
        #[arg(long, value_name = "MIB", value_parser = args::memory_mib,
            conflicts_with = "flavor", requires_all = ["vcpus", "disk_gib"])]
        memory_mib: Option<u64>,
        /// Disk size in GiB (1 to 16384), without a flavor.
        #[arg(long, value_name = "GIB", value_parser = args::disk_gib,
            conflicts_with = "flavor", requires_all = ["vcpus", "memory_mib"])]
        disk_gib: Option<u64>,
        /// A NIC on a network (name or id), optionally with a fixed address;
        /// repeat for more NICs. Default: one NIC on the `default` network.
        #[arg(long = "network", value_name = commands::nics::NIC_SYNTAX,
            value_parser = commands::nics::parse_nic)]
        networks: Vec<NetworkRequest>,
        /// Key pair whose public key the guest authorizes.
        #[arg(long, value_name = "NAME")]
        key_name: Option<String>,
        /// A file given to the guest as user data (e.g. a `#!` script).
        #[arg(long, value_name = "PATH")]
        user_data_file: Option<PathBuf>,
        /// Attach a config drive with the metadata and user data.
        #[arg(long)]
        config_drive: bool,
        /// Bandwidth towards the server, Mbit/s (default: the flavor's).
        #[arg(long, value_name = "MBIT", value_parser = args::mbit)]
        inbound_mbit: Option<u32>,
        /// Bandwidth from the server, Mbit/s (default: the flavor's).
        #[arg(long, value_name = "MBIT", value_parser = args::mbit)]
        outbound_mbit: Option<u32>,
        /// Monthly traffic quota in GiB (inbound + outbound).
        #[arg(long, value_name = "GIB", value_parser = args::quota_gib)]
        traffic_quota_gib: Option<f64>,
        /// What happens when the quota is used up.
        #[arg(long, value_enum, default_value_t = terms::PolicyArg::Throttle)]
        quota_policy: terms::PolicyArg,
        /// Rent for a term: seconds, or 90m, 12h, 30d.
        #[arg(long, value_name = "DURATION", value_parser = args::lease_term)]
        lease: Option<i64>,
        /// Wait until it runs, showing its status.
        #[arg(long)]
        wait: bool,
        /// Join a server group (name or id): placed by its policy, as
        /// `nova boot --hint group=`.
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
    },
    /// Start a stopped server.
    Start {
        /// The server: name or id.
        server: String,
        /// Wait until it runs, showing its status.
        #[arg(long)]
        wait: bool,
    },
    /// Stop a server: the guest is asked to power down (ACPI), and is
    /// stopped hard if it does not within the host's stop timeout.
    Stop {
        /// The server: name or id.
        server: String,
        /// Wait until it is stopped, showing its status.
        #[arg(long)]
        wait: bool,
    },
    /// Reboot a server (a reset of the virtual machine).
    Reboot {
        /// The server: name or id.
        server: String,
        /// Wait until it runs again, showing its status.
        #[arg(long)]
        wait: bool,
    },
    /// Take the ISO out of the server's CD-ROM drive: it boots from its disk
    /// from its next start (or reboot) on.
    Eject {
        /// The server: name or id.
        server: String,
    },
    /// Move a stopped server to another host (its disk is copied, or found
    /// in a store both hosts share); it keeps its addresses.
    Migrate {
        /// The server: name or id.
        server: String,
        /// The target host, by name or id (admins only); default: the
        /// scheduler's choice.
        #[arg(long)]
        host: Option<String>,
        /// Wait until the move ends.
        #[arg(long)]
        wait: bool,
    },
    /// Move a running server to another host without stopping it.
    LiveMigrate {
        /// The server: name or id.
        server: String,
        /// The target host, by name or id (admins only).
        #[arg(long)]
        host: Option<String>,
        /// Wait until the move ends.
        #[arg(long)]
        wait: bool,
    },
    /// Delete a server and its disk.
    Delete {
        /// The server: name or id.
        server: String,
        /// Wait until it is gone, showing its status.
        #[arg(long)]
        wait: bool,
    },
    #[command(flatten)]
    Terms(terms::TermsCommand),
    /// Print a single-use link (valid for a minute) to the server's
    /// graphical console, a noVNC page in the browser.
    Console {
        /// The server: name or id.
        server: String,
    },
    /// Print the serial console output.
    ConsoleLog {
        /// The server: name or id.
        server: String,
    },
    /// Log in to a server with ssh, at its first address.
    Ssh {
        /// The server: name or id.
        server: String,
        /// Private key. Default: ./KEY_NAME.pem if the server has a key pair
        /// and that file exists.
        #[arg(short = 'i', long, value_name = "PATH")]
        identity: Option<PathBuf>,
        /// The user to log in as.
        #[arg(short = 'l', long, default_value = "root")]
        user: String,
        /// More ssh options, or a command to run, after `--`.
        #[arg(last = true, value_name = "SSH_ARGS")]
        args: Vec<String>,
    },
}

/// Subcommands and arguments under `cmd` (by path, e.g. `nubis server
/// stop --wait`) that have no help line, for a test that keeps `--help`
/// complete.
pub fn missing_help(cmd: &clap::Command) -> Vec<String> {
    fn walk(cmd: &clap::Command, path: &str, root: bool, out: &mut Vec<String>) {
        if !root && cmd.get_about().is_none() && !cmd.is_hide_set() {
            out.push(path.to_owned());
        }
        for arg in cmd.get_arguments() {
            if arg.get_help().is_none() && !arg.is_hide_set() {
                let name = match arg.get_long() {
                    Some(long) => format!("--{long}"),
                    None => arg.get_id().to_string(),
                };
                out.push(format!("{path} {name}"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), false, out);
        }
    }
    let mut out = Vec::new();
    walk(cmd, cmd.get_name(), true, &mut out);
    out
}

/// Runs one client command.
pub async fn run(opts: &ClientOptions, command: ClientCommand) -> anyhow::Result<()> {
    let client = ApiClient::new(&opts.url, opts.ca_cert.as_deref())?;
    let json = opts.json;
    match command {
        ClientCommand::Register { name, password } => {
            auth::register(&client, &name, password).await
        }
        ClientCommand::FloatingIp(cmd) => floating_ips::run(&client, cmd, json).await,
        ClientCommand::SecurityGroup(cmd) => security_groups::run(&client, cmd, json).await,
        ClientCommand::ServerGroup(cmd) => server_groups::run(&client, cmd, json).await,
        ClientCommand::Host(cmd) => hosts::run(&client, cmd, json).await,
        ClientCommand::Login { name, password } => auth::login(&client, &name, password).await,
        ClientCommand::Logout => auth::logout(&client).await,
        ClientCommand::Flavor(FlavorCommand::List) => flavors::list(&client, json).await,
        ClientCommand::Flavor(FlavorCommand::Create {
            name,
            vcpus,
            memory_mib,
            disk_gib,
        }) => flavors::create(&client, &name, vcpus, memory_mib, disk_gib).await,
        ClientCommand::Image(ImageCommand::List) => images::list(&client, json).await,
        ClientCommand::Image(ImageCommand::Show { image }) => {
            images::show(&client, &image, json).await
        }
        ClientCommand::Image(ImageCommand::Delete { image }) => {
            images::delete(&client, &image).await
        }
        ClientCommand::Image(ImageCommand::Create {
            name,
            file,
            format,
            os,
            os_version,
            kernel,
            initrd,
            cmdline,
            public,
            config_format,
        }) => {
            images::create(
                &client,
                images::NewImage {
                    name: &name,
                    os: &os,
                    version: &os_version,
                    format,
                    file: &file,
                    kernel: kernel.as_deref(),
                    initrd: initrd.as_deref(),
                    cmdline: cmdline.as_deref(),
                    public,
                    config_format: &config_format,
                },
            )
            .await
        }
        ClientCommand::Server(cmd) => run_server(&client, cmd, json).await,
        ClientCommand::Network(cmd) => networks::run(&client, cmd, json).await,
        ClientCommand::Keypair(cmd) => keypairs::run(&client, cmd, json).await,
        ClientCommand::Quota(cmd) => quotas::run(&client, cmd, json).await,
        ClientCommand::Usage(cmd) => usage::run(&client, cmd, json).await,
        ClientCommand::Audit(args) => audit::run(&client, args, json).await,
    }
}

async fn run_server(client: &ApiClient, cmd: ServerCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        ServerCommand::List => servers::list(client, json).await,
        ServerCommand::Show { server } => servers::show(client, &server, json).await,
        ServerCommand::Create {
            name,
            image,
            flavor,
            vcpus,
            memory_mib,
            disk_gib,
            networks,
            key_name,
            user_data_file,
            config_drive,
            inbound_mbit,
            outbound_mbit,
            traffic_quota_gib,
            quota_policy,
            lease,
            wait,
            group,
        } => {
            servers::create(
                client,
                servers::NewServer {
                    name: &name,
                    image: &image,
                    flavor: flavor.as_deref(),
                    vcpus,
                    memory_mib,
                    disk_gib,
                    networks: &networks,
                    key_name: key_name.as_deref(),
                    user_data_file: user_data_file.as_deref(),
                    config_drive,
                    terms: servers::CreateTerms {
                        inbound_mbit,
                        outbound_mbit,
                        traffic_quota_gib,
                        quota_policy,
                        lease_seconds: lease,
                    },
                    group: group.as_deref(),
                },
                wait,
                json,
            )
            .await
        }
        ServerCommand::Start { server, wait } => {
            servers::action(client, &server, "start", wait).await
        }
        ServerCommand::Stop { server, wait } => {
            servers::action(client, &server, "stop", wait).await
        }
        ServerCommand::Reboot { server, wait } => {
            servers::action(client, &server, "reboot", wait).await
        }
        ServerCommand::Eject { server } => servers::eject(client, &server).await,
        ServerCommand::Migrate { server, host, wait } => {
            moves::migrate(client, &server, host, false, wait, json).await
        }
        ServerCommand::LiveMigrate { server, host, wait } => {
            moves::migrate(client, &server, host, true, wait, json).await
        }
        ServerCommand::Delete { server, wait } => servers::delete(client, &server, wait).await,
        ServerCommand::Terms(cmd) => terms::run(client, cmd, json).await,
        ServerCommand::Console { server } => servers::console(client, &server, json).await,
        ServerCommand::ConsoleLog { server } => servers::console_log(client, &server).await,
        ServerCommand::Ssh {
            server,
            identity,
            user,
            args,
        } => {
            ssh::run(
                client,
                ssh::SshRequest {
                    server: &server,
                    identity: identity.as_deref(),
                    user: &user,
                    extra: &args,
                },
            )
            .await
        }
    }
}

#[cfg(test)]
mod parse_tests;
