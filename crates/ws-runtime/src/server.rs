//! The server: builder, accept loop (TLS included), HTTP handshake through
//! the pipeline, sessions, graceful shutdown.

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::task::TaskTracker;
use tower::{Layer, Service, ServiceExt as _};
use ws_core::__runtime::{self, Membership};
use ws_core::budget::MemoryBudget;
use ws_core::hub::LocalHub;
use ws_core::{
    Aspects, BoxError, CloseCode, Component, Connection, ConnectionId, HandshakeInfo, Hub,
};
use ws_ratelimit::{AddressMessageLimiter, ConnectionLimiter, ConnectionPermit, LimitError};
use ws_routing::{RouteError, RouteTable, RouteTableBuilder};

use crate::accept;
use crate::auth::{self, Auth, HeldRevalidators};
use crate::authenticate::{Authenticate, Revalidate};
use crate::client_addr::ClientAddrResolver;
use crate::config::{ConfigError, ServerConfig};
use crate::handshake::{self, Answer, Kind};
use crate::io::Io;
use crate::origin::OriginPolicy;
use crate::pipeline::{
    self, BoxedLayer, ClientAddr, ClientCertificates, Guarded, HandshakeRequest, HandshakeResponse,
    HandshakeService, HeldPermits, PeerAddr, refusal,
};
use crate::policy::{self, MountedRoute, RouteInfo};
use crate::read_ahead::ReadAhead;
use crate::session::{self, MessageGuard, SessionConfig};
use crate::tasks;
use crate::tls::{Tls, TlsError};

/// Why a server could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting is out of range, or a `[[route]]` entry names no route.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A route is invalid or conflicts with another.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// A TLS file is missing, unreadable or does not fit.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Collects components, settings and handshake layers;
/// [`build`](Self::build) checks them.
#[derive(Default)]
pub struct ServerBuilder {
    components: Vec<Arc<dyn Component>>,
    config: ServerConfig,
    layers: Vec<BoxedLayer>,
    hub: Option<Hub>,
    budget: Option<MemoryBudget>,
    authenticator: Option<Arc<dyn Authenticate>>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("components", &self.components.len())
            .field("config", &self.config)
            .field("layers", &self.layers.len())
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

    /// Uses `hub` for channels and presence instead of an in-process one
    /// (for example a Redis broker that reaches other server processes).
    #[must_use]
    pub fn hub(mut self, hub: Hub) -> Self {
        self.hub = Some(hub);
        self
    }

    /// Resolves who is on each connection with `authenticator` (`ws-auth`'s
    /// `Authenticator` in the stock server): its aspects are resolved at
    /// every handshake for a mounted route, after the connection limits;
    /// the routes' `require` and `require_groups` are enforced (401, 403);
    /// open sessions are re-checked and end by each aspect's `on_end`.
    /// Without one (the default), or with one that has no aspect, the
    /// pipeline has no authentication stage.
    #[must_use]
    pub fn authenticator(mut self, authenticator: impl Authenticate) -> Self {
        self.authenticator = Some(Arc::new(authenticator));
        self
    }

