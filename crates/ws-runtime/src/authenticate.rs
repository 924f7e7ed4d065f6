//! The authentication seam: who is on a connection, as the runtime asks it.
//!
//! The runtime knows no session store, token format or HTTP client: an
//! [`Authenticate`] implementation (`ws-auth`'s `Authenticator`) is handed
//! to [`ServerBuilder::authenticator`](crate::ServerBuilder::authenticator),
//! the way a broker is handed over as a [`Hub`](ws_core::Hub). Without one
//! the pipeline has no authentication stage at all.
//!
//! Key design decisions:
//!
//! - **Built before the server.** Whatever the implementation must set up
//!   (key files, pools, async or not) happens before it is handed over, so
//!   [`ServerBuilder::build`](crate::ServerBuilder::build) stays one
//!   synchronous call.
//! - **The runtime owns what happens to an open connection.** The
//!   implementation says who is there ([`Authenticated`]) and how each
//!   session is re-checked ([`Revalidate`]); closing (1008, 1013),
//!   downgrading ([`OnSessionEnd`]) and `on_aspect_change` stay the
//!   runtime's, so they behave the same whatever the source.
//! - **A session that ends at a known time costs no task.**
//!   [`Revalidate::local_end`] lets the runtime set the session's own timer
//!   instead of running [`Revalidate::until_ended`].

use std::time::SystemTime;

use futures_util::future::BoxFuture;
use http::{HeaderMap, StatusCode};
use ws_core::{Aspects, BoxError, UserAspect};

use crate::config::OnSessionEnd;

/// Resolves who is on a connection at its handshake.
///
/// Implemented by `ws-auth`'s `Authenticator`; share one per server.
pub trait Authenticate: Send + Sync + 'static {
    /// The configured aspects, in configuration order. Asked once, when
    /// the server is built; none: the server has no authentication stage.
    fn aspects(&self) -> Vec<AspectInfo>;

    /// Whether `entry`, one entry of `Sec-WebSocket-Protocol`, carries a
    /// credential: it is then never chosen as the subprotocol.
    fn is_credential_protocol(&self, entry: &str) -> bool;

    /// Resolves every aspect of one handshake: `headers` of the request,
    /// `query` its raw query string (without `?`).
    ///
    /// # Errors
    /// The refusal to answer the handshake with (503 for a session store
    /// that failed under `on_error = "reject"`).
    fn resolve<'a>(
        &'a self,
        headers: &'a HeaderMap,
        query: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Authenticated, AuthRefusal>>;
}

/// One configured aspect, as the runtime needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AspectInfo {
    /// The aspect's name (`frontend.user`): the key of `conn.aspect(..)`
    /// and of a route's `require`.
    pub name: String,
    /// What ending its session does to an open connection.
    pub on_end: OnSessionEnd,
    /// Its credential is `Authorization: Bearer`: a 401 then says so in
    /// `WWW-Authenticate`.
    pub bearer: bool,
}

impl AspectInfo {
    /// The aspect `name`, closing connections when its session ends, not
    /// a bearer token.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            on_end: OnSessionEnd::default(),
            bearer: false,
        }
    }

    /// Sets `on_end`.
    #[must_use]
    pub fn on_end(mut self, on_end: OnSessionEnd) -> Self {
        self.on_end = on_end;
        self
    }

    /// Marks the credential as `Authorization: Bearer`.
    #[must_use]
    pub fn bearer(mut self, bearer: bool) -> Self {
        self.bearer = bearer;
        self
    }
}

/// What one handshake resolved to.
#[derive(Default)]
#[non_exhaustive]
pub struct Authenticated {
    /// One aspect per configured name; anonymous where nobody is logged in.
    pub aspects: Aspects,
    /// One per logged-in session that can end while the connection lives.
    pub sessions: Vec<Box<dyn Revalidate>>,
}

impl Authenticated {
    /// `aspects`, with the sessions that re-check them.
    pub fn new(aspects: Aspects, sessions: Vec<Box<dyn Revalidate>>) -> Self {
        Self { aspects, sessions }
    }
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("aspects", &self.aspects)
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

/// A handshake refused by [`Authenticate::resolve`]: the status and the
/// body of the answer (naming the aspect, never a store's own error text).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct AuthRefusal {
    /// The answer's status.
    pub status: StatusCode,
    /// The answer's body.
    pub message: String,
}

impl AuthRefusal {
    /// A refusal with `status` saying `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Re-checks one aspect's session of one connection while it is open.
pub trait Revalidate: Send + 'static {
    /// The aspect's name.
    fn aspect(&self) -> &str;

    /// The user as resolved at the handshake.
    fn current(&self) -> &UserAspect;

    /// When the session ends, if that is known now and nothing needs to be
    /// asked before (a JWT at its `exp`, no `revalidate_every`): the runtime
    /// then ends it on the session's own timer. `None`: it is re-checked by
    /// [`until_ended`](Self::until_ended).
    fn local_end(&self, now: SystemTime) -> Option<SystemTime>;

    /// Re-checks on schedule until the session ends; pending forever when
    /// no check is ever due. Calls `on_change(name, user)` whenever a check
    /// finds the user changed.
    fn until_ended(self: Box<Self>, on_change: OnChange) -> BoxFuture<'static, SessionEnd>;
}

/// What [`Revalidate::until_ended`] calls when a check finds the user
/// changed: the aspect's name and the user now.
pub type OnChange = Box<dyn FnMut(&str, &UserAspect) + Send>;

/// Why [`Revalidate::until_ended`] returned.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionEnd {
    /// The session is over (logged out, deleted, expired): the runtime
    /// closes with 1008 or downgrades, by the aspect's `on_end`.
    Ended,
    /// The session cannot be vouched for (its store failed under
    /// `on_error = "reject"`): the runtime closes with 1013.
    Unavailable(BoxError),
}
