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
    let colour = use_colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}

/// Colour only for a person at a terminal: never in a file or a pipe (a log
/// full of escape codes), and never when NO_COLOR is set to anything
/// non-empty (https://no-color.org).
fn use_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }

    #[test]
    fn every_subcommand_and_argument_has_help() {
        let missing = nubis_cli::missing_help(&Cli::command());
        assert!(missing.is_empty(), "without a help line: {missing:#?}");
    }
}
