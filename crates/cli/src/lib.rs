//! The Nubis command-line client: every subcommand that talks to the API.

pub mod client;
pub mod commands;
pub mod output;

use clap::{Args, Subcommand};
use client::ApiClient;
use commands::{auth, flavors, images, keypairs, networks, quotas, servers, ssh, terms, usage};
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
}

/// The client subcommands.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Create an account (the first one becomes an admin).
    Register {
        name: String,
        /// Otherwise NUBIS_PASSWORD or a line of standard input.
        #[arg(long)]
        password: Option<String>,
    },
    /// Log in and save the token for later commands.
    Login {
        name: String,
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
}

#[derive(Subcommand, Debug)]
pub enum FlavorCommand {
    List,
    /// Create a flavor (admin).
    Create {
        name: String,
        #[arg(long)]
        vcpus: u64,
        #[arg(long)]
        memory_mib: u64,
        #[arg(long)]
        disk_gib: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    List,
    Show {
        image: String,
    },
    /// Create an image and upload its file.
    Create {
        name: String,
        /// The file to upload.
        #[arg(long)]
        file: PathBuf,
        /// qcow2, raw, aki (kernel), ari (initrd) or iso (an installer CD:
        /// servers made from it get a blank disk and boot the ISO first).
        #[arg(long, value_parser = parse_format)]
        format: ImageFormat,
        #[arg(long, default_value = "linux")]
        os: String,
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
    List,
    Show {
        server: String,
    },
    /// Create a server from an image, sized by a flavor or explicitly.
    Create {
        name: String,
        #[arg(long)]
        image: String,
        #[arg(long)]
        flavor: Option<String>,
        #[arg(long)]
        vcpus: Option<u64>,
        #[arg(long)]
        memory_mib: Option<u64>,
        #[arg(long)]
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
        #[arg(long, value_name = "MBIT")]
        inbound_mbit: Option<u32>,
        /// Bandwidth from the server, Mbit/s (default: the flavor's).
        #[arg(long, value_name = "MBIT")]
        outbound_mbit: Option<u32>,
        /// Monthly traffic quota in GiB (inbound + outbound).
        #[arg(long, value_name = "GIB")]
        traffic_quota_gib: Option<f64>,
        /// What happens when the quota is used up.
        #[arg(long, value_enum, default_value_t = terms::PolicyArg::Throttle)]
        quota_policy: terms::PolicyArg,
        /// Rent for a term: seconds, or 90m, 12h, 30d.
        #[arg(long, value_name = "DURATION", value_parser = terms::parse_duration)]
        lease: Option<i64>,
        /// Wait until it runs.
        #[arg(long)]
        wait: bool,
    },
    Start {
        server: String,
        #[arg(long)]
        wait: bool,
    },
    Stop {
        server: String,
        #[arg(long)]
        wait: bool,
    },
    Reboot {
        server: String,
        #[arg(long)]
        wait: bool,
    },
    /// Take the ISO out of the server's CD-ROM drive: it boots from its disk
    /// from its next start (or reboot) on.
    Eject {
        server: String,
    },
    Delete {
        server: String,
        #[arg(long)]
        wait: bool,
    },
    #[command(flatten)]
    Terms(terms::TermsCommand),
    /// Print a single-use link (valid for a minute) to the server's
    /// graphical console, a noVNC page in the browser.
    Console {
        server: String,
    },
    /// Print the serial console output.
    ConsoleLog {
        server: String,
    },
    /// Log in to a server with ssh, at its first address.
    Ssh {
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

/// Runs one client command.
pub async fn run(opts: &ClientOptions, command: ClientCommand) -> anyhow::Result<()> {
    let client = ApiClient::new(&opts.url)?;
    let json = opts.json;
    match command {
        ClientCommand::Register { name, password } => {
            auth::register(&client, &name, password).await
        }
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
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        opts: ClientOptions,
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("nubis").chain(args.iter().copied())).map(|c| c.command)
    }

    #[test]
    fn server_create_takes_nics_keys_user_data() {
        let cmd = parse(&[
            "server",
            "create",
            "web",
            "--image",
            "tiny",
            "--flavor",
            "tiny",
            "--network",
            "lan,fixed-ip=10.0.0.5",
            "--network",
            "default",
            "--key-name",
            "k",
            "--user-data-file",
            "cc.yaml",
            "--config-drive",
        ])
        .unwrap();
        let ClientCommand::Server(ServerCommand::Create {
            networks,
            key_name,
            user_data_file,
            config_drive,
            ..
        }) = cmd
        else {
            panic!("{cmd:?}");
        };
        assert_eq!(networks.len(), 2);
        assert_eq!(networks[0].network, "lan");
        assert_eq!(networks[0].fixed_ip, Some([10, 0, 0, 5].into()));
        assert_eq!(
            (networks[1].network.as_str(), networks[1].fixed_ip),
            ("default", None)
        );
        assert_eq!(key_name.as_deref(), Some("k"));
        assert_eq!(user_data_file, Some(PathBuf::from("cc.yaml")));
        assert!(config_drive);

        let err = parse(&[
            "server",
            "create",
            "web",
            "--image",
            "tiny",
            "--network",
            "lan,bogus=1",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown option 'bogus'"), "{err}");
    }

    #[test]
    fn quota_commands_parse() {
        let cmd = parse(&[
            "quota",
            "set",
            "p1",
            "--servers",
            "3",
            "--memory-mib",
            "4096",
        ])
        .unwrap();
        let ClientCommand::Quota(quotas::QuotaCommand::Set {
            project,
            servers,
            memory_mib,
            vcpus,
            ..
        }) = cmd
        else {
            panic!("{cmd:?}");
        };
        assert_eq!(
            (project.as_str(), servers, memory_mib, vcpus),
            ("p1", Some(3), Some(4096), None)
        );
        assert!(parse(&["quota", "set", "p1", "--servers", "-1"]).is_err());
        assert!(matches!(
            parse(&["quota", "show"]).unwrap(),
            ClientCommand::Quota(quotas::QuotaCommand::Show { project: None })
        ));
    }

    #[test]
    fn ssh_passes_what_follows_the_double_dash() {
        let cmd = parse(&["server", "ssh", "web", "-i", "k.pem", "--", "-v", "uptime"]).unwrap();
        let ClientCommand::Server(ServerCommand::Ssh {
            server,
            identity,
            user,
            args,
        }) = cmd
        else {
            panic!("{cmd:?}");
        };
        assert_eq!(server, "web");
        assert_eq!(identity, Some(PathBuf::from("k.pem")));
        assert_eq!(user, "root");
        assert_eq!(args, ["-v", "uptime"]);
    }

    #[test]
    fn network_and_keypair_options() {
        let cmd = parse(&[
            "network",
            "create",
            "lan",
            "--cidr",
            "10.0.0.0/24",
            "--gateway",
            "10.0.0.254",
        ]);
        assert!(cmd.is_ok(), "{cmd:?}");
        let err = parse(&["network", "create", "lan", "--cidr", "10.0.0.1/24"]).unwrap_err();
        assert!(err.to_string().contains("host bits"), "{err}");
        let err = parse(&[
            "keypair",
            "create",
            "k",
            "--public-key-file",
            "k.pub",
            "--private-key-file",
            "k.pem",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