    /// Shares `budget` as the server's memory budget, for example with a
    /// broker whose queue counts against it too. Its limit replaces
    /// `max_buffered_memory`. Default: a budget of its own of
    /// `max_buffered_memory` bytes.
    #[must_use]
    pub fn memory_budget(mut self, budget: MemoryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Replaces the settings.
    #[must_use]
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Adds a tower layer to the handshake pipeline.
    ///
    /// It runs after the built-in guards (client address, origin check,
    /// connection limits) and before the route match and the upgrade; layers
    /// added first run first. Its service gets every valid upgrade request
    /// as a [`HandshakeRequest`] (headers, path, and extensions such as
    /// [`ClientAddr`]) and answers with a [`HandshakeResponse`]: its own
    /// refusal (see [`refusal`](crate::refusal)), or what the inner service
    /// answers. A service error is answered with 500. The simplest layer is
    /// an async function, [`handshake_fn`](crate::handshake_fn); any
    /// [`tower::Layer`] of that shape works too:
    ///
    /// ```
    /// use ws_runtime::tower::util::MapRequestLayer;
    /// use ws_runtime::{HandshakeRequest, Server};
    ///
    /// // Tags every handshake; a component sees the header in `conn.headers()`.
    /// let tag = MapRequestLayer::new(|mut req: HandshakeRequest| {
    ///     req.headers_mut().insert("x-tagged", http::HeaderValue::from_static("yes"));
    ///     req
    /// });
    /// let server = Server::builder()
    ///     .component(ws_core::component_fn("/echo", |conn: ws_core::Connection, msg| async move {
    ///         conn.send(msg)?;
    ///         Ok(())
    ///     }))
    ///     .layer(tag)
    ///     .build()?;
    /// # drop(server);
    /// # Ok::<(), ws_runtime::BuildError>(())
    /// ```
    #[must_use]
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<HandshakeService> + Send + 'static,
        L::Service:
            Service<HandshakeRequest, Response = HandshakeResponse> + Clone + Send + Sync + 'static,
        <L::Service as Service<HandshakeRequest>>::Error: Into<BoxError>,
        <L::Service as Service<HandshakeRequest>>::Future: Send + 'static,
    {
        self.layers.push(pipeline::boxed_layer(layer));
        self
    }

    /// Checks the settings, builds the route table, resolves the `[[route]]`
    /// entries, loads the TLS files and assembles the handshake pipeline.
    ///
    /// # Errors
    /// A setting out of range, an invalid route, two components on
    /// conflicting routes (the error names both), a `[[route]]` entry naming
    /// no route, a route's `require` naming an aspect the
    /// [`authenticator`](Self::authenticator) does not have, or a TLS file
    /// that is missing, unreadable or mismatched (the error names the file).
    pub fn build(self) -> Result<Server, BuildError> {
        let config = self.config;
        let hub = self
            .hub
            .unwrap_or_else(|| Hub::new(LocalHub::new(config.slow_subscriber)));
        // Checked and parsed once: what validation accepts is what runs.
        let parsed = config.parse()?;
        let auth = self.authenticator.and_then(Auth::new);
        let aspects: Vec<&str> = auth.iter().flat_map(|a| a.names()).collect();
        config.check_required_aspects(&aspects)?;
        let mut routes = RouteTableBuilder::new(&config.route_prefix)?;
        let mut components = Vec::with_capacity(self.components.len());
        for (index, c) in self.components.into_iter().enumerate() {
            let route: Option<Cow<'static, str>> = c.route();
            routes.add(route.as_deref(), &c.name(), index)?;
            components.push(c);
        }
        let routes = routes.build();
        let mounted = policy::mount(&config, &parsed, &routes, components)?;
        let limiter = ConnectionLimiter::new(config.connection_limits()).map_err(|e| {
            let key = match e {
                LimitError::Ipv4PrefixLen(_) => "ipv4_prefix_len",
                _ => "ipv6_prefix_len",
            };
            ConfigError::new(key, e.to_string()).in_section("server")
        })?;
        let address_messages = AddressMessageLimiter::new(
            config.max_messages_per_address_per_second,
            limiter.grouping(),
        );
        let resolver = ClientAddrResolver::new(
            parsed.trusted,
            config.forwarded_header,
            config.max_connections_per_address > 0
                || config.max_connections_per_address_per_second > 0
                || config.max_messages_per_address_per_second > 0,
        );
        let server_origin = parsed.origin;
        let tls = config.tls.clone().map(Tls::load).transpose()?;
        let budget = self
            .budget
            .unwrap_or_else(|| memory_budget(config.websocket.max_buffered_memory));
        let shared = Arc::new(Shared {
            routes,
            mounted,
            session: SessionConfig {
                ping_interval: config.websocket.ping_interval,
                write_timeout: config.websocket.write_timeout,
                shutdown_timeout: config.shutdown_timeout,
            },
            limiter,
            address_messages,
            tls,
            hub,
            budget,
            auth,
            config,
            sessions: Sessions::default(),
            tracker: TaskTracker::new(),
        });
        let pipeline = Arc::new(Pipeline::new(&shared, self.layers, resolver, server_origin));
        Ok(Server { shared, pipeline })
    }
}

/// The budget for `max_buffered_memory` bytes (0: unlimited).
pub fn memory_budget(max_buffered_memory: usize) -> MemoryBudget {
    if max_buffered_memory == 0 {
        MemoryBudget::unlimited()
    } else {
        MemoryBudget::new(max_buffered_memory)
    }
}

/// The handshake pipeline (see the [`pipeline`] module): the built-in
/// stages as plain code, and the user's layers, if any, as one service
/// ending in the route.
pub(crate) struct Pipeline {
    resolver: ClientAddrResolver,
    /// The server's origin policy, for a path that matches no route.
    server_origin: Arc<OriginPolicy>,
    /// Whether any policy restricts origins at all.
    checks_origin: bool,
    /// The user's layers over the route; `None`: straight to the route.
    user: Option<HandshakeService>,
}

impl Pipeline {
    fn new(
        shared: &Arc<Shared>,
        layers: Vec<BoxedLayer>,
        resolver: ClientAddrResolver,
        server_origin: Arc<OriginPolicy>,
    ) -> Self {
        let user = (!layers.is_empty()).then(|| {
            // 6. route match, the route's own limit, upgrade.
            let shared = Arc::clone(shared);
            let mut service =
                HandshakeService::new(tower::service_fn(move |req: HandshakeRequest| {
                    let resp = upgrade(&shared, req, true);
                    async move { Ok::<_, Infallible>(resp) }
                }));
            // 5. the user's layers; the first added runs first.
            for layer in layers.into_iter().rev() {
                service = layer(service);
            }
            service
        });
        let checks_origin =
            !server_origin.allows_all() || shared.mounted.iter().any(|m| !m.origin.allows_all());
        Self {
            resolver,
            server_origin,
            checks_origin,
            user,
        }
    }

