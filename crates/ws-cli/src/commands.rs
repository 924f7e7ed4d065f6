//! The commands: start, stop, list, routes, check-config.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use ws_core::Component;
use ws_runtime::{RouteInfo, Server};

use crate::cli::{ConfigArgs, ListArgs, RoutesArgs, StartArgs, StopArgs};
use crate::config::Effective;
use crate::state::{self, Info, InfoFile, RouteEntry, State};

/// Exit code for a command that was used wrongly (unknown pid, …).
const USAGE: u8 = 2;

/// An error with its exit code.
pub(crate) struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self { code: 1, error }
    }
}

pub(crate) fn finish(result: std::result::Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn load(args: &ConfigArgs) -> Result<Effective> {
    Effective::load(args.config.as_deref(), &args.overrides())
}

fn build(components: Vec<Arc<dyn Component>>, eff: &Effective) -> Result<Server> {
    let mut builder = Server::builder().config(eff.server_config()?);
    for c in components {
        builder = builder.component_arc(c);
    }
    builder
        .build()
        .with_context(|| format!("cannot set up the server ({})", eff.source))
}

fn route_table(routes: &[RouteInfo]) -> String {
    let width = routes
        .iter()
        .map(|r| r.path.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!("{:<width$}  COMPONENT\n", "PATH");
    for r in routes {
        out.push_str(&format!("{:<width$}  {}\n", r.path, r.component));
    }
    out
}

/// `ws-cli routes`.
pub(crate) fn routes(components: Vec<Arc<dyn Component>>, args: &RoutesArgs) -> ExitCode {
    finish((|| {
        let eff = load(&args.config)?;
        let server = build(components, &eff)?;
        let routes = server.routes();
        if args.json {
            let items: Vec<RouteEntry> = routes
                .iter()
                .map(|r| RouteEntry {
                    path: r.path.clone(),
                    component: r.component.clone(),
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&items).map_err(anyhow::Error::from)?
            );
        } else {
            print!("{}", route_table(&routes));
        }
        Ok(())
    })())
}

/// `ws-cli check-config`.
pub(crate) fn check_config(args: &ConfigArgs) -> ExitCode {
    finish((|| {
        let eff = load(args)?;
        let mut shown = eff.file.clone();
        shown.server.state_dir = Some(eff.state_dir());
        let text = toml::to_string_pretty(&shown).map_err(anyhow::Error::from)?;
        println!("# configuration in force ({}); valid\n{text}", eff.source);
        Ok(())
    })())
}

/// `ws-cli start`.
pub(crate) fn start(components: Vec<Arc<dyn Component>>, args: &StartArgs) -> ExitCode {
    finish((|| {
        let eff = load(&args.config)?;
        crate::logging::init(eff.file.log.format, &eff.file.log.level);
        let server = build(components, &eff)?;
        let addr = std::net::SocketAddr::new(eff.host_ip()?, eff.file.server.port);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener.local_addr().context("listener has no address")?;
            let shutdown =
                ws_runtime::shutdown_signal().context("cannot install signal handlers")?;
            let routes = server.routes();
            let info = Info {
                pid: std::process::id(),
                address: local.to_string(),
                routes: routes
                    .iter()
                    .map(|r| RouteEntry {
                        path: r.path.clone(),
                        component: r.component.clone(),
                    })
                    .collect(),
                started_at: state::now_secs(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            let info_file = InfoFile::create(&eff.state_dir(), &info)?;
            println!(
                "WebSocket server running on {local} with pid {}",
                std::process::id()
            );
            print!("{}", route_table(&routes));
            tracing::info!(address = %local, pid = std::process::id(), info_file = %info_file.path().display(), "listening");
            let result = server.serve(listener, shutdown).await.context("server failed");
            drop(info_file);
            result
        })?;
        Ok(())
    })())
}

fn uptime(started_at: u64) -> String {
    let secs = state::now_secs().saturating_sub(started_at);
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// `ws-cli list`.
pub(crate) fn list(args: &ListArgs) -> ExitCode {
    finish((|| {
        let eff = load(&args.config)?;
        let entries = state::scan(&eff.state_dir())?;
        if args.json {
            let items: Vec<serde_json::Value> = entries
                .iter()
                .map(|e| {
                    let i = e.info.as_ref();
                    serde_json::json!({
                        "pid": e.pid,
                        "address": i.map(|i| i.address.clone()),
                        "state": e.state,
                        "started_at": i.map(|i| i.started_at),
                        "version": i.map(|i| i.version.clone()),
                        "routes": i.map(|i| i.routes.clone()).unwrap_or_default(),
                        "info_file": e.path,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&items).map_err(anyhow::Error::from)?
            );
            return Ok(());
        }
        if entries.is_empty() {
            println!("no server running");
            return Ok(());
        }
        println!(
            "{:<8} {:<8} {:<24} {:<12} ROUTES",
            "PID", "STATE", "ADDRESS", "UPTIME"
        );
        for e in &entries {
            let (addr, up, routes) = match &e.info {
                Some(i) => (
                    i.address.clone(),
                    uptime(i.started_at),
                    i.routes
                        .iter()
                        .map(|r| r.path.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                None => ("?".into(), "?".into(), String::new()),
            };
            let state = match e.state {
                State::Running => "running",
                State::Stale => "stale",
            };
            let up = if e.state == State::Running {
                up
            } else {
                "-".into()
            };
            println!("{:<8} {state:<8} {addr:<24} {up:<12} {routes}", e.pid);
        }
        Ok(())
    })())
}

/// `ws-cli stop`.
pub(crate) fn stop(args: &StopArgs) -> ExitCode {
    finish(stop_inner(args))
}

fn stop_inner(args: &StopArgs) -> std::result::Result<(), Failure> {
    let eff = load(&args.config)?;
    let dir = eff.state_dir();
    let entries = state::scan(&dir)?;
    let chosen: Vec<_> = match args.pid {
        Some(pid) => {
            let found: Vec<_> = entries.into_iter().filter(|e| e.pid == pid).collect();
            if found.is_empty() {
                return Err(Failure {
                    code: USAGE,
                    error: anyhow::anyhow!(
                        "no server with pid {pid} in `{}` (see `ws-cli list`)",
                        dir.display()
                    ),
                });
            }
            found
        }
        None => entries,
    };
    if chosen.is_empty() {
        println!("no server running");
        return Ok(());
    }
    let mut waiting = Vec::new();
    for e in chosen {
        match e.state {
            State::Stale => {
                // Nobody holds the lock: the process is gone; never signal it.
                let _ = std::fs::remove_file(&e.path);
                println!("removed stale entry for pid {}", e.pid);
            }
            State::Running => {
                let pid = i32::try_from(e.pid).map_err(anyhow::Error::from)?;
                match nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                ) {
                    Ok(()) => waiting.push(e),
                    Err(err) => {
                        return Err(anyhow::anyhow!("cannot signal pid {}: {err}", e.pid).into());
                    }
                }
            }
        }
    }
    let deadline = Instant::now() + args.timeout;
    let mut failed = Vec::new();
    for e in waiting {
        loop {
            let alive = e.path.exists() && state::is_locked(&e.path).unwrap_or(false);
            if !alive {
                println!("stopped server with pid {}", e.pid);
                break;
            }
            if Instant::now() >= deadline {
                println!(
                    "server with pid {} still running after {}",
                    e.pid,
                    humantime::format_duration(args.timeout)
                );
                failed.push(e.pid);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if !failed.is_empty() {
        return Err(anyhow::anyhow!(
            "{} server(s) did not stop within {}: pid {}",
            failed.len(),
            humantime::format_duration(args.timeout),
            failed
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into());
    }
    Ok(())
}
