//! The open sessions of a server, closed all at once at shutdown, and what
//! a session holds until it has ended. Used by the server and by the
//! session alike, so neither depends on the other for it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ws_core::{CloseCode, Connection, ConnectionId};
use ws_ratelimit::ConnectionPermit;

/// What a session holds until it has ended, `on_close` included.
pub(crate) struct Held<'a> {
    /// The connection's places in the connection limits.
    _permits: Box<[ConnectionPermit]>,
    /// Its entry among the open sessions.
    _entry: SessionEntry<'a>,
    /// When the session started.
    pub(crate) started: std::time::Instant,
}

impl<'a> Held<'a> {
    /// What a session starting now holds: its `permits` and its `entry`.
    pub(crate) fn new(permits: Vec<ConnectionPermit>, entry: SessionEntry<'a>) -> Self {
        Self {
            _permits: permits.into_boxed_slice(),
            _entry: entry,
            started: std::time::Instant::now(),
        }
    }
}

/// The open sessions of a server, closed all at once at shutdown.
///
/// Shutdown reaches each connection through its own queue
/// ([`Connection::close`]), so a session polls nothing that all sessions
/// share; the lock here is taken once when a session starts and once when
/// it ends, never per message.
#[derive(Default)]
pub(crate) struct Sessions {
    /// Set when shutdown starts; sessions entering later close at once.
    pub(crate) closing: AtomicBool,
    open: Mutex<HashMap<ConnectionId, Connection>>,
}

impl Sessions {
    /// Registers `conn` until the returned guard drops.
    pub(crate) fn enter<'a>(&'a self, conn: &Connection) -> SessionEntry<'a> {
        self.lock().insert(conn.id(), conn.clone());
        // After the insert: either `close_all` sees the entry, or this sees
        // the flag (both are sequentially consistent).
        if self.closing.load(Ordering::SeqCst) {
            conn.close(CloseCode::GOING_AWAY, SHUTDOWN_REASON);
        }
        SessionEntry {
            sessions: self,
            id: conn.id(),
        }
    }

    /// Closes every open session with 1001, now and from now on.
    pub(crate) fn close_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let open: Vec<Connection> = self.lock().values().cloned().collect();
        for conn in open {
            conn.close(CloseCode::GOING_AWAY, SHUTDOWN_REASON);
        }
    }

    /// Sessions open now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Connection>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The close reason every client gets at shutdown.
pub(crate) const SHUTDOWN_REASON: &str = "server shutting down";

/// A session's place in [`Sessions`], given up on drop.
pub(crate) struct SessionEntry<'a> {
    sessions: &'a Sessions,
    id: ConnectionId,
}

impl Drop for SessionEntry<'_> {
    fn drop(&mut self) {
        self.sessions.lock().remove(&self.id);
    }
}