    /// Runs `req` through every stage.
    async fn run(&self, shared: &Arc<Shared>, mut req: HandshakeRequest) -> HandshakeResponse {
        // 1.–3. client address, origin check (by the route's policy: the
        //    route is only looked up; an unknown path is refused later, with
        //    404), connection limits.
        let policy_for = |path: &str| {
            let policy = match shared.routes.at(path) {
                Some(found) => Arc::clone(&shared.mounted[*found.route.value()].origin),
                None => Arc::clone(&self.server_origin),
            };
            (!policy.allows_all()).then_some(policy)
        };
        let policy_for = self.checks_origin.then_some(&policy_for);
        let (client, mut resp) =
            match pipeline::guard(&mut req, &self.resolver, policy_for, &shared.limiter) {
                Guarded::Pass(client) => (Some(client), self.after_guards(shared, req).await),
                Guarded::Refused(client, resp) => (client, resp),
            };
        // For the log line of a refusal (which falls back to the peer when
        // the client's address was never learnt).
        if let Some(client) = client
            && resp.status() != StatusCode::SWITCHING_PROTOCOLS
        {
            resp.extensions_mut().insert(ClientAddr(client));
        }
        resp
    }

    /// 4. authentication, 5. the user's layers, 6. the route.
    async fn after_guards(
        &self,
        shared: &Arc<Shared>,
        mut req: HandshakeRequest,
    ) -> HandshakeResponse {
        // After the limits, so refused clients cost no session look-up;
        // skipped entirely when no aspect is configured, and for a path
        // that matches no route (its 404 comes at the end, without asking
        // any store).
        if let Some(auth) = &shared.auth
            && let Some(found) = shared.routes.at(req.uri().path())
        {
            let requirement = Arc::clone(&shared.mounted[*found.route.value()].requirement);
            if let Some(refused) = auth::authenticate(auth, &requirement, &mut req).await {
                return refused;
            }
        }
        match &self.user {
            Some(service) => match service.clone().oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            },
            None => upgrade(shared, req, false),
        }
    }
}

/// State shared by every connection of one server.
struct Shared {
    /// Route paths to indexes into `mounted`, matched on each handshake.
    routes: RouteTable<usize>,
    /// Every route's component and the policy in force on it.
    mounted: Vec<MountedRoute>,
    /// The settings, as validated.
    config: ServerConfig,
    /// What each session needs from the settings.
    session: SessionConfig,
    /// The server-wide connection limits, shared by every handshake.
    limiter: ConnectionLimiter,
    /// Per-address message budgets (`max_messages_per_address_per_second`).
    address_messages: AddressMessageLimiter,
    /// The certificate in use, when serving TLS; swapped on reload.
    tls: Option<Tls>,
    /// Channels and presence: in-process, or a broker reaching other servers.
    hub: Hub,
    /// `max_buffered_memory`: bytes held for every client together.
    budget: MemoryBudget,
    /// The configured aspects; `None` when there is none (no auth stage).
    auth: Option<Arc<Auth>>,
    /// Every open session, so shutdown can close them with 1001.
    sessions: Sessions,
    /// Every connection task, so shutdown can wait for them.
    tracker: TaskTracker,
}

