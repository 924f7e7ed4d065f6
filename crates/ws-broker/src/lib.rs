//! Redis pub/sub broker for ws-provider: channels, users, connections and
//! presence shared by every server process that uses the same Redis.
//!
//! The server (`ws-runtime`/`ws-cli`) depends on this crate and builds a
//! [`RedisHub`] when `[broker] redis_url` is set; components never name it:
//! they use [`ws_core::Hub`] as with the in-process hub. This crate depends
//! on `ws-core`, tokio and the `redis` client (plus serde for its
//! configuration), never on `ws-runtime` or `ws-cli`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use ws_broker::{BrokerConfig, RedisHub};
//!
//! let broker = RedisHub::connect(BrokerConfig::with_url("redis://127.0.0.1:6379")).await?;
//! let hub = broker.hub(); // give it to the server (`ServerBuilder::hub`)
//! hub.publish("lobby", "hello, every server")?;
//! broker.shutdown().await; // removes this server's presence entries
//! # Ok(()) }
//! ```
//!
//! # Design
//!
//! A key decision made here is that **Redis is the only shared thing**: no
//! server talks to another, there is no membership protocol, and every
//! guarantee below follows from what Redis pub/sub and key expiry do.
//! [`RedisHub`] wraps a [`ws_core::hub::LocalHub`]: a publication is delivered to
//! the local connections at once, inside `publish`, and handed to a writer
//! task that publishes it on Redis; every server's subscriber task delivers
//! what other servers published to its own local connections.
//!
//! ## Channel and key names
//!
//! Everything starts with the configured prefix (`ws-provider` by default):
//!
//! | name | kind | use |
//! |---|---|---|
//! | `<prefix>:channel:<name>` | pub/sub, `PSUBSCRIBE`d | **plain entry point**: the payload, as is, to every member of channel `<name>` on every server |
//! | `<prefix>:user:<id>` | pub/sub, `PSUBSCRIBE`d | plain entry point: to every connection of user `<id>` on every server |
//! | `<prefix>:bus` | pub/sub, `SUBSCRIBE`d | envelopes between servers (binary, below) |
//! | `<prefix>:servers` | set | ids of live servers, to find presence hashes |
//! | `<prefix>:server:<server>` | string, TTL | exists while `<server>` is alive |
//! | `<prefix>:presence:<server>:<channel>` | hash, TTL | `<server>`'s members of `<channel>`: field = connection id, value = `{"user_id":…,"name":…}` |
//!
//! `<server>` is a [`ServerId`], 32 hex digits drawn at random at start.
//!
//! ## Pushing from the web application
//!
//! Any Redis client can push to a channel's subscribers on every server,
//! without knowing anything of ws-provider but the channel name:
//!
//! ```text
//! redis-cli PUBLISH ws-provider:channel:lobby '{"type":"news","id":7}'
//! $redis->publish('ws-provider:channel:lobby', json_encode($event));   // PHP (phpredis, Predis)
//! r.publish("ws-provider:channel:lobby", json.dumps(event))            # Python (redis-py)
//! ```
//!
//! Subscribers get a text message with the payload unchanged (a payload that
//! is not UTF-8 arrives as a binary message). `ws-provider:user:<id>` works
//! the same for every connection of one user. Channel names follow
//! [`ws_core::hub::validate_channel`]; others are ignored.
//!
//! ## Envelope format
//!
//! Publications of the servers themselves go to `<prefix>:bus` in a small
//! binary envelope, so binary messages travel without re-encoding:
//!
//! ```text
//! offset  size  field
//!      0     1  version, 1
//!      1    16  origin server id
//!     17     8  sequence number of the origin, big-endian, from 1
//!     25     1  bits 0-1: target kind (1 channel, 2 user, 3 connection);
//!               bit 7: binary message (else text)
//!     26     2  target length n, big-endian
//!     28     n  channel name or user id (UTF-8), or for a connection the
//!               16-byte server id and the 8-byte connection id, big-endian
//!   28+n  rest  the payload, as is
//! ```
//!
//! Overhead is 28 bytes plus the target. JSON with a base64 payload was
//! measured as the alternative: a third larger for binary messages and 30 to
//! 100 times slower to build and read (numbers in `src/envelope.rs`).
//!
//! ## Ordering and exactly once
//!
//! - **In order per publisher.** `publish` puts the publication in one FIFO
//!   queue; one writer task takes them in that order, numbers them
//!   (sequence numbers are given here, not by callers, so they follow queue
//!   order) and writes them on one connection, pipelined. Redis forwards a
//!   connection's publications in the order it executes them, to one
//!   subscriber connection per server, whose messages one task handles one
//!   after the other, putting each into the connections' FIFO queues. So two
//!   publications of one task arrive everywhere in the order they were made.
//!   A plain `PUBLISH` keeps the order of the Redis connection that sent it.
//!   Publications of different publishers have no order between them.
//! - **Exactly once per subscriber.** The publishing server delivers to its
//!   own connections inside `publish` and skips its own envelopes when they
//!   come back. Every other server has exactly one subscriber connection at a
//!   time, subscribed once to the bus and once to each pattern (the bus name
//!   matches neither pattern), so Redis hands it each publication once; a
//!   repeated (origin, sequence number) would be skipped anyway.
//! - **What is not promised.** Redis pub/sub keeps nothing: a server whose
//!   subscription is down misses what is published meanwhile. That is never
//!   silent: the next envelope from that origin shows a gap in its sequence
//!   numbers, logged at warn and counted in [`BrokerStatus::missed`].
//!
//! ## Presence across servers
//!
//! Each server writes its own members to `<prefix>:presence:<server>:<channel>`
//! (join, leave and close change one field, batched by the writer) and
//! renews the TTL of those keys every `presence_heartbeat`; the TTL is
//! `presence_expiry` (3 × heartbeat by default). [`HubBackend::presence`](ws_core::hub::HubBackend::presence)
//! merges this server's members (from memory, always current) with the
//! hashes of every other server listed in `<prefix>:servers`. A server killed
//! without cleaning up stops renewing: its entries expire on their own
//! within `presence_expiry` and no ghost stays. A clean leave or close
//! deletes the entry at once; [`RedisHub::shutdown`] deletes all of them.
//!
//! ## Addressing a connection on another server
//!
//! A [`ws_core::ConnectionId`] is unique per process only, so
//! [`Target::Connection`](ws_core::hub::Target::Connection) means a connection of
//! *this* process and is never forwarded. Across servers a connection is
//! `<server>/<id>`, a [`ConnectionAddr`]: it is what
//! [`Member::connection`](ws_core::Member::connection) holds with this broker,
//! [`RedisHub::addr_of`] gives it for a local connection, it parses with
//! [`str::parse`], and [`RedisHub::send_to`] sends to it.
//!
//! ## Failure behaviour
//!
//! `publish` is synchronous and never waits for Redis (for the variant
//! that does, see "Confirmed publications" below). It returns:
//!
//! - `Ok(n)`: delivered to `n` local connections **and** queued for Redis
//!   while the publishing connection was up; the writer sends it within
//!   milliseconds. Should the connection break before it is written (the
//!   milliseconds between Redis dying and the broker noticing, kept short
//!   because a dead Redis closes the subscriber's connection at once and
//!   that wakes the writer), it is counted in [`BrokerStatus::lost`] and
//!   logged at warn, and it still takes its sequence number, so every
//!   receiving server reports the gap too ([`BrokerStatus::missed`]).
//! - `Err(HubError::Unavailable)`: delivered to local connections, **not**
//!   forwarded: Redis is known to be unreachable (or the broker is waiting
//!   for the other servers to subscribe again, below), the queue
//!   (`queue_size`) is full, the server's memory budget has no room for it
//!   (with [`RedisHub::connect_with_budget`]: queued publications and those
//!   kept for sending again count against `max_buffered_memory_in_mb`), or
//!   the broker is shut down. Logged at warn (at
//!   most once a second, with the count) and counted in
//!   [`BrokerStatus::refused`]; an HTTP caller answers 503.
//!
//! So a publication is never dropped silently: it arrives, or its caller
//! got `Unavailable`, or a warn line and a counter on the publishing and on
//! the receiving servers say so. (The tests check this accounting exactly
//! while killing and restarting Redis under load.)
//!
//! **Confirmed publications.** A caller that must know the publication
//! arrived uses [`publish_confirmed`](ws_core::hub::HubBackend::publish_confirmed)
//! (or [`Hub::publish_confirmed`](ws_core::Hub::publish_confirmed)); the
//! admin API does, and answers 202 only on its `Ok`. It goes through the
//! same queue and pipelines as `publish` and keeps their order, but carries
//! an acknowledgement the writer completes when Redis has answered its
//! `PUBLISH` — Redis has then handed it to every server subscribed to the
//! bus, which delivers it (the settling wait above keeps a server that is
//! still reconnecting from being skipped). It returns:
//!
//! - `Ok(n)`: delivered to `n` local connections, and Redis took it.
//! - `Err(HubError::Unavailable)`: refused as above, or the connection broke
//!   before Redis answered (counted as lost, and the error says so), or no
//!   answer within `command_timeout` (Redis hangs; counted as refused, and it
//!   may still be written later, once). The wait never exceeds
//!   `command_timeout`.
//!
//! Redis's answer alone is not quite enough: Redis answers the publisher
//! before it writes the message to the subscribers' sockets (and keeps a
//! backlog for a slow one), so a Redis that dies just then takes the
//! message with it. The writer therefore keeps what Redis took in the last
//! 2 seconds (at most `queue_size` publications and 16 MiB of envelopes,
//! sharing their payloads) and, after a lost connection, once the servers
//! have subscribed again, sends those again with their own sequence
//! numbers before anything new; a server that had one already skips it as
//! a repeat. (A server that started during the outage may thus receive
//! publications of the seconds before it.)
//!
//! No publication answered `Ok` is lost by a Redis crash: the tests kill
//! Redis with SIGKILL while publications flow (through the hub, and through
//! the admin API with real servers) and check that every confirmed one
//! reached every subscriber on both servers, exactly once, and that every
//! other answer was `Unavailable` (503). Fire-and-forget `publish` stays as
//! it was: it never waits, which the broadcast path needs (it profits from
//! the resending too).
//!
//! While Redis is away the server keeps serving its own connections: local
//! publications, joins and local presence work as before;
//! [`presence`](ws_core::hub::HubBackend::presence) answers `Unavailable` because
//! the other servers cannot be asked. Both connections retry with
//! exponential backoff (100 ms doubling up to `reconnect_max_delay`, half
//! of it random). On return the subscriber subscribes again, and the writer
//! re-announces this server, rewrites all its presence entries, and waits
//! until as many servers listen on the bus as were alive before the outage
//! (at most twice `reconnect_max_delay`, renewing its keys meanwhile so
//! they cannot expire while it waits) before it accepts publications
//! again: what is published before a server has subscribed again would
//! never reach it. A silent network loss is found by a `PING` on each
//! connection every heartbeat, with `command_timeout`.
//! [`RedisHub::status`] tells whether both connections are up.
//!
//! ## Costs
//!
//! Per publication: one local fan-out (clones of a `Bytes`), one envelope
//! copy into the Redis command buffer, and on each other server one copy
//! out of the client's buffer, then a fan-out of clones. Per heartbeat: one
//! pipelined round trip renewing one key per channel this server has
//! members in, and one or two small round trips to forget dead servers.
//! Per `presence` call: two round trips (the live servers, then one
//! `HGETALL` per server, pipelined).

mod config;
mod envelope;
mod error;
// Entry points for the fuzz targets in `fuzz/`; not for users.
#[doc(hidden)]
#[path = "fuzz_api.rs"]
pub mod __fuzz;
mod hub;
mod id;
mod keys;
mod presence;
mod tasks;

pub use config::{BrokerConfig, SlowSubscriberPolicy};
pub use error::{AddrParseError, BrokerError, Cause};
pub use hub::{BrokerStatus, RedisHub};
pub use id::{ConnectionAddr, ServerId};
