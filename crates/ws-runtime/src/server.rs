//! The server: builder, accept loop, HTTP handshake, graceful shutdown.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use ws_core::{Component, Connection, HandshakeInfo, ServerContext};
use ws_routing::{RouteError, RouteTable, RouteTableBuilder};

use crate::config::{ConfigError, ServerConfig};
use crate::handshake::{self, Answer, Body, Kind};
use crate::session::{self, SessionConfig};
use crate::tasks;

/// Why a server could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A route is invalid or conflicts with another.
    #[error(transparent)]
    Route(#[from] RouteError),
}

/// One mounted route, for listings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    /// The full path, prefix included.
    pub path: String,
    /// The component's name (its type path by default).
    pub component: String,
}

/// Collects components and settings; [`build`](Self::build) checks them.
#[derive(Default)]
pub struct ServerBuilder {
    components: Vec<Arc<dyn Component>>,
    config: ServerConfig,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("components", &self.components.len())
            .field("config", &self.config)
            .finish()
    }
}

impl ServerBuilder {
    /// Mounts a component on its route.
    #[must_use]
    pub fn component(mut self, component: impl Component) -> Self {
        self.components.push(Arc::new(component));
        self
    }

    /// Mounts a shared component on its route.
    #[must_use]
    pub fn component_arc(mut self, component: Arc<dyn Component>) -> Self {
        self.components.push(component);
        self
    }

    /// Replaces the settings.
    #[must_use]
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Checks the settings and builds the route table.
    ///
    /// # Errors
    /// A setting out of range, an invalid route, or two components on
    /// conflicting routes (the error names both).
    pub fn build(self) -> Result<Server, BuildError> {
        self.config.validate()?;
        let mut routes = RouteTableBuilder::new(&self.config.route_prefix)?;
        for c in self.components {
            let route: Option<Cow<'static, str>> = c.route();
            let name = c.name();
            routes.add(route.as_deref(), &name, c)?;
        }
        Ok(Server {
            shared: Arc::new(Shared {
                routes: routes.build(),
                ws_config: ws_config(&self.config),
                session: SessionConfig {
                    ping_interval: self.config.ping_interval,
                    write_timeout: self.config.write_timeout,
                    shutdown_timeout: self.config.shutdown_timeout,
                },
                config: self.config,
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
                open: AtomicUsize::new(0),
            }),
        })
    }
}

fn ws_config(c: &ServerConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(c.read_buffer_size)
        .write_buffer_size(c.write_buffer_size)
        .max_message_size(Some(c.max_message_size))
        .max_frame_size(Some(c.max_frame_size))
}

/// State shared by every connection of one server.
struct Shared {
    /// Components by route, matched on each handshake.
    routes: RouteTable<Arc<dyn Component>>,
    /// The settings, as validated.
    config: ServerConfig,
    /// tungstenite's settings, derived once.
    ws_config: WebSocketConfig,
    /// What each session needs from the settings.
    session: SessionConfig,
    /// Cancelled when shutdown starts: sessions close with 1001.
    shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    tracker: TaskTracker,
    /// Open WebSocket sessions.
    open: AtomicUsize,
}

/// A built server; [`serve`](Self::serve) runs it.
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("routes", &self.routes())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A builder with the default settings and no component.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Every mounted route with its component, in registration order.
    pub fn routes(&self) -> Vec<RouteInfo> {
        self.shared
            .routes
            .routes()
            .iter()
            .map(|r| RouteInfo {
                path: r.path().to_owned(),
                component: r.component().to_owned(),
            })
            .collect()
    }

    /// The settings in force.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// WebSocket connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Serves connections from `listener` until `shutdown` completes, then
    /// shuts down gracefully: stops accepting, stops the components' timers
    /// and tasks, closes every connection with 1001, and waits up to
    /// `shutdown_timeout` for clients to answer.
    ///
    /// # Errors
    /// Only when a component's signal handler cannot be installed.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let shared = &self.shared;
        let mut work = Vec::new();
        for route in shared.routes.routes() {
            let mut ctx = ServerContext::new(route.path());
            Arc::clone(route.value()).configure(&mut ctx);
            work.extend(
                ctx.into_tasks()
                    .into_iter()
                    .map(|t| (route.component().to_owned(), t)),
            );
        }
        let mut background = tasks::start(work)?;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let shared = Arc::clone(&self.shared);
                        self.shared.tracker.spawn(handle_tcp(shared, stream, peer));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        tracing::info!(
            open = self.open_connections(),
            "shutting down: closing connections with 1001"
        );
        background.abort_all();
        while background.join_next().await.is_some() {}
        shared.shutdown.cancel();
        shared.tracker.close();
        // Sessions bound their own close handshake by shutdown_timeout; the
        // margin covers handshakes in flight and on_close hooks.
        let limit = shared.config.shutdown_timeout
            + shared.config.handshake_timeout.min(Duration::from_secs(2));
        if tokio::time::timeout(limit, shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.open_connections(),
                "connections still open after the shutdown timeout"
            );
        }
        tracing::info!("server stopped");
        Ok(())
    }
}