/// A built server; [`serve`](Self::serve) runs it.
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
    /// The handshake pipeline.
    pipeline: Arc<Pipeline>,
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

    /// Every mounted route with its component and the policy in force on it
    /// (server-wide settings merged with its `[[route]]` entry), in
    /// registration order.
    pub fn routes(&self) -> Vec<RouteInfo> {
        self.shared.mounted.iter().map(|m| m.info.clone()).collect()
    }

    /// The settings in force.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// The hub every connection and component of this server shares.
    pub fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    /// The memory budget: bytes held for clients now, and the limit.
    pub fn memory_budget(&self) -> &MemoryBudget {
        &self.shared.budget
    }

    /// WebSocket connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.sessions.len()
    }

    /// Connections holding a place in the server-wide connection limits:
    /// open sessions plus handshakes admitted and not yet finished. Falls
    /// back to 0 once every connection is gone, whatever ended it.
    pub fn admitted_connections(&self) -> usize {
        self.shared.limiter.active()
    }

    /// Reads the `[tls]` files again and uses them for new connections; open
    /// connections keep theirs. On error the certificate in use stays.
    /// The server calls this on SIGHUP. It reads files, so it blocks briefly.
    ///
    /// # Errors
    /// [`TlsError::NotConfigured`] without TLS; otherwise the file that
    /// cannot be used.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        self.shared
            .tls
            .as_ref()
            .ok_or(TlsError::NotConfigured)?
            .reload()
    }

    /// Serves connections from `listener` until `shutdown` completes, then
    /// shuts down gracefully: stops accepting, stops the components' timers
    /// and tasks, closes every connection with 1001, and waits up to
    /// `shutdown_timeout` for clients to answer.
    ///
    /// With TLS, SIGHUP reloads the certificate ([`reload_tls`](Self::reload_tls));
    /// the handler is installed before the first connection is accepted.
    ///
    /// # Errors
    /// Only when a signal handler cannot be installed.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let shared = &self.shared;
        let mut work = Vec::new();
        for m in &shared.mounted {
            let mut ctx = __runtime::context(&m.info.path, self.shared.hub.clone());
            Arc::clone(&m.component).configure(&mut ctx);
            work.extend(
                __runtime::into_tasks(ctx)
                    .into_iter()
                    .map(|t| (m.info.component.clone(), t)),
            );
        }
        let mut background = tasks::start(work)?;
        if shared.tls.is_some() {
            background.spawn(reload_on_hangup(self.clone(), hangup()?));
        }
        tokio::pin!(shutdown);
        // Out of file descriptors and the like: back off (no busy loop),
        // keep serving the open connections, log once per episode.
        let mut failures = accept::Failures::new("WebSocket");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        failures.accepted();
                        let shared = Arc::clone(&self.shared);
                        let pipeline = Arc::clone(&self.pipeline);
                        self.shared.tracker.spawn(handle_tcp(shared, pipeline, stream, peer));
                    }
                    Err(e) => if failures.failed(&e) == accept::Next::BackOff {
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(accept::BACKOFF) => {}
                        }
                    },
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
        shared.sessions.close_all();
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

fn hangup() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

/// Reloads the certificate on every SIGHUP until aborted at shutdown.
async fn reload_on_hangup(server: Server, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        let s = server.clone();
        match tokio::task::spawn_blocking(move || s.reload_tls()).await {
            Ok(Ok(())) => tracing::info!("SIGHUP: TLS certificate reloaded"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "SIGHUP: TLS reload failed, keeping the certificate in use");
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: TLS reload task failed"),
        }
    }
}

/// One accepted connection, on one task: the handshake, then (for an
/// accepted upgrade) the session.
///
/// Not an `async fn`: its arguments would stay in the task for the
/// connection's whole life. The handshake gets them, boxed and gone once
/// done (TLS, hyper and pipeline state must not stay in the task either).
fn handle_tcp(
    shared: Arc<Shared>,
    pipeline: Arc<Pipeline>,
    stream: TcpStream,
    peer: SocketAddr,
) -> impl Future<Output = ()> + Send {
    let handshake = Box::pin({
        let shared = Arc::clone(&shared);
        async move {
            let pending = handshake(shared, pipeline, stream, peer).await?;
            upgraded(pending).await
        }
    });
    async move {
        // Nothing of the handshake's outcome but the session's box is kept
        // while the session runs.
        let session = handshake
            .await
            .and_then(|(upgraded, upgrading)| open_session(&shared, upgraded, upgrading));
        if let Some(session) = session {
            session::run(session).await;
        }
    }
}

