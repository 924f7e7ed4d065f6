//! Demo components for ws-provider, written against `ws-core` only — the way
//! every third-party component crate plugs in.
//!
//! - [`Echo`] on `/echo`: sends every message back.
//! - [`Reverse`] on its default route `/demo_echo_Reverse`: answers text
//!   reversed, binary reversed byte by byte.
//! - [`Ticker`] on `/ticker`: a timer registered in `configure` sends the
//!   time (milliseconds since the Unix epoch) to every connection each second.
//! - [`Whoami`] on `/demo_echo_Whoami`: answers with what the server knows
//!   about the connection, user aspects included.
//! - [`Chat`] on `/chat/{room}`: chat rooms over the hub, with presence and
//!   join/leave notices.
//! - [`Broadcast`] on `/broadcast`: every message to every connection on the
//!   route (the fan-out the benchmark measures).

mod broadcast;
mod chat;
mod echo;
mod reverse;
mod ticker;
mod whoami;

pub use broadcast::{BROADCAST_CHANNEL, Broadcast};
pub use chat::Chat;
pub use echo::Echo;
pub use reverse::Reverse;
pub use ticker::Ticker;
pub use whoami::{Whoami, describe};

/// Every demo component, in the order the stock binary mounts them.
pub fn all() -> Vec<std::sync::Arc<dyn ws_core::Component>> {
    vec![
        std::sync::Arc::new(Echo),
        std::sync::Arc::new(Reverse),
        std::sync::Arc::new(Ticker::default()),
        std::sync::Arc::new(Whoami),
        std::sync::Arc::new(Chat),
        std::sync::Arc::new(Broadcast),
    ]
}
