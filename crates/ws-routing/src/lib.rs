//! The route table of ws-provider: the server-wide prefix, components'
//! routes (custom or default), and matching request paths to them.
//!
//! Two decisions shape this crate:
//!
//! - **matchit is pinned** (`=0.9.2`) because its route syntax is
//!   user-visible: components declare routes like `/chat/{room}` and
//!   `/files/{*rest}`, and operators see them in `ws-cli routes`. A matchit
//!   upgrade that changed the syntax or the conflict rules would silently
//!   change which paths reach which component. No matchit type appears in
//!   this crate's API, so only this crate has to follow such an upgrade.
//! - **Prefixing is segment-aware**: like the original, the prefix is not
//!   added to a route that already lies under it, but "under" means whole
//!   segments, so with prefix `/socket.io` the route `/socket.io/echo` stays
//!   while `/socket.iox` becomes `/socket.io/socket.iox`.
//!
//! Routes and prefixes are normalised (leading slash, no empty segments, no
//! trailing slash) and checked up front, so a bad one stops the server with
//! a [`RouteError`] naming the component and the reason, before anything
//! listens. Request paths are matched undecoded; parameter values are
//! percent-decoded.
//!
//! ```
//! use ws_routing::RouteTableBuilder;
//!
//! let mut builder = RouteTableBuilder::new("/ws")?;
//! builder.add(None, "demo_echo::Echo", "echo")?;
//! builder.add(Some("chat/{room}"), "demo::Chat", "chat")?;
//! let table = builder.build();
//!
//! assert_eq!(table.routes()[0].path(), "/ws/demo_echo_Echo");
//! let m = table.at("/ws/chat/lobby").expect("mounted");
//! assert_eq!(*m.route.value(), "chat");
//! assert_eq!(m.params, [("room".to_owned(), "lobby".to_owned())]);
//! # Ok::<(), ws_routing::RouteError>(())
//! ```

mod builder;
mod error;
mod join;
mod path;
mod pattern;
mod route;
mod table;

pub use builder::RouteTableBuilder;
pub use error::RouteError;
pub use join::{is_under, join};
pub use path::{normalize_prefix, normalize_route};
pub use route::{Route, RouteMatch};
pub use table::RouteTable;
