//! The command line's shape (clap).

use clap::{Args, Parser, Subcommand};

/// Runs and inspects ws-provider WebSocket servers.
#[derive(Debug, Parser)]
#[command(name = "ws-cli", version, about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs a server in the foreground until SIGTERM or SIGINT.
    Start(ServeArgs),
    /// Lists every route with its component, as `start` would mount them.
    Routes(ServeArgs),
}

/// Where and how to serve.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WS_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "WS_PORT", default_value_t = 18080)]
    pub port: u16,
    /// Prefix in front of every route (`route_prefix`).
    #[arg(long, env = "WS_ROUTE_PREFIX", default_value = "/")]
    pub prefix: String,
    /// Print JSON instead of a table (routes).
    #[arg(long)]
    pub json: bool,
}
