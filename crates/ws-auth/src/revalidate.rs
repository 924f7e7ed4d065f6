//! Re-checking a session while its connection lives: the original's
//! "todo handle logoff, cookie remove, invalid session".
//!
//! A [`Revalidator`] holds the credential presented at the handshake and the
//! user it resolved to. [`check`](Revalidator::check) asks the source again;
//! [`until_ended`](Revalidator::until_ended) does so on schedule and returns
//! when the session is over, so the runtime only has to race it against the
//! connection and close with 1008 `session ended` when it wins.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ws_core::UserAspect;

use crate::authenticator::Entry;
use crate::config::OnError;
use crate::error::AuthError;
use crate::source::{Lookup, Presented};

/// The result of one [`Revalidator::check`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Check {
    /// The session is still valid; the user as the source now sees them
    /// (groups or expiry may have changed).
    Valid(UserAspect),
    /// The session is over: logged out, deleted, expired, or the token's
    /// `exp` has passed. Close the connection (1008, `session ended`) or
    /// downgrade the aspect to anonymous.
    Ended,
    /// The source failed and the aspect is configured
    /// `on_error = "reject"`: the session cannot be vouched for. Close with
    /// 1013 (try again later). With the default `on_error = "anonymous"` a
    /// failing source keeps the session (with a warning) until it answers
    /// again or the session's known expiry passes.
    Unavailable(AuthError),
}

/// Why [`Revalidator::until_ended`] returned.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionEnd {
    /// See [`Check::Ended`].
    Ended,
    /// See [`Check::Unavailable`].
    Unavailable(AuthError),
}

/// Re-checks one aspect's session of one connection.
///
/// Returned by [`Authenticator::resolve`](crate::Authenticator::resolve) for
/// every logged-in aspect that can end: with `revalidate_every`, it is
/// checked that often; with a known expiry (a JWT's `exp`, a Redis TTL, a
/// mapped `expires_at`) it is checked when that passes. A JWT is never
/// looked up again: its check is local and ends the session at `exp` (plus
/// the leeway), so the runtime closes at `exp` without polling. A store's
/// expiry is checked against the store, since sliding sessions extend it.
#[derive(Debug)]
pub struct Revalidator {
    entry: Arc<Entry>,
    presented: Presented,
    current: UserAspect,
}

impl Revalidator {
    pub(crate) fn new(entry: Arc<Entry>, presented: Presented, current: UserAspect) -> Self {
        Self {
            entry,
            presented,
            current,
        }
    }

    /// The aspect's name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// Whether [`check`](Self::check) is local: it does no I/O and
    /// completes on its first poll (a JWT, whose session ends at `exp`).
    pub fn is_local(&self) -> bool {
        self.entry.source.is_local()
    }

    /// `revalidate_every` of the aspect (`None`: only at expiry).
    pub fn every(&self) -> Option<Duration> {
        self.entry.every
    }

    /// When the session is known to end (a JWT's `exp`, the store's TTL),
    /// as of the last check.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.current.expires_at
    }

    /// The user as of the last check.
    pub fn current(&self) -> &UserAspect {
        &self.current
    }

    /// When the next check is due, seen from `now`: `revalidate_every` after
    /// `now` or the expiry (plus a JWT's leeway), whichever is first. `None`:
    /// never.
    pub fn next_check(&self, now: SystemTime) -> Option<SystemTime> {
        let periodic = self.entry.every.map(|d| now + d);
        let expiry = self
            .current
            .expires_at
            .map(|at| at + self.entry.source.grace());
        match (periodic, expiry) {
            (Some(p), Some(e)) => Some(p.min(e)),
            (p, e) => p.or(e),
        }
    }

    /// Asks the source whether the session is still valid (a JWT: whether
    /// `exp` has passed, without I/O), and remembers the answer.
    pub async fn check(&mut self) -> Check {
        let entry = &self.entry;
        if entry.source.is_local() {
            return if entry.expired(&self.current, SystemTime::now()) {
                Check::Ended
            } else {
                Check::Valid(self.current.clone())
            };
        }
        match entry.source.lookup(&self.presented, entry.timeout).await {
            Ok(Lookup::User(user)) if !entry.expired(&user, SystemTime::now()) => {
                self.current = user.clone();
                Check::Valid(user)
            }
            Ok(Lookup::User(_)) => {
                tracing::debug!(aspect = %entry.name, "session expired");
                Check::Ended
            }
            Ok(Lookup::Anonymous(why)) => {
                tracing::debug!(aspect = %entry.name, why, "session ended");
                Check::Ended
            }
            Err(failure) => match entry.on_error {
                OnError::Anonymous if entry.expired(&self.current, SystemTime::now()) => {
                    Check::Ended
                }
                OnError::Anonymous => {
                    tracing::warn!(
                        aspect = %entry.name,
                        error = %failure,
                        "session source failed during revalidation; keeping the session"
                    );
                    Check::Valid(self.current.clone())
                }
                OnError::Reject => {
                    tracing::warn!(
                        aspect = %entry.name,
                        error = %failure,
                        "session source failed during revalidation"
                    );
                    Check::Unavailable(AuthError::new(Arc::clone(&entry.name), failure))
                }
            },
        }
    }

    /// Checks on schedule ([`next_check`](Self::next_check)) until the
    /// session ends; pending forever when no check is ever due. Calls
    /// `on_change(name, user)` whenever a check finds the user changed
    /// (groups, expiry, properties).
    ///
    /// Race it against the connection (`tokio::select!`) and close with
    /// 1008 `session ended` when it returns [`SessionEnd::Ended`]. Uses
    /// Tokio's timer.
    pub async fn until_ended<F>(mut self, mut on_change: F) -> SessionEnd
    where
        F: FnMut(&str, &UserAspect) + Send,
    {
        let mut reported = self.current.clone();
        loop {
            let now = SystemTime::now();
            let Some(due) = self.next_check(now) else {
                return std::future::pending().await;
            };
            if let Ok(wait) = due.duration_since(now) {
                tokio::time::sleep(wait).await;
            }
            match self.check().await {
                Check::Valid(user) => {
                    if user != reported {
                        on_change(&self.entry.name, &user);
                        reported = user;
                    }
                }
                Check::Ended => return SessionEnd::Ended,
                Check::Unavailable(e) => return SessionEnd::Unavailable(e),
            }
        }
    }
}
