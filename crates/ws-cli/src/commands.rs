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
            // Not eprintln!: a closed stderr must not turn an error into a
            // panic.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn load(args: &ConfigArgs) -> Result<Effective> {
    Effective::load(args.config.as_deref(), &args.overrides())
}

/// Builds the server (on the async runtime: the aspects' sources are set
/// up there).
async fn build(
    components: Vec<Arc<dyn Component>>,
    eff: &Effective,
    hub: Option<(ws_core::Hub, ws_core::budget::MemoryBudget)>,
) -> Result<Server> {
    let mut builder = Server::builder()
        // Checked when the configuration was loaded.
        .config(eff.runtime_config())
        .authenticator(eff.authenticator().await?);
    if let Some((hub, budget)) = hub {
        // The broker's queue counts against the same budget as the
        // connections.
        builder = builder.hub(hub).memory_budget(budget);
    }
    for c in components {
        builder = builder.component_arc(c);
    }
    builder
        .build()
        .with_context(|| format!("cannot set up the server ({})", eff.source))
}

/// A small runtime for commands that only build (no serving).
fn small_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn route_table(routes: &[RouteInfo]) -> String {
    let width = routes
        .iter()
        .map(|r| r.path.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let cwidth = routes
        .iter()
        .map(|r| r.component.len())
        .max()
        .unwrap_or(9)
        .max(9);
    let mut out = format!("{:<width$}  {:<cwidth$}  POLICY\n", "PATH", "COMPONENT");
    for r in routes {
        out.push_str(&format!(
            "{:<width$}  {:<cwidth$}  {}\n",
            r.path,
            r.component,
            policy_summary(r)
        ));
    }
    out
}

fn limit(n: u64) -> String {
    if n == 0 {
        "unlimited".to_owned()
    } else {
        n.to_string()
    }
}

fn policy_summary(r: &RouteInfo) -> String {
    let origins = if r.allowed_origins.is_empty() {
        "any".to_owned()
    } else {
        r.allowed_origins.join(",")
    };
    let mut auth = String::new();
    if !r.require.is_empty() {
        auth.push_str(&format!(" require={}", r.require.join(",")));
    }
    if !r.require_groups.is_empty() {
        auth.push_str(&format!(" require_groups={}", r.require_groups.join(",")));
    }
    format!(
        "{}origins={origins}{} msgs/s={} max_message={}KiB max_frame={}KiB max_connections={}{auth}",
        if r.has_policy { "[[route]] " } else { "" },
        if r.require_origin { " (required)" } else { "" },
        limit(r.max_messages_per_second.into()),
        r.max_message_size / 1024,
        r.max_frame_size / 1024,
        if r.max_connections == 0 {
            "server-wide".to_owned()
        } else {
            r.max_connections.to_string()
        },
    )
}

/// `ws-cli routes`.
pub(crate) fn routes(components: Vec<Arc<dyn Component>>, args: &RoutesArgs) -> ExitCode {
    finish((|| {
        let eff = load(&args.config)?;
        let server = small_runtime()?.block_on(build(components, &eff, None))?;
        let routes = server.routes();
        if args.json {
            let items: Vec<RouteEntry> = routes.iter().map(RouteEntry::from).collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(&items).map_err(anyhow::Error::from)?
            );
        } else {
            out!("{}", route_table(&routes));
        }
        Ok(())
    })())
}

/// `ws-cli check-config`.
pub(crate) fn check_config(args: &ConfigArgs) -> ExitCode {
    finish((|| {
        let eff = load(args)?;
        // Key files, environment variables, URLs and templates of the
        // aspects; no session store is contacted.
        small_runtime()?.block_on(eff.authenticator())?;
        let mut shown = eff.file.clone();
        shown.server.state_dir = Some(eff.state_dir());
        if !shown.admin.key.is_empty() {
            shown.admin.key = "<redacted>".to_owned();
        }
        let text = toml::to_string_pretty(&shown).map_err(anyhow::Error::from)?;
        outln!("# configuration in force ({}); valid\n{text}", eff.source);
        Ok(())
    })())
}

/// `ws-cli start`.
pub(crate) fn start(components: Vec<Arc<dyn Component>>, args: &StartArgs) -> ExitCode {
    finish((|| {
        let eff = load(&args.config)?;
        crate::logging::init(eff.file.log.format, &eff.file.log.level);
        crate::nofile::raise(eff.server_config()?.max_connections);
        let addr = std::net::SocketAddr::new(eff.host_ip()?, eff.file.server.port);
        let admin = eff.admin()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(serve(components, &eff, addr, admin))?;
        Ok(())
    })())
}