/// TLS (within the handshake deadline), then HTTP; the session an accepted
/// upgrade left to run.
async fn handshake(
    shared: Arc<Shared>,
    pipeline: Arc<Pipeline>,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<PendingSession> {
    let deadline = Instant::now() + shared.config.handshake_timeout;
    let _ = stream.set_nodelay(true);
    let (io, certificates) = match &shared.tls {
        None => (Io::Plain(stream), None),
        Some(tls) => match timeout_at(deadline, tls.acceptor().accept(stream)).await {
            Ok(Ok(stream)) => {
                let certificates = stream.get_ref().1.peer_certificates().map(|chain| {
                    ClientCertificates(
                        chain
                            .iter()
                            .map(|c| Bytes::copy_from_slice(c.as_ref()))
                            .collect(),
                    )
                });
                (Io::Tls(Box::new(stream)), certificates)
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return None;
            }
        },
    };
    serve_http(shared, pipeline, io, peer, certificates, deadline).await
}

/// Serves the HTTP request on one connection: an upgrade goes through the
/// pipeline and leaves its session to run, anything else gets its answer,
/// and a client too slow to send its request head by `deadline` is dropped.
async fn serve_http(
    shared: Arc<Shared>,
    pipeline: Arc<Pipeline>,
    io: Io,
    peer: SocketAddr,
    certificates: Option<ClientCertificates>,
    deadline: Instant,
) -> Option<PendingSession> {
    let svc_shared = Arc::clone(&shared);
    let slot = SessionSlot::default();
    let svc_slot = slot.clone();
    let service = hyper::service::service_fn(move |req| {
        handle_request(
            Arc::clone(&svc_shared),
            Arc::clone(&pipeline),
            req,
            peer,
            certificates.clone(),
            svc_slot.clone(),
        )
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
    match timeout_at(deadline, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "handshake failed"),
        Err(_) => tracing::debug!(%peer, "handshake timed out"),
    }
    // An accepted upgrade left its session here.
    slot.take()
}

/// Answers one request: plain requests and malformed upgrades here, valid
/// upgrades through the pipeline.
async fn handle_request(
    shared: Arc<Shared>,
    pipeline: Arc<Pipeline>,
    req: Request<Incoming>,
    peer: SocketAddr,
    certificates: Option<ClientCertificates>,
    slot: SessionSlot,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // An upgrade has no body; the extensions (hyper's upgrade handle among
    // them) stay with the request.
    let (parts, _body) = req.into_parts();
    let mut req = Request::from_parts(parts, ());
    let resp = match check_request(&shared, &req) {
        Err(answer) => answer.into_response(),
        Ok(()) => {
            let ext = req.extensions_mut();
            ext.insert(PeerAddr(peer));
            ext.insert(HeldPermits::default());
            ext.insert(slot);
            if let Some(c) = certificates {
                ext.insert(c);
            }
            pipeline.run(&shared, req).await
        }
    };
    let status = resp.status();
    if status != StatusCode::SWITCHING_PROTOCOLS && status != StatusCode::OK {
        let client = resp.extensions().get::<ClientAddr>().map_or(peer, |c| c.0);
        tracing::debug!(
            %peer,
            %client,
            status = status.as_u16(),
            reason = %String::from_utf8_lossy(resp.body()).trim_end(),
            "handshake refused"
        );
    }
    Ok(resp.map(Full::new))
}

/// What every request is checked for before the pipeline: the head's size,
/// and that it is a well-formed upgrade (else the plain answers: health
/// check, 426 on a route, 404).
fn check_request(shared: &Shared, req: &HandshakeRequest) -> Result<(), Answer> {
    if handshake::head_size(req) > shared.config.max_request_size {
        return Err(Answer::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "request head exceeds {} KiB (max_request_size_in_kb)",
                shared.config.max_request_size / 1024
            ),
        ));
    }
    match handshake::classify(req)? {
        Kind::Upgrade { .. } => Ok(()),
        Kind::Plain => {
            let path = req.uri().path();
            if !shared.config.health_path.is_empty() && path == shared.config.health_path {
                return Err(Answer::new(StatusCode::OK, "ok"));
            }
            Err(if shared.routes.at(path).is_some() {
                Answer::new(
                    StatusCode::UPGRADE_REQUIRED,
                    "this path speaks WebSocket only",
                )
                .header(http::header::UPGRADE, "websocket")
                .header(http::header::SEC_WEBSOCKET_VERSION, "13")
            } else {
                Answer::new(StatusCode::NOT_FOUND, format!("no route for `{path}`"))
            })
        }
    }
}

