//! Traits and types for writing ws-provider components.
//!
//! Component crates depend on `ws-core` only; servers are built with
//! `ws-runtime` or `ws-cli`. This crate changes rarely and carries no
//! tokio-tungstenite, hyper or matchit types: [`Message`], [`CloseCode`] and
//! [`CloseFrame`] are its own, backed by [`Bytes`] so the server converts them
//! without copying.
//!
//! A component implements [`Component`]; the server mounts it on
//! [`Component::route`] under its prefix (or on the [`default_route`] of its
//! [`name`](Component::name)), hands each connection to `on_open`, each
//! message to `on_message` in order, and calls `on_close` exactly once. A
//! component whose message handling never waits implements
//! [`SyncComponent`] instead: the same hooks, with a plain function for
//! `on_message` (no future per message).
//!
//! The crate's root holds what components use. Two modules serve other
//! audiences: [`hub`] is the contract of hub backends (the Redis broker
//! implements it), and a hidden `__runtime` module is the server's
//! plumbing — nothing in it is for components.
//!
//! ```
//! use std::borrow::Cow;
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! use ws_core::{BoxError, CloseReason, Component, Connection, ConnectionId, Message, ServerContext};
//!
//! /// Says hello, echoes in upper case, and tells everyone the time each minute.
//! #[derive(Default)]
//! struct Shout {
//!     open: Mutex<Vec<(ConnectionId, Connection)>>,
//! }
//!
//! #[ws_core::async_trait]
//! impl Component for Shout {
//!     fn name(&self) -> Cow<'static, str> {
//!         "my_app::Shout".into()
//!     }
//!
//!     fn route(&self) -> Option<Cow<'static, str>> {
//!         Some("/shout/{room}".into())
//!     }
//!
//!     fn configure(self: Arc<Self>, ctx: &mut ServerContext) {
//!         ctx.every(Duration::from_secs(60), move || {
//!             for (_, conn) in self.open.lock().unwrap().iter() {
//!                 let _ = conn.send("another minute");
//!             }
//!         });
//!     }
//!
//!     async fn on_open(&self, conn: &Connection) -> Result<(), BoxError> {
//!         let room = conn.param("room").unwrap_or("lobby");
//!         conn.send(format!("welcome to {room}"))?;
//!         self.open.lock().unwrap().push((conn.id(), conn.clone()));
//!         Ok(())
//!     }
//!
//!     async fn on_message(&self, conn: &Connection, msg: Message) -> Result<(), BoxError> {
//!         match msg.as_text() {
//!             Some(text) => conn.send(text.to_uppercase())?,
//!             None => conn.send(msg)?,
//!         }
//!         Ok(())
//!     }
//!
//!     async fn on_close(&self, conn: &Connection, _reason: CloseReason) {
//!         self.open.lock().unwrap().retain(|(id, _)| *id != conn.id());
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // Components are testable without a server:
//! use ws_core::testing::{Received, TestClient};
//! let mut info = ws_core::HandshakeInfo::new(([127, 0, 0, 1], 40000).into(), "/shout/kitchen");
//! info.params = vec![("room".into(), "kitchen".into())];
//! let mut client = TestClient::open_with(Arc::new(Shout::default()), info).await.unwrap();
//! assert_eq!(client.recv().await, Some(Received::Message("welcome to kitchen".into())));
//! client.send("hi").await.unwrap();
//! assert_eq!(client.recv().await, Some(Received::Message("HI".into())));
//! client.close().await;
//! # }
//! ```

#[doc(hidden)]
#[path = "runtime.rs"]
pub mod __runtime;
mod aspect;
pub mod budget;
mod component;
mod connection;
mod context;
pub mod hub;
mod message;
mod route;
pub mod testing;

pub use async_trait::async_trait;
pub use bytes::Bytes;
pub use http::HeaderMap;

pub use aspect::{Aspects, UserAspect};
pub use component::{BoxError, Component, FnComponent, SyncComponent, component_fn};
pub use connection::{Connection, ConnectionId, HandshakeInfo, SendError};
pub use context::{ServerContext, Signal};
pub use hub::{Hub, HubError, Member};
pub use message::{CloseCode, CloseFrame, CloseInitiator, CloseReason, Message, Utf8Bytes};
pub use route::default_route;
