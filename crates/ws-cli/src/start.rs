//! `start` and `routes`.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use ws_core::Component;
use ws_runtime::{RouteInfo, Server, ServerConfig};

use crate::cli::ServeArgs;

fn build(components: Vec<Arc<dyn Component>>, args: &ServeArgs) -> Result<Server> {
    let mut config = ServerConfig::default();
    config.route_prefix = args.prefix.clone();
    let mut builder = Server::builder().config(config);
    for c in components {
        builder = builder.component_arc(c);
    }
    builder.build().context("invalid server setup")
}

fn listen_addr(args: &ServeArgs) -> Result<SocketAddr> {
    let host = args.host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host
        .parse()
        .with_context(|| format!("--host `{}` is not an IP address", args.host))?;
    Ok(SocketAddr::new(ip, args.port))
}

fn report(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_routes(routes: &[RouteInfo]) {
    let width = routes
        .iter()
        .map(|r| r.path.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:<width$}  COMPONENT", "PATH");
    for r in routes {
        println!("{:<width$}  {}", r.path, r.component);
    }
}

/// `ws-cli routes`.
pub(crate) fn routes(components: Vec<Arc<dyn Component>>, args: &ServeArgs) -> ExitCode {
    report((|| {
        let server = build(components, args)?;
        let routes = server.routes();
        if args.json {
            let items: Vec<serde_json::Value> = routes
                .iter()
                .map(|r| serde_json::json!({"path": r.path, "component": r.component}))
                .collect();
            println!("{}", serde_json::Value::Array(items));
        } else {
            print_routes(&routes);
        }
        Ok(())
    })())
}

/// `ws-cli start`.
pub(crate) fn start(components: Vec<Arc<dyn Component>>, args: &ServeArgs) -> ExitCode {
    init_logging();
    report((|| {
        let server = build(components, args)?;
        let addr = listen_addr(args)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener.local_addr().context("listener has no address")?;
            println!(
                "WebSocket server running on {local} with pid {}",
                std::process::id()
            );
            print_routes(&server.routes());
            let shutdown =
                ws_runtime::shutdown_signal().context("cannot install signal handlers")?;
            tracing::info!(%local, "listening");
            server
                .serve(listener, shutdown)
                .await
                .context("server failed")
        })
    })())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
