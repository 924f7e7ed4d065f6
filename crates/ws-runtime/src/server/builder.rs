//! [`ServerBuilder`]: components, settings, layers, hub, authenticator;
//! [`build`](ServerBuilder::build) checks them and assembles the server.

use std::borrow::Cow;
use std::sync::Arc;

use tokio_util::task::TaskTracker;
use tower::{Layer, Service};
use ws_core::budget::MemoryBudget;
use ws_core::hub::LocalHub;
use ws_core::{BoxError, Component, Hub};
use ws_ratelimit::{AddressMessageLimiter, ConnectionLimiter, LimitError};
use ws_routing::{RouteError, RouteTableBuilder};

use super::stages::Pipeline;
use super::{Server, Shared};
use crate::auth::Auth;
use crate::authenticate::Authenticate;
use crate::client_addr::ClientAddrResolver;
use crate::config::{ConfigError, ServerConfig};
use crate::pipeline::{self, BoxedLayer, HandshakeRequest, HandshakeResponse, HandshakeService};
use crate::policy;
use crate::registry::Sessions;
use crate::session::SessionConfig;
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
    /// [`ClientAddr`](crate::ClientAddr)) and answers with a [`HandshakeResponse`]: its own
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
