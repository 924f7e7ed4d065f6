//! What an accept loop does when `accept` fails.
//!
//! Out of file descriptors (`EMFILE`, `ENFILE`) or kernel memory
//! (`ENOBUFS`, `ENOMEM`), the listener stays readable: accepting again at
//! once fails again at once, and the loop would spin on one core. The loop
//! backs off instead, retrying every [`BACKOFF`] until a descriptor frees
//! up (meanwhile new connections wait in the listen backlog, and beyond it
//! the kernel drops their SYNs), and says so once per episode, not per failed
//! attempt. A connection that failed on its own (aborted or reset before
//! it was accepted) costs nothing: the loop accepts the next one at once.

use std::io;
use std::time::{Duration, Instant};

/// How long the loop waits before accepting again after a failure that is
/// not the connection's own: short, so the server serves again soon after
/// descriptors free up; a few attempts per second cost nothing.
pub(crate) const BACKOFF: Duration = Duration::from_millis(50);

/// What the loop does after a failed `accept`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Accept again at once.
    Retry,
    /// Wait [`BACKOFF`], then accept again.
    BackOff,
}

/// The accept failures of one listener, as episodes.
#[derive(Debug)]
pub(crate) struct Failures {
    /// What is being accepted, for the log (`"WebSocket"`, `"admin"`).
    what: &'static str,
    /// Since when, and how many attempts failed, in the current episode.
    episode: Option<(Instant, u64)>,
}

impl Failures {
    /// No failure yet.
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            what,
            episode: None,
        }
    }

    /// A connection was accepted: ends an episode (logged with its length).
    pub(crate) fn accepted(&mut self) {
        if let Some((since, attempts)) = self.episode.take() {
            tracing::warn!(
                listener = self.what,
                after = ?since.elapsed(),
                failed_attempts = attempts,
                "accepting connections again"
            );
        }
    }

    /// `accept` failed with `e`: what to do next. Logs the first failure
    /// of an episode as a warning, later ones at debug level.
    pub(crate) fn failed(&mut self, e: &io::Error) -> Next {
        if is_the_connections_own(e) {
            tracing::debug!(listener = self.what, error = %e, "connection failed before it was accepted");
            return Next::Retry;
        }
        match &mut self.episode {
            Some((_, attempts)) => {
                *attempts += 1;
                tracing::debug!(listener = self.what, error = %e, "accept failed again");
            }
            None => {
                self.episode = Some((Instant::now(), 1));
                tracing::warn!(
                    listener = self.what,
                    error = %e,
                    retry_every = ?BACKOFF,
                    "accept failed (out of file descriptors or memory?): new connections wait \
                     until one frees up; open connections keep being served"
                );
            }
        }
        Next::BackOff
    }

    /// Whether an episode of failures is going on.
    #[cfg(test)]
    fn in_episode(&self) -> bool {
        self.episode.is_some()
    }
}

/// Whether `e` is about the one connection being accepted (the peer gave
/// up before `accept`), not about the listener or the process.
fn is_the_connections_own(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::EPROTO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_backs_off_in_one_episode() {
        let mut f = Failures::new("test");
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(
                f.failed(&io::Error::from_raw_os_error(errno)),
                Next::BackOff
            );
            assert!(f.in_episode());
        }
        f.accepted();
        assert!(!f.in_episode());
    }

    #[test]
    fn a_connections_own_failure_retries_at_once() {
        let mut f = Failures::new("test");
        for errno in [libc::ECONNABORTED, libc::ECONNRESET, libc::EPROTO] {
            assert_eq!(f.failed(&io::Error::from_raw_os_error(errno)), Next::Retry);
        }
        assert!(!f.in_episode());
    }
}
