//! Connection and message limits for ws-provider: plain logic, time passed in.
//!
//! - [`ConnectionLimiter`] enforces `max_connections`,
//!   `max_connections_per_address` and `max_connections_per_address_per_second`
//!   before the upgrade; a [`Refusal`] names the [`Limit`] and a retry-after,
//!   which the server answers with `429` and `Retry-After`.
//! - [`MessageRate`] enforces `max_messages_per_second` on one connection; over
//!   it the server closes with 1008. [`AddressMessageLimiter`] optionally does
//!   the same per address group.
//!
//! # Decisions
//!
//! - **Time is passed in.** Every call takes `now: Instant`; nothing reads the
//!   clock, spawns a thread or needs a runtime, so tests build instants as
//!   `base + Duration` and check exact results. Time is kept as nanoseconds
//!   since a base instant; an earlier instant counts as the base, and the
//!   shared limiters never let time go back.
//! - **GCRA for rates**, not fixed windows: one number per key (the theoretical
//!   arrival time), no double burst at a window edge, and an exact
//!   retry-after. A rate of `r` per second admits bursts of `r` and then one
//!   every `1 s / r` (rounded up to whole nanoseconds). A refused attempt
//!   uses no budget.
//! - **0 means unlimited** for every limit.
//! - **Retry-after**: exact for the per-second limit (time to the next
//!   conforming instant); a flat 1 s for the count limits, since when another
//!   connection closes is unknowable. [`Refusal::retry_after_secs`] rounds up
//!   to whole seconds, at least 1, for the header.
//! - **RAII permits.** Admission returns a [`ConnectionPermit`] (`Send`,
//!   `'static`) that releases the total and per-address counts when dropped,
//!   exactly once, whatever path closes the connection.
//! - **Address grouping.** Per-address limits count by [`AddressKey`]: IPv6
//!   masked to a prefix (default /64, one host's usual allocation, so it
//!   cannot dodge limits by changing address), IPv4 to /32 by default, and
//!   IPv4-mapped IPv6 counted as IPv4. The server passes the client address
//!   (after trusted-proxy resolution), not the proxy's.
//! - **Bounded memory.** A per-address entry is dropped as soon as it has no
//!   open connection and its rate state has fully recovered (then it is the
//!   same as a fresh entry, so forgetting it changes nothing). Entries that
//!   cannot be dropped at once go in an amortised sweep, run when the map has
//!   doubled since the last sweep or a recovery period (about 1 s) has passed.
//!   [`ConnectionLimiter::tracked_addresses`] reports the size.
//! - **Locks only where cheap.** The connection limiter is one
//!   `Mutex<HashMap>` behind an `Arc`, taken on handshakes and closes only.
//!   [`MessageRate`] is owned by its connection's task and takes no lock; the
//!   per-address message budget is one atomic word per group.
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::{Duration, Instant};
//! use ws_ratelimit::{ConnectionLimiter, ConnectionLimits, Limit, MessageLimits};
//!
//! let limiter = ConnectionLimiter::new(ConnectionLimits::default())?;
//! let addr: IpAddr = "2001:db8::1".parse()?;
//! let t0 = Instant::now();
//!
//! // Ten open connections per /64...
//! let permits: Vec<_> = (0..10)
//!     .map(|_| limiter.try_acquire(addr, t0))
//!     .collect::<Result<_, _>>()?;
//! let refusal = limiter.try_acquire("2001:db8::2".parse()?, t0).unwrap_err();
//! assert_eq!(refusal.limit, Limit::PerAddress);
//! assert_eq!(refusal.retry_after_secs(), 1);
//!
//! // ...and ten new ones per second, even once those have closed.
//! drop(permits);
//! assert_eq!(limiter.active(), 0);
//! let refusal = limiter.try_acquire(addr, t0 + Duration::from_millis(30)).unwrap_err();
//! assert_eq!(refusal.limit, Limit::PerAddressPerSecond);
//! assert_eq!(refusal.retry_after, Duration::from_millis(70));
//! let _permit = limiter.try_acquire(addr, t0 + Duration::from_millis(100))?;
//!
//! // Each connection's messages: 100 per second, then close with 1008.
//! let mut rate = MessageLimits::default().connection_rate(t0);
//! assert!(rate.check(t0).is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod address;
mod address_messages;
mod clock;
mod connections;
mod error;
mod gcra;
mod messages;
mod refusal;
mod sweep;

pub use address::{
    AddressGrouping, AddressKey, DEFAULT_IPV4_PREFIX_LEN, DEFAULT_IPV6_PREFIX_LEN, address_key,
};
pub use address_messages::{AddressMessageLimiter, AddressMessageRate};
pub use connections::{ConnectionLimiter, ConnectionLimits, ConnectionPermit};
pub use error::LimitError;
pub use messages::{MessageLimits, MessageRate};
pub use refusal::{Limit, Refusal};
