//! `ws-bench`: the load generator of `cargo xtask bench`.
//!
//! One scenario per invocation, against one server on a loopback address;
//! the result is one JSON object on standard output. The client runs on a
//! single-threaded tokio runtime (pin it to its own core with `taskset`)
//! and is written to cost far less per message than the server it drives:
//! frames are encoded and masked once up front and written in batches,
//! replies are parsed in place (see `wire`). Server CPU time comes from
//! `/proc/PID/stat` of `--server-pid`, sampled around the measured window;
//! `client_util` in the output shows how busy the client itself was.
//!
//! Scenarios: `echo` (pipelined), `pingpong` (latency), `handshake` (rate),
//! `idle` (hold connections for a memory reading), `fanout` (broadcast, where
//! the server has the route) and `churn` (connect/disconnect soak); `probe`
//! (one question, one answer) is a check, not a measurement.
//!
//! Every handshake of every scenario sends the same request, including the
//! cookies given with `--cookie NAME=VALUE` (a login token, so that a
//! server's authentication step runs on every connection).

mod churn;
mod common;
mod conn;
mod echo;
mod fanout;
mod handshake;
mod idle;
mod pingpong;
mod probe;
mod procfs;
#[cfg(test)]
mod tests;
mod wire;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::conn::Target;

/// Load generator for WebSocket echo servers on loopback addresses.
#[derive(Debug, Parser)]
#[command(name = "ws-bench", version)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// Where the server is and how long to measure.
#[derive(Debug, Args)]
struct Common {
    /// Server address; must be a loopback address (127.0.0.0/8 or ::1).
    #[arg(long)]
    addr: SocketAddr,
    /// Route to connect to.
    #[arg(long, default_value = "/echo")]
    path: String,
    /// The server's pid, for its CPU time (and memory, for `churn`).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// The core the server alone is pinned to, for that core's busy time
    /// (softirq included) per event.
    #[arg(long)]
    server_core: Option<usize>,
    /// Spread connections over this many source addresses 127.0.0.x.
    #[arg(long, default_value_t = 1)]
    sources: usize,
    /// A cookie every handshake sends (repeatable: one `Cookie` header).
    #[arg(long = "cookie", value_name = "NAME=VALUE", value_parser = parse_cookie)]
    cookies: Vec<String>,
}

fn parse_cookie(s: &str) -> Result<String, String> {
    wire::check_cookie(s).map(|()| s.to_owned())
}

