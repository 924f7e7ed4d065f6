//! The command line's shape (clap).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{LogFormat, Overrides};

/// Runs and manages ws-provider WebSocket servers.
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
    Start(StartArgs),
    /// Stops one running server (by pid) or every one, and waits for each to exit.
    Stop(StopArgs),
    /// Lists running servers and stale entries.
    List(ListArgs),
    /// Lists every route with its component, as `start` would mount them.
    Routes(RoutesArgs),
    /// Checks the configuration and prints the values in force.
    CheckConfig(ConfigArgs),
}

/// Where the configuration comes from.
#[derive(Debug, Args, Clone, Default)]
pub struct ConfigArgs {
    /// Configuration file (TOML); every key has a default.
    #[arg(long, env = "WS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Prefix in front of every route (`server.route_prefix`).
    #[arg(long, env = "WS_ROUTE_PREFIX", value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Address to listen on (`server.host`) [default: 0.0.0.0].
    #[arg(long, env = "WS_HOST")]
    pub host: Option<String>,
    /// Port to listen on, 0 for any free one (`server.port`) [default: 18080].
    #[arg(long, env = "WS_PORT")]
    pub port: Option<u16>,
    /// Directory of the servers' info files (`server.state_dir`).
    #[arg(long, env = "WS_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Log format (`log.format`) [default: text].
    #[arg(long, env = "WS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Bearer key of the admin publish API (`admin.key`).
    #[arg(
        long = "admin-key",
        env = "WS_ADMIN_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub admin_key: Option<String>,
}

impl ConfigArgs {
    /// The overrides these flags (or their variables) make.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            host: self.host.clone(),
            port: self.port,
            route_prefix: self.prefix.clone(),
            state_dir: self.state_dir.clone(),
            log_format: self.log_format,
            admin_key: self.admin_key.clone(),
        }
    }
}

/// `start`.
#[derive(Debug, Args, Clone)]
pub struct StartArgs {
    /// Configuration and overrides.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `stop`.
#[derive(Debug, Args, Clone)]
pub struct StopArgs {
    /// The server to stop; every running server of the state directory when omitted.
    pub pid: Option<u32>,
    /// How long to wait for each server to exit.
    #[arg(long, default_value = "10s", value_parser = ws_config::parse_duration)]
    pub timeout: Duration,
    /// Configuration and overrides (for the state directory).
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `list`.
#[derive(Debug, Args, Clone)]
pub struct ListArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Configuration and overrides (for the state directory).
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `routes`.
#[derive(Debug, Args, Clone)]
pub struct RoutesArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Configuration and overrides.
    #[command(flatten)]
    pub config: ConfigArgs,
}
