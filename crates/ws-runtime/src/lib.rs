//! The ws-provider server: accepts TCP connections (optionally TLS), answers
//! the HTTP upgrade through a handshake pipeline, runs one session per
//! WebSocket connection, and shuts down gracefully.
//!
//! A key design decision: hyper serves the HTTP/1.1 request (so the handshake
//! can run async code and every malformed request gets a precise status),
//! then the plain socket is taken back from hyper (`Upgraded::downcast`) and
//! handed to tokio-tungstenite. Each connection is one task with one
//! `select!` loop: messages reach the component in order, outgoing messages
//! are written in batches with one flush, and no lock is taken per message.
//!
//! Between the request and the upgrade, the handshake runs through tower
//! layers, in this order (see [`HandshakeRequest`] and
//! [`ServerBuilder::layer`]):
//!
//! 1. client address (`trusted_proxies`, `X-Forwarded-For`/`Forwarded`);
//! 2. origin check (`allowed_origins`, `require_origin`) → 403;
//! 3. connection limits (`max_connections`, `max_connections_per_address`,
//!    `max_connections_per_address_per_second`) → 429 with `Retry-After`;
//! 4. authentication, when the server has an [`Authenticate`]
//!    ([`ServerBuilder::authenticator`]; `ws-auth` in the stock server):
//!    every aspect resolved → 503 when a source configured
//!    `on_error = "reject"` fails; the route's `require` → 401,
//!    `require_groups` → 403;
//! 5. the user's own layers;
//! 6. the route (→ 404), the route's own `max_connections` (→ 429), the 101.
//!
//! A connection's place in the limits is a permit held by its task until the
//! session ends, whatever ends it; refused handshakes release it at once.
//! Over `max_messages_per_second`, a connection is closed with 1008.
//! Settings can differ per route (`[[route]]`, [`RoutePolicy`]).
//!
//! The aspects resolved at the handshake are the connection's
//! (`conn.aspect("frontend.user")`), every configured one present, anonymous
//! where nobody is logged in. While the connection is open, each logged-in
//! session that can end is re-checked (`revalidate_every`, a known expiry;
//! a JWT at its `exp` without polling): when it has ended, the connection is
//! closed with 1008 `session ended`, or under `on_end = "downgrade"` the
//! aspect becomes anonymous and the component's `on_aspect_change` is
//! called; a changed user (groups, expiry) is applied the same way. A
//! credential offered as a `Sec-WebSocket-Protocol` entry is never chosen as
//! the subprotocol. The runtime itself knows no session store or token
//! format: they are behind the [`Authenticate`] seam.
//!
//! ```no_run
//! use ws_core::{component_fn, Connection, Message};
//! use ws_runtime::{Server, ServerConfig, shutdown_signal};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = ServerConfig::default();
//! config.allowed_origins = vec!["example.com".into(), "*.example.com".into()];
//! config.trusted_proxies = vec!["127.0.0.1".into()];
//! let server = Server::builder()
//!     .component(component_fn("/echo", |conn: Connection, msg: Message| async move {
//!         conn.send(msg)?;
//!         Ok(())
//!     }))
//!     .config(config)
//!     .build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:18080").await?;
//! server.serve(listener, shutdown_signal()?).await?;
//! # Ok(()) }
//! ```

mod accept;
mod admin;
mod auth;
mod authenticate;
mod client_addr;
mod config;
mod convert;
// Entry points for the fuzz targets in `fuzz/`; not for users.
#[doc(hidden)]
#[path = "fuzz_api.rs"]
pub mod __fuzz;
mod handshake;
mod io;
mod keepalive;
mod origin;
mod pipeline;
mod policy;
mod read_ahead;
mod registry;
mod server;
mod session;
mod tasks;
mod tls;

pub use admin::{AdminConfig, serve_admin};
pub use authenticate::{
    AspectInfo, AuthRefusal, Authenticate, Authenticated, OnChange, Revalidate, SessionEnd,
};
pub use config::{
    ConfigError, ForwardedHeader, OnSessionEnd, RoutePolicy, ServerConfig, TlsSettings,
    WebSocketSettings,
};
pub use pipeline::{
    ClientAddr, ClientCertificates, HandshakeFn, HandshakeFnService, HandshakeRequest,
    HandshakeResponse, HandshakeService, Next, PeerAddr, handshake_fn, refusal,
};
pub use policy::RouteInfo;
pub use server::{BuildError, Server, ServerBuilder, memory_budget, shutdown_signal};
pub use tls::TlsError;
/// The tower version the handshake pipeline is built on, for writing layers.
pub use tower;
