//! The server: a built [`Server`] and the state its connections share.
//!
//! Its jobs, one module each: [`builder`] checks settings and components
//! and assembles the server; [`stages`] runs a handshake through the
//! pipeline; [`serve`](mod@serve) is the accept loop and the graceful
//! shutdown; [`connection`] serves one connection (TLS, then hyper);
//! [`checks`] answers what is not a valid upgrade; [`upgrade`] answers 101
//! and prepares the session; [`handoff`] takes the connection back from
//! hyper and starts the session. The open sessions are kept in
//! [`crate::registry`], which the session module uses too: neither
//! depends on this one.

use std::sync::Arc;

use tokio_util::task::TaskTracker;
use ws_core::Hub;
use ws_core::budget::MemoryBudget;
use ws_ratelimit::{AddressMessageLimiter, ConnectionLimiter};
use ws_routing::RouteTable;

use self::stages::Pipeline;
use crate::auth::Auth;
use crate::config::ServerConfig;
use crate::policy::{MountedRoute, RouteInfo};
use crate::registry::Sessions;
use crate::session::SessionConfig;
use crate::tls::{Tls, TlsError};

mod builder;
mod checks;
mod connection;
mod handoff;
mod serve;
mod stages;
mod upgrade;

pub use builder::{BuildError, ServerBuilder, memory_budget};
pub use serve::shutdown_signal;

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
}