/// Matches the route, applies its own connection limit, answers 101 and
/// starts the session once hyper hands the connection over.
///
/// `recheck`: whether user layers ran since the request was checked (they
/// may have changed it): then it is checked again.
fn upgrade(shared: &Arc<Shared>, mut req: HandshakeRequest, recheck: bool) -> HandshakeResponse {
    let checked = if recheck {
        handshake::classify(&req)
    } else {
        // Checked before the pipeline, and unchanged since.
        match req.headers().get(http::header::SEC_WEBSOCKET_KEY) {
            Some(key) => Ok(Kind::Upgrade { key: key.clone() }),
            None => Ok(Kind::Plain),
        }
    };
    let key = match checked {
        Ok(Kind::Upgrade { key }) => key,
        // A user layer changed the request into something else.
        Ok(Kind::Plain) => {
            return refusal(StatusCode::BAD_REQUEST, "not a WebSocket upgrade");
        }
        Err(answer) => return answer.into_response(),
    };
    let path = req.uri().path().to_owned();
    let Some(found) = shared.routes.at(&path) else {
        return refusal(
            StatusCode::NOT_FOUND,
            format!("no WebSocket route for `{path}`"),
        );
    };
    let index = *found.route.value();
    let route = &shared.mounted[index];
    if let Some(limiter) = &route.limiter
        && let Some(refused) = pipeline::admit(limiter, &req, |r| {
            format!(
                "too many connections on route `{}` (max_connections = {} in its [[route]] entry)",
                route.info.path, r.max
            )
        })
    {
        return refused;
    }
    let ext = req.extensions();
    let client = ext
        .get::<ClientAddr>()
        .map(|c| c.0)
        .or_else(|| ext.get::<PeerAddr>().map(|p| p.0))
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let permits = ext
        .get::<HeldPermits>()
        .map(HeldPermits::take)
        .unwrap_or_default();
    let ext = req.extensions_mut();
    // Put there by the auth stage (or by a user layer when no aspect is
    // configured); every configured aspect is present either way.
    let aspects = ext
        .remove::<Aspects>()
        .or_else(|| shared.auth.as_ref().map(|a| a.anonymous()))
        .unwrap_or_default();
    let revalidators = ext
        .remove::<HeldRevalidators>()
        .map(|h| h.take())
        .unwrap_or_default();
    let supported = route.component.subprotocols();
    let protocol = handshake::choose_protocol(&supported, req.headers(), |entry| {
        shared
            .auth
            .as_ref()
            .is_some_and(|a| a.is_credential_protocol(entry))
    })
    .map(str::to_owned);
    let mut info = HandshakeInfo::new(client, path);
    info.query = req.uri().query().map(str::to_owned);
    info.route = found.route.path().to_owned();
    info.params = found.params;
    info.subprotocol = protocol;
    info.headers = std::mem::take(req.headers_mut());
    info.aspects = aspects;
    let response = handshake::switching_protocols(&key, info.subprotocol.as_deref());
    let pending = PendingSession {
        upgrade: hyper::upgrade::on(&mut req),
        // One box for what the session starts from, so the task (alive as
        // long as the connection) carries a pointer, not the values.
        upgrading: Box::new(Upgrading {
            info,
            index,
            permits,
            revalidators,
        }),
    };
    // The connection's own task runs the session once hyper is done with
    // the handshake; a request from elsewhere (no slot) gets a task.
    match req.extensions().get::<SessionSlot>() {
        Some(slot) => slot.put(pending),
        None => {
            shared
                .tracker
                .spawn(run_pending(Arc::clone(shared), pending));
        }
    }
    response
}

/// A session waiting for hyper to hand the connection over.
struct PendingSession {
    upgrade: hyper::upgrade::OnUpgrade,
    upgrading: Box<Upgrading>,
}

