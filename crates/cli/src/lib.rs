//! The Nubis command-line client: every subcommand that talks to the API.

pub mod client;
pub mod commands;
pub mod output;

use clap::{Args, Subcommand};
use client::ApiClient;
use commands::{auth, flavors, images, servers};
use nubis_api::images::ImageFormat;
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
        /// qcow2, raw, aki (kernel) or ari (initrd).
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
    Delete {
        server: String,
        #[arg(long)]
        wait: bool,
    },
    /// Print the serial console output.
    ConsoleLog {
        server: String,
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
                },
            )
            .await
        }
        ClientCommand::Server(cmd) => run_server(&client, cmd, json).await,
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
        ServerCommand::Delete { server, wait } => servers::delete(client, &server, wait).await,
        ServerCommand::ConsoleLog { server } => servers::console_log(client, &server).await,
    }
}
