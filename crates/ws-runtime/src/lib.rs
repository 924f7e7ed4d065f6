//! The ws-provider server: accepts TCP connections, answers the HTTP upgrade
//! through a handshake pipeline, runs one session per WebSocket connection,
//! and shuts down gracefully.
//!
//! A key design decision: hyper serves the HTTP/1.1 request (so the handshake
//! can run async code and every malformed request gets a precise status),
//! then the plain socket is taken back from hyper (`Upgraded::downcast`) and
//! handed to tokio-tungstenite. Each connection is one task with one
//! `select!` loop: messages reach the component in order, outgoing messages
//! are written in batches with one flush, and no lock is taken per message.
//!
//! ```no_run
//! use ws_core::{component_fn, Connection, Message};
//! use ws_runtime::{Server, ServerConfig, shutdown_signal};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::builder()
//!     .component(component_fn("/echo", |conn: Connection, msg: Message| async move {
//!         conn.send(msg)?;
//!         Ok(())
//!     }))
//!     .config(ServerConfig::default())
//!     .build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:18080").await?;
//! server.serve(listener, shutdown_signal()?).await?;
//! # Ok(()) }
//! ```

mod config;
mod convert;
mod handshake;
mod server;
mod session;
mod tasks;

pub use config::{ConfigError, ServerConfig};
pub use server::{BuildError, RouteInfo, Server, ServerBuilder, shutdown_signal};