/// Where the upgrade leaves its [`PendingSession`] for the task that served
/// the handshake (a request extension, so it must be `Clone`): the session
/// then runs on that task, and a connection costs one task, not two.
#[derive(Clone, Default)]
struct SessionSlot(Arc<Mutex<Option<PendingSession>>>);

impl SessionSlot {
    fn put(&self, pending: PendingSession) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(pending);
    }

    fn take(&self) -> Option<PendingSession> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// Waits for the upgraded connection and runs its session.
async fn run_pending(shared: Arc<Shared>, pending: PendingSession) {
    let session = upgraded(pending)
        .await
        .and_then(|(upgraded, upgrading)| open_session(&shared, upgraded, upgrading));
    // Only the box's pointer stays in the task while the session runs.
    if let Some(session) = session {
        session::run(session).await;
    }
}

/// Waits for hyper to hand over the upgraded connection.
async fn upgraded(pending: PendingSession) -> Option<(Upgraded, Box<Upgrading>)> {
    let PendingSession { upgrade, upgrading } = pending;
    match upgrade.await {
        Ok(upgraded) => Some((upgraded, upgrading)),
        Err(e) => {
            let client = upgrading.info.client_addr;
            tracing::debug!(%client, error = %e, "upgrade failed");
            // The permits drop here: the places are released.
            None
        }
    }
}

/// What an accepted handshake hands to its session.
struct Upgrading {
    info: HandshakeInfo,
    index: usize,
    permits: Vec<ConnectionPermit>,
    revalidators: Vec<Box<dyn Revalidate>>,
}

/// What a session holds until it has ended, `on_close` included.
pub(crate) struct Held<'a> {
    /// The connection's places in the connection limits.
    _permits: Box<[ConnectionPermit]>,
    /// Its entry among the open sessions.
    _entry: SessionEntry<'a>,
    /// When the session started.
    pub(crate) started: std::time::Instant,
}

/// Builds the session: its stream, connection, limits and revalidation,
/// without awaiting anything (so none of it stays in the connection's task
/// but the box).
fn open_session<'a>(
    shared: &'a Shared,
    upgraded: Upgraded,
    upgrading: Box<Upgrading>,
) -> Option<Box<session::Session<'a>>> {
    let Upgrading {
        mut info,
        index,
        permits,
        revalidators,
    } = *upgrading;
    let route = &shared.mounted[index];
    // Take back the plain stream so the session does not pay for hyper's
    // boxed IO on every read and write.
    let Ok(parts) = upgraded.downcast::<TokioIo<Io>>() else {
        tracing::error!("upgraded connection has an unexpected IO type");
        return None;
    };
    let io = parts.io.into_inner();
    // `read_buf` and the header values point into hyper's 8 KiB read buffers;
    // holding either would pin that memory for the connection's whole life.
    let io = ReadAhead::new(
        io,
        shared.config.websocket.read_buffer_size,
        shared.config.websocket.write_buffer_size,
        &parts.read_buf,
    );
    drop(parts.read_buf);
    // The session's one task reads and writes it (see `session`): no waker
    // proxies (our patch of tokio-tungstenite, vendor/README.md).
    let ws = WebSocketStream::from_raw_socket_in_one_task(io, Role::Server, Some(route.ws_config));
    info.headers = detached(&info.headers);
    let (conn, outbox) = __runtime::open(
        info,
        shared.config.websocket.outgoing_queue,
        shared.hub.clone(),
        shared.budget.clone(),
    );
    // In the hub (channels, users, presence) until the session ends.
    let membership = Some(Membership::register(&conn));
    let client = conn.client_addr();
    let entry = shared.sessions.enter(&conn);
    let guard = MessageGuard::new(
        route.info.max_messages_per_second,
        shared
            .address_messages
            .rate_for(client.ip(), std::time::Instant::now()),
        shared.config.max_messages_per_address_per_second,
    );
    let auth = shared.auth.as_deref();
    Some(Box::new(session::Session {
        ws,
        conn,
        outbox,
        membership,
        component: Arc::clone(&route.component),
        cfg: &shared.session,
        guard,
        shutting_down: &shared.sessions.closing,
        // Re-checks the sessions until the session ends (then dropped:
        // aborted).
        watch: auth.and_then(|auth| auth::watch(auth, revalidators)),
        auth,
        held: Held {
            _permits: permits.into_boxed_slice(),
            _entry: entry,
            started: std::time::Instant::now(),
        },
        timer: session::Timer::OFF,
        budget: &shared.budget,
        read_held: 0,
    }))
}