async fn handle_tcp(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    serve_http(shared, stream, peer).await;
}

/// Serves the HTTP request on one connection: an upgrade becomes a session,
/// anything else gets its answer, and a client too slow to send its request
/// head within the handshake timeout is dropped.
async fn serve_http<S>(shared: Arc<Shared>, io: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let deadline = tokio::time::Instant::now() + shared.config.handshake_timeout;
    let svc_shared = Arc::clone(&shared);
    let service = hyper::service::service_fn(move |req| {
        let shared = Arc::clone(&svc_shared);
        async move { Ok::<_, Infallible>(handle_request::<S>(shared, req, peer)) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(shared.config.handshake_timeout)
        // Keep-alive stays on: turning it off makes hyper add `close` to the
        // 101's `Connection` header. The deadline below bounds the connection.
        .keep_alive(true)
        .max_buf_size(shared.config.max_request_size.max(8192));
    let conn = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    match tokio::time::timeout_at(deadline, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "handshake failed"),
        Err(_) => tracing::debug!(%peer, "handshake timed out"),
    }
}

fn handle_request<S>(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let result = (|| {
        if handshake::head_size(&req) > shared.config.max_request_size {
            return Err(Answer::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!(
                    "request head exceeds {} KiB (max_request_size_in_kb)",
                    shared.config.max_request_size / 1024
                ),
            ));
        }
        let kind = handshake::classify(&req)?;
        let path = req.uri().path();
        let key = match kind {
            Kind::Plain => {
                if !shared.config.health_path.is_empty() && path == shared.config.health_path {
                    return Err(Answer::new(StatusCode::OK, "ok"));
                }
                return Err(if shared.routes.at(path).is_some() {
                    Answer::new(
                        StatusCode::UPGRADE_REQUIRED,
                        "this path speaks WebSocket only",
                    )
                    .header(http::header::UPGRADE, "websocket")
                    .header(http::header::SEC_WEBSOCKET_VERSION, "13")
                } else {
                    Answer::new(StatusCode::NOT_FOUND, format!("no route for `{path}`"))
                });
            }
            Kind::Upgrade { key } => key,
        };
        let Some(found) = shared.routes.at(path) else {
            return Err(Answer::new(
                StatusCode::NOT_FOUND,
                format!("no WebSocket route for `{path}`"),
            ));
        };
        let component = Arc::clone(found.route.value());
        let supported = component.subprotocols();
        let protocol = handshake::choose_protocol(&supported, req.headers()).map(str::to_owned);
        let mut info = HandshakeInfo::new(peer, path);
        info.query = req.uri().query().map(str::to_owned);
        info.route = found.route.path().to_owned();
        info.params = found.params;
        info.subprotocol = protocol;
        info.headers = std::mem::take(req.headers_mut());
        let response = handshake::switching_protocols(&key, info.subprotocol.as_deref());
        let upgrade = hyper::upgrade::on(&mut req);
        let task_shared = Arc::clone(&shared);
        shared.tracker.spawn(async move {
            match upgrade.await {
                Ok(upgraded) => start_session::<S>(task_shared, upgraded, info, component).await,
                Err(e) => tracing::debug!(%peer, error = %e, "upgrade failed"),
            }
        });
        Ok(response)
    })();
    match result {
        Ok(resp) => resp,
        Err(answer) => {
            if answer.status != StatusCode::OK {
                tracing::debug!(%peer, status = answer.status.as_u16(), reason = %answer.message, "handshake refused");
            }
            answer.into_response()
        }
    }
}

async fn start_session<S>(
    shared: Arc<Shared>,
    upgraded: hyper::upgrade::Upgraded,
    info: HandshakeInfo,
    component: Arc<dyn Component>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Take back the plain stream so the session does not pay for hyper's
    // boxed IO on every read and write.
    let Ok(parts) = upgraded.downcast::<TokioIo<S>>() else {
        tracing::error!("upgraded connection has an unexpected IO type");
        return;
    };
    let io = parts.io.into_inner();
    let ws = if parts.read_buf.is_empty() {
        WebSocketStream::from_raw_socket(io, Role::Server, Some(shared.ws_config)).await
    } else {
        WebSocketStream::from_partially_read(
            io,
            parts.read_buf.to_vec(),
            Role::Server,
            Some(shared.ws_config),
        )
        .await
    };
    let (conn, outbox) = Connection::new(info, shared.config.outgoing_queue);
    tracing::debug!(
        conn = %conn.id(),
        route = %conn.handshake().route,
        client = %conn.client_addr(),
        "connection opened"
    );
    shared.open.fetch_add(1, Ordering::Relaxed);
    let started = std::time::Instant::now();
    session::run(
        ws,
        conn.clone(),
        outbox,
        component,
        shared.session.clone(),
        shared.shutdown.clone(),
    )
    .await;
    shared.open.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(conn = %conn.id(), duration_ms = started.elapsed().as_millis() as u64, "session ended");
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
