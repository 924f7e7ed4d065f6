//! Authentication aspects for ws-provider: who is on each connection, from
//! the application's own sessions or tokens.
//!
//! One [`Authenticator`] is built from the `[[aspect]]` tables of the
//! configuration ([`AspectConfig`]) and handed to the server
//! (`ws_runtime::ServerBuilder::authenticator`), which calls
//! [`resolve`](Authenticator::resolve) at every handshake through the
//! runtime's `Authenticate` seam; components see the result through
//! `ws_core::Connection::aspect`. This crate depends on `ws-core` for
//! [`UserAspect`] and [`Aspects`] and on `ws-runtime` for the seam it
//! implements (the runtime does not depend on it); it knows nothing of the
//! CLI.
//!
//! An aspect has a name (`frontend.user`), a [`Credential`] (a cookie, a
//! query parameter, `Authorization: Bearer`, or a `Sec-WebSocket-Protocol`
//! entry) and one source:
//!
//! | source | looks up | expiry |
//! |---|---|---|
//! | `jwt` | a signed token, HS256/RS256/EdDSA, checked locally | `exp` |
//! | `redis` | `sess:{id}` → JSON string or hash | the key's TTL |
//! | `sql` | one query, SQLite or PostgreSQL, id optionally HMAC-hashed | a mapped column |
//! | `http` | the application's JSON answer about the forwarded cookies | a mapped field |
//!
//! # Key design decisions
//!
//! **Anonymous is an answer, not an absence.** Every configured aspect is in
//! every [`Resolved::aspects`]: no credential, an unknown, expired or
//! malformed one all give [`UserAspect::anonymous`]. A *failing* source
//! (store down, timeout, unusable answer) is different from an unknown
//! session: by default it also gives anonymous, with a warning, so an outage
//! of the session store degrades to "nobody is logged in" rather than to "no
//! one can connect"; `on_error = "reject"` turns it into an [`AuthError`]
//! that refuses the handshake with 503.
//!
//! **One mapping for every source.** Each source reduces what it found to a
//! JSON object (claims, a Redis hash, a row, an HTTP answer) and one
//! [`FieldMap`] turns that into the aspect, so "which field is the id, the
//! groups, the expiry" is configured and behaves the same everywhere.
//!
//! **Check everything at start, connect nothing.** [`Authenticator::new`]
//! reads key files and environment variables, parses URLs, templates and
//! keys (trying each key once), and names the aspect and the key in its
//! error. Pools and connection managers connect lazily, so a store that is
//! down at start-up does not stop the server; it is handled per handshake.
//!
//! **A slow source never blocks other handshakes.** Aspects resolve
//! concurrently; each store look-up runs under its `timeout` (waiting for a
//! pooled connection included), pools are bounded, PostgreSQL gets the same
//! `statement_timeout`, the HTTP callback's answers are cached per credential
//! for a short, bounded time.
//!
//! **Revalidation is a handle, so the runtime stays small.** `resolve` returns
//! a [`Revalidator`] for every logged-in aspect that can end; its
//! [`until_ended`](Revalidator::until_ended) future re-checks on schedule
//! (`revalidate_every`, and the known expiry) and completes when the session
//! is over. The runtime races it against the connection and closes with
//! 1008. A JWT is never polled: its check is local and due at `exp`. With
//! the default `on_error`, a store failing *during* revalidation keeps the
//! session until the store answers again or the known expiry passes.
//!
//! **No OpenSSL, no C toolchain beyond a C compiler.** JWTs use
//! `jsonwebtoken`'s pure-Rust backend (its other backend, aws-lc-rs, needs
//! cmake); HTTPS uses rustls with ring, as the server's TLS does; sqlx is
//! built with rustls and a bundled SQLite.
//!
//! # `Sec-WebSocket-Protocol` tokens
//!
//! Browsers cannot set headers on a WebSocket, so a token travels as an
//! offered subprotocol: `new WebSocket(url, ["chat", "bearer." + token])`.
//! The entry starting with the configured prefix (default `bearer.`) carries
//! the credential; the runtime must never choose it as the subprotocol
//! ([`Authenticator::is_credential_protocol`]), and the page must also offer
//! a subprotocol the route speaks, since a browser fails a connection whose
//! answer names none.
//!
//! # Using it in a server
//!
//! ```no_run
//! # async fn handshake(auth: &ws_auth::Authenticator, headers: &http::HeaderMap) {
//! match auth.resolve(headers, Some("room=1")).await {
//!     Ok(resolved) => {
//!         let user = resolved.aspects.get("frontend.user"); // never missing
//!         for revalidator in resolved.revalidators {
//!             tokio::spawn(async move {
//!                 let end = revalidator.until_ended(|_name, _user| {}).await;
//!                 // close the connection with 1008 "session ended"
//!                 # let _ = end;
//!             });
//!         }
//!         # let _ = user;
//!     }
//!     Err(e) => { let _status = e.status(); /* 503 */ }
//! }
//! # }
//! ```

mod authenticator;
mod cache;
pub mod config;
mod credential;
mod error;
// Entry points for the fuzz targets in `fuzz/`; not for users.
#[doc(hidden)]
#[path = "fuzz_api.rs"]
pub mod __fuzz;
mod mapping;
mod revalidate;
mod runtime;
mod source;

pub use authenticator::{Authenticator, Resolved};
pub use config::{
    AspectConfig, Credential, FieldMap, HttpConfig, HttpMethod, JwtAlgorithm, JwtConfig, OnError,
    OnSessionEnd, RecordFormat, RedisConfig, Secret, SessionHash, SourceConfig, SqlConfig,
};
pub use credential::MAX_CREDENTIAL_LEN;
pub use error::{AuthError, ConfigError, FailureKind};
pub use revalidate::{Check, Revalidator, SessionEnd};
pub use ws_core::{Aspects, UserAspect};