/// Everything `start` does once the runtime runs: broker, server, admin
/// listener, info file; then the graceful shutdown of all of them.
async fn serve(
    components: Vec<Arc<dyn Component>>,
    eff: &Effective,
    addr: std::net::SocketAddr,
    admin: Option<(std::net::SocketAddr, ws_runtime::AdminConfig)>,
) -> Result<()> {
    let budget = ws_runtime::memory_budget(eff.file.websocket.max_buffered_memory);
    let broker = match eff.file.broker.redis_url {
        Some(_) => Some(
            ws_broker::RedisHub::connect_with_budget(eff.file.broker.clone(), budget.clone())
                .await
                .with_context(|| format!("cannot start the Redis broker ({})", eff.source))?,
        ),
        None => None,
    };
    let server = build(components, eff, broker.as_ref().map(|b| (b.hub(), budget))).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr().context("listener has no address")?;
    let admin_listener = match &admin {
        Some((admin_addr, _)) => Some(
            tokio::net::TcpListener::bind(admin_addr)
                .await
                .with_context(|| format!("cannot listen on {admin_addr} (`admin.listen`)"))?,
        ),
        None => None,
    };
    let signal = ws_runtime::shutdown_signal().context("cannot install signal handlers")?;
    // One signal stops the server and the admin listener alike.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        crate::systemd::stopping();
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let routes = server.routes();
    let info = Info {
        pid: std::process::id(),
        address: local.to_string(),
        routes: routes.iter().map(RouteEntry::from).collect(),
        started_at: state::now_secs(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let info_file = InfoFile::create(&eff.state_dir(), &info)?;
    outln!(
        "WebSocket server running on {local} with pid {}",
        std::process::id()
    );
    out!("{}", route_table(&routes));
    let admin_task = match (admin, admin_listener) {
        (Some((_, config)), Some(l)) => {
            let admin_local = l.local_addr().context("admin listener has no address")?;
            outln!("admin API on http://{admin_local}/publish");
            let hub = server.hub().clone();
            Some(tokio::spawn(ws_runtime::serve_admin(
                l,
                hub,
                config,
                stopped(stop_rx.clone()),
            )))
        }
        _ => {
            tracing::info!("admin API off (set `admin.key` or WS_ADMIN_KEY to turn it on)");
            None
        }
    };
    if let Some(b) = &broker {
        tracing::info!(status = %b.status(), "Redis broker connected");
    }
    for a in &eff.file.aspect {
        tracing::info!(
            aspect = %a.0.name,
            source = a.0.source.kind(),
            on_error = ?a.0.on_error,
            on_end = %a.0.on_end,
            "authentication aspect"
        );
    }
    tracing::info!(address = %local, pid = std::process::id(), info_file = %info_file.path().display(), "listening");
    crate::systemd::ready(local);
    let result = server
        .serve(listener, stopped(stop_rx))
        .await
        .context("server failed");
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    if let Some(b) = broker {
        // After the connections closed, so their leave notices went out.
        b.shutdown().await;
    }
    drop(info_file);
    result
}

fn uptime(started_at: u64) -> String {
    let secs = state::now_secs().saturating_sub(started_at);
    ws_config::format_duration(Duration::from_secs(secs))
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
            outln!(
                "{}",
                serde_json::to_string_pretty(&items).map_err(anyhow::Error::from)?
            );
            return Ok(());
        }
        if entries.is_empty() {
            outln!("no server running");
            return Ok(());
        }
        outln!(
            "{:<8} {:<8} {:<24} {:<12} ROUTES",
            "PID",
            "STATE",
            "ADDRESS",
            "UPTIME"
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
            outln!("{:<8} {state:<8} {addr:<24} {up:<12} {routes}", e.pid);
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
        outln!("no server running");
        return Ok(());
    }
    let mut waiting = Vec::new();
    let mut unremovable = Vec::new();
    for e in chosen {
        match e.state {
            State::Stale => {
                // Nobody holds the lock: the process is gone; never signal it.
                match std::fs::remove_file(&e.path) {
                    Ok(()) => outln!("removed stale entry for pid {}", e.pid),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => unremovable.push(format!(
                        "cannot remove stale info file `{}` of pid {}: {err}",
                        e.path.display(),
                        e.pid
                    )),
                }
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
                outln!("stopped server with pid {}", e.pid);
                break;
            }
            if Instant::now() >= deadline {
                outln!(
                    "server with pid {} still running after {}",
                    e.pid,
                    ws_config::format_duration(args.timeout)
                );
                failed.push(e.pid);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if !unremovable.is_empty() {
        return Err(anyhow::anyhow!("{}", unremovable.join("; ")).into());
    }
    if !failed.is_empty() {
        return Err(anyhow::anyhow!(
            "{} server(s) did not stop within {}: pid {}",
            failed.len(),
            ws_config::format_duration(args.timeout),
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