/// The open sessions of a server, closed all at once at shutdown.
///
/// Shutdown reaches each connection through its own queue
/// ([`Connection::close`]), so a session polls nothing that all sessions
/// share; the lock here is taken once when a session starts and once when
/// it ends, never per message.
#[derive(Default)]
struct Sessions {
    /// Set when shutdown starts; sessions entering later close at once.
    closing: AtomicBool,
    open: Mutex<HashMap<ConnectionId, Connection>>,
}

impl Sessions {
    /// Registers `conn` until the returned guard drops.
    fn enter<'a>(&'a self, conn: &Connection) -> SessionEntry<'a> {
        self.lock().insert(conn.id(), conn.clone());
        // After the insert: either `close_all` sees the entry, or this sees
        // the flag (both are sequentially consistent).
        if self.closing.load(Ordering::SeqCst) {
            conn.close(CloseCode::GOING_AWAY, SHUTDOWN_REASON);
        }
        SessionEntry {
            sessions: self,
            id: conn.id(),
        }
    }

    /// Closes every open session with 1001, now and from now on.
    fn close_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let open: Vec<Connection> = self.lock().values().cloned().collect();
        for conn in open {
            conn.close(CloseCode::GOING_AWAY, SHUTDOWN_REASON);
        }
    }

    /// Sessions open now.
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Connection>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The close reason every client gets at shutdown.
const SHUTDOWN_REASON: &str = "server shutting down";

/// A session's place in [`Sessions`], given up on drop.
pub(crate) struct SessionEntry<'a> {
    sessions: &'a Sessions,
    id: ConnectionId,
}

impl Drop for SessionEntry<'_> {
    fn drop(&mut self) {
        self.sessions.lock().remove(&self.id);
    }
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

/// Headers that only served the upgrade itself; the connection does not
/// keep them.
const UPGRADE_ONLY: [http::HeaderName; 5] = [
    http::header::CONNECTION,
    http::header::UPGRADE,
    http::header::SEC_WEBSOCKET_KEY,
    http::header::SEC_WEBSOCKET_VERSION,
    http::header::SEC_WEBSOCKET_EXTENSIONS,
];

/// A copy of `headers` in allocations of its own (hyper's values are slices
/// of its read buffer), without the [`UPGRADE_ONLY`] ones: every open
/// connection keeps this for its whole life. The values share one buffer:
/// an allocation each would cost more in allocator overhead than most
/// values are long.
fn detached(headers: &http::HeaderMap) -> http::HeaderMap {
    let kept = |name: &http::HeaderName| !UPGRADE_ONLY.contains(name);
    let (mut count, mut len) = (0, 0);
    for (name, value) in headers {
        if kept(name) {
            count += 1;
            len += value.len();
        }
    }
    let mut values = bytes::BytesMut::with_capacity(len);
    for (name, value) in headers {
        if kept(name) {
            values.extend_from_slice(value.as_bytes());
        }
    }
    let values = values.freeze();
    let mut out = http::HeaderMap::with_capacity(count);
    let mut at = 0;
    for (name, value) in headers {
        if kept(name) {
            let end = at + value.len();
            // Valid already (they were header values): never fails.
            if let Ok(v) = http::HeaderValue::from_maybe_shared(values.slice(at..end)) {
                out.append(name.clone(), v);
            }
            at = end;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_keeps_every_header_but_the_upgrades_own() {
        let mut h = http::HeaderMap::new();
        for name in &UPGRADE_ONLY {
            h.insert(name.clone(), http::HeaderValue::from_static("x"));
        }
        h.insert(http::header::COOKIE, http::HeaderValue::from_static("a=1"));
        h.append("x-app", http::HeaderValue::from_static("one"));
        h.append("x-app", http::HeaderValue::from_static("two"));
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_static("chat"),
        );
        let kept = detached(&h);
        assert_eq!(kept.len(), 4);
        assert_eq!(kept["cookie"], "a=1");
        // Every value its own slice of the shared buffer, in order.
        let app: Vec<&str> = kept
            .get_all("x-app")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(app, ["one", "two"]);
        assert_eq!(kept["sec-websocket-protocol"], "chat");
        assert!(UPGRADE_ONLY.iter().all(|n| !kept.contains_key(n)));
    }
}
