//! `nubis`: one binary for the whole cloud.
//!
//! `nubis up` runs a controller and this host's agent together (they still
//! talk only through the agent protocol); `nubis controller` and `nubis agent`
//! run them apart; every other subcommand is the API client.

mod server_commands;

use clap::{Parser, Subcommand};
use nubis_cli::{ClientCommand, ClientOptions};
use server_commands::{AdminCommand, AgentArgs, ControllerArgs, UpArgs};

#[derive(Parser, Debug)]
#[command(
    name = "nubis",
    version,
    about = "Nubis: rent out virtual machines from one binary"
)]
struct Cli {
    #[command(flatten)]
    client: ClientOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the all-in-one cloud: controller + this host's agent, SQLite state.
    Up(UpArgs),
    /// Run only the controller (API, scheduler, state store).
    Controller(ControllerArgs),
    /// Run only this host's agent.
    Agent(AgentArgs),
    /// Operator commands that work on the state store directly.
    #[command(subcommand)]
    Admin(AdminCommand),
    #[command(flatten)]
    Client(ClientCommand),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NUBIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => {
            init_logging();
            server_commands::up(args).await
        }
        Command::Controller(args) => {
            init_logging();
            server_commands::controller(args).await
        }
        Command::Agent(args) => {
            init_logging();
            server_commands::agent(args).await
        }
        Command::Admin(cmd) => server_commands::admin(cmd).await,
        Command::Client(cmd) => nubis_cli::run(&cli.client, cmd).await,
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