impl Common {
    fn server(&self) -> common::Server {
        common::Server {
            pid: self.server_pid,
            core: self.server_core,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Pipelined echo: CONNS × WINDOW messages of SIZE bytes in flight.
    Echo {
        #[command(flatten)]
        common: Common,
        /// Connections.
        #[arg(long, default_value_t = 100)]
        conns: usize,
        /// Messages in flight per connection.
        #[arg(long, default_value_t = 16)]
        window: usize,
        /// Payload bytes per message.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Text messages (ASCII payload) instead of binary ones.
        #[arg(long)]
        text: bool,
    },
    /// Round-trip latency with one message in flight per connection.
    Pingpong {
        #[command(flatten)]
        common: Common,
        /// Connections.
        #[arg(long, default_value_t = 16)]
        conns: usize,
        /// Payload bytes per message.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Text messages (ASCII payload) instead of binary ones.
        #[arg(long)]
        text: bool,
    },
    /// Connect → upgrade → close loops.
    Handshake {
        #[command(flatten)]
        common: Common,
        /// Loops at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Opens CONNS connections, prints `{"ready":N}`, holds them until stdin closes.
    Idle {
        #[command(flatten)]
        common: Common,
        /// Connections to hold.
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        /// First source address index (127.0.0.(BASE+1)), to run several processes.
        #[arg(long, default_value_t = 0)]
        base: usize,
        /// Handshakes at once while opening.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Seconds to hold at most.
        #[arg(long, default_value_t = 120.0)]
        hold_max: f64,
    },
    /// Broadcast fan-out on a route that broadcasts (reported unavailable when refused).
    Fanout {
        #[command(flatten)]
        common: Common,
        /// Subscriber connections.
        #[arg(long, default_value_t = 10_000)]
        subscribers: usize,
        /// Payload bytes per message (at least 8).
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Broadcasts in flight.
        #[arg(long, default_value_t = 4)]
        window: u64,
    },
    /// One connection, one text message; prints the first answer as `{"reply": TEXT}`.
    Probe {
        #[command(flatten)]
        common: Common,
        /// The text sent.
        #[arg(long, default_value = "?")]
        message: String,
        /// Seconds to wait for the answer (connecting included).
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
    },
    /// Connect/disconnect soak; checks the server's fds and RSS settle.
    Churn {
        #[command(flatten)]
        common: Common,
        /// Open/close loops at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Connections opened and dropped together every second.
        #[arg(long, default_value_t = 500)]
        burst: usize,
        /// A route that broadcasts every message to its connections: every
        /// other loop churns there (a soak with broadcasts).
        #[arg(long)]
        broadcast_path: Option<String>,
        /// Read the server's RSS and descriptors every this many seconds
        /// during the soak (for the growth per 100,000 connections).
        #[arg(long)]
        sample_secs: Option<f64>,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn secs(s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).context("durations are non-negative seconds")
}

fn target(c: &Common) -> Result<Arc<Target>> {
    target_at(c, &c.path)
}

/// The target of `c` with another route.
fn target_at(c: &Common, path: &str) -> Result<Arc<Target>> {
    if !c.addr.ip().is_loopback() {
        bail!(
            "{} is not a loopback address: ws-bench only loads local servers",
            c.addr
        );
    }
    let cookie = (!c.cookies.is_empty()).then(|| c.cookies.join("; "));
    Ok(Arc::new(Target::with_cookie(
        c.addr,
        path,
        cookie.as_deref(),
    )))
}

/// Raises the soft limit of open files to the hard limit.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    raise_nofile();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let out: Option<Value> = rt.block_on(async move {
        Ok::<_, anyhow::Error>(match cli.scenario {
            Scenario::Echo {
                common,
                conns,
                window,
                size,
                text,
            } => Some(
                echo::run(
                    target(&common)?,
                    echo::EchoParams {
                        conns,
                        window: window.max(1),
                        size,
                        text,
                        sources: common.sources,
                        warmup: secs(common.warmup)?,
                        duration: secs(common.duration)?,
                        server: common.server(),
                    },
                )
                .await?,
            ),
            Scenario::Pingpong {
                common,
                conns,
                size,
                text,
            } => Some(
                pingpong::run(
                    target(&common)?,
                    pingpong::PingPongParams {
                        conns,
                        size,
                        text,
                        warmup: secs(common.warmup)?,
                        duration: secs(common.duration)?,
                        server: common.server(),
                    },
                )
                .await?,
            ),
            Scenario::Handshake {
                common,
                concurrency,
            } => Some(
                handshake::run(
                    target(&common)?,
                    handshake::HandshakeParams {
                        concurrency,
                        sources: common.sources,
                        warmup: secs(common.warmup)?,
                        duration: secs(common.duration)?,
                        server: common.server(),
                    },
                )
                .await,
            ),
            Scenario::Idle {
                common,
                conns,
                base,
                concurrency,
                hold_max,
            } => {
                idle::run(
                    target(&common)?,
                    idle::IdleParams {
                        conns,
                        sources: common.sources,
                        base,
                        concurrency,
                        hold_max: secs(hold_max)?,
                    },
                )
                .await?;
                None
            }
            Scenario::Fanout {
                common,
                subscribers,
                size,
                window,
            } => Some(
                fanout::run(
                    target(&common)?,
                    fanout::FanoutParams {
                        subscribers,
                        size,
                        window,
                        sources: common.sources,
                        warmup: secs(common.warmup)?,
                        duration: secs(common.duration)?,
                        server: common.server(),
                    },
                )
                .await?,
            ),
            Scenario::Probe {
                common,
                message,
                timeout,
            } => Some(
                probe::run(&*target(&common)?, &message, secs(timeout)?)
                    .await
                    .with_context(|| format!("probe of {}{}", common.addr, common.path))?,
            ),
            Scenario::Churn {
                common,
                concurrency,
                burst,
                broadcast_path,
                sample_secs,
            } => {
                let Some(server_pid) = common.server_pid else {
                    bail!("churn needs --server-pid: the server's fds and RSS are its result");
                };
                Some(
                    churn::run(
                        target(&common)?,
                        churn::ChurnParams {
                            concurrency,
                            burst,
                            sources: common.sources,
                            warmup: secs(common.warmup)?,
                            duration: secs(common.duration)?,
                            server_pid,
                            broadcast: broadcast_path
                                .map(|path| target_at(&common, &path))
                                .transpose()?,
                            sample_every: sample_secs
                                .map(secs)
                                .transpose()?
                                .filter(|d| !d.is_zero()),
                        },
                    )
                    .await,
                )
            }
        })
    })?;
    if let Some(v) = out {
        println!("{v}");
    }
    Ok(())
}
