//! One open WebSocket connection, as a component sees it.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use http::{Extensions, HeaderMap};
use tokio::sync::{Notify, mpsc};

use crate::aspect::{Aspects, UserAspect};
use crate::hub::{Hub, HubError};
use crate::message::{CloseCode, CloseFrame, Message, Utf8Bytes};

/// A connection's id, unique within the process for its whole life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// A fresh id, never handed out before in this process.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The id with this number (as shown by [`get`](Self::get) or `Display`),
    /// for addressing a connection from outside, e.g. an admin request.
    pub fn from_raw(n: u64) -> Self {
        Self(n)
    }

    /// The number behind the id.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// What the server learnt from the handshake of a connection.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HandshakeInfo {
    /// The client's address (the TCP peer, or the client behind a trusted proxy).
    pub client_addr: SocketAddr,
    /// The request path, prefix included (`/chat/lobby`).
    pub path: String,
    /// The raw query string without `?`, if any.
    pub query: Option<String>,
    /// The request headers.
    pub headers: HeaderMap,
    /// The route pattern that matched, prefix included (`/chat/{room}`).
    pub route: String,
    /// Route parameters, in the order they appear in the pattern.
    pub params: Vec<(String, String)>,
    /// The subprotocol the server chose, if any.
    pub subprotocol: Option<String>,
    /// The user aspects resolved at the handshake.
    pub aspects: Aspects,
}

impl HandshakeInfo {
    /// Handshake facts for a connection from `client_addr` on `path`; the other
    /// fields start empty and are set directly.
    pub fn new(client_addr: SocketAddr, path: impl Into<String>) -> Self {
        let path = path.into();
        Self {
            client_addr,
            route: path.clone(),
            path,
            query: None,
            headers: HeaderMap::new(),
            params: Vec::new(),
            subprotocol: None,
            aspects: Aspects::new(),
        }
    }
}

/// Why [`Connection::send`] did not queue a message. The message is handed back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection's outgoing queue is full: the client reads too slowly.
    #[error("outgoing queue of the connection is full")]
    Full(Message),
    /// The connection is closed or closing.
    #[error("connection is closed")]
    Closed(Message),
}

impl SendError {
    /// The message that was not sent.
    pub fn into_message(self) -> Message {
        match self {
            Self::Full(m) | Self::Closed(m) => m,
        }
    }
}

struct Inner {
    id: ConnectionId,
    info: HandshakeInfo,
    tx: mpsc::Sender<Message>,
    closing: AtomicBool,
    close_frame: Mutex<Option<CloseFrame>>,
    close_notify: Notify,
    state: Mutex<Extensions>,
    aspects: Mutex<Aspects>,
    hub: Hub,
    registered: AtomicBool,
}

/// An open connection: cheap to clone, safe to keep and use from any task.
///
/// [`send`](Self::send) never waits: it puts the message into the
/// connection's bounded outgoing queue, which the server writes in batches.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.inner.id)
            .field("client_addr", &self.inner.info.client_addr)
            .field("path", &self.inner.info.path)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection and the receiving end of its outgoing queue, holding at most
    /// `queue_capacity` messages (at least 1).
    ///
    /// The connection has a hub of its own ([`Hub::local`]); servers use
    /// [`with_hub`](Self::with_hub). Tests use it to drive a component
    /// without a server (see [`testing`](crate::testing)).
    pub fn new(info: HandshakeInfo, queue_capacity: usize) -> (Self, Outbox) {
        Self::with_hub(info, queue_capacity, Hub::local())
    }

    /// A connection registered with `hub` until its outbox is closed or
    /// dropped.
    pub fn with_hub(mut info: HandshakeInfo, queue_capacity: usize, hub: Hub) -> (Self, Outbox) {
        let (tx, rx) = mpsc::channel(queue_capacity.max(1));
        let aspects = std::mem::take(&mut info.aspects);
        let inner = Arc::new(Inner {
            id: ConnectionId::next(),
            info,
            tx,
            closing: AtomicBool::new(false),
            close_frame: Mutex::new(None),
            close_notify: Notify::new(),
            state: Mutex::new(Extensions::new()),
            aspects: Mutex::new(aspects),
            hub,
            registered: AtomicBool::new(true),
        });
        let conn = Self { inner };
        conn.inner.hub.backend().register(&conn);
        let outbox = Outbox {
            rx,
            conn: Arc::clone(&conn.inner),
            close_taken: false,
        };
        (conn, outbox)
    }

    /// The connection's id.
    pub fn id(&self) -> ConnectionId {
        self.inner.id
    }

    /// The client's address.
    pub fn client_addr(&self) -> SocketAddr {
        self.inner.info.client_addr
    }

    /// Everything learnt from the handshake.
    pub fn handshake(&self) -> &HandshakeInfo {
        &self.inner.info
    }

    /// The request path.
    pub fn path(&self) -> &str {
        &self.inner.info.path
    }

    /// The query string, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.inner.info.query.as_deref()
    }

    /// The handshake request's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.inner.info.headers
    }

    /// A route parameter by name (`room` in `/chat/{room}`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.inner
            .info
            .params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The chosen subprotocol.
    pub fn subprotocol(&self) -> Option<&str> {
        self.inner.info.subprotocol.as_deref()
    }

    /// Queues a message for the client without waiting.
    ///
    /// # Errors
    /// [`SendError::Full`] when the client does not keep up and the queue is
    /// full; [`SendError::Closed`] once the connection is closing or closed.
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        let message = message.into();
        if self.inner.closing.load(Ordering::Acquire) {
            return Err(SendError::Closed(message));
        }
        self.inner.tx.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(m) => SendError::Full(m),
            mpsc::error::TrySendError::Closed(m) => SendError::Closed(m),
        })
    }

    /// Closes the connection with `code` and `reason` after the messages
    /// already queued. Later sends fail; only the first close counts.
    pub fn close(&self, code: CloseCode, reason: impl Into<Utf8Bytes>) {
        if self.inner.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        *self
            .inner
            .close_frame
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(CloseFrame::new(code, reason));
        self.inner.close_notify.notify_one();
    }

    /// Whether the connection is closing or closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closing.load(Ordering::Acquire) || self.inner.tx.is_closed()
    }

    /// The aspect `name`; anonymous (`logged_in == false`) when the visitor
    /// is not logged in there, or no such aspect is configured.
    pub fn aspect(&self, name: &str) -> Arc<UserAspect> {
        self.lock_aspects().get(name)
    }

    /// Every aspect of the connection.
    pub fn aspects(&self) -> Aspects {
        self.lock_aspects().clone()
    }

    /// Replaces the aspect `name` (the server does this when a session is
    /// revalidated); returns the previous one.
    pub fn set_aspect(&self, name: &str, aspect: UserAspect) -> Option<Arc<UserAspect>> {
        let old = self.lock_aspects().insert(name, aspect);
        self.inner.hub.backend().refresh(self);
        old
    }

    fn lock_aspects(&self) -> std::sync::MutexGuard<'_, Aspects> {
        self.inner
            .aspects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The hub: channels, other connections, users.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Joins `channel`; left automatically when the connection closes.
    ///
    /// # Errors
    /// An invalid channel name.
    pub fn join(&self, channel: &str) -> Result<(), HubError> {
        self.inner.hub.backend().join(self, channel)
    }

    /// Leaves `channel`.
    pub fn leave(&self, channel: &str) {
        self.inner.hub.backend().leave(self.id(), channel);
    }

    /// Stores a typed value on the connection, returning the one it replaces.
    pub fn insert_state<T: Clone + Send + Sync + 'static>(&self, value: T) -> Option<T> {
        self.lock_state().insert(value)
    }

    /// A copy of the stored value of type `T`.
    pub fn state<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.lock_state().get::<T>().cloned()
    }

    /// Runs `f` on the stored value of type `T`, if there is one.
    pub fn with_state<T: Clone + Send + Sync + 'static, R>(
        &self,
        f: impl FnOnce(&mut T) -> R,
    ) -> Option<R> {
        self.lock_state().get_mut::<T>().map(f)
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, Extensions> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// What [`Outbox::recv`] took from the queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// This many messages were appended to the buffer.
    Messages(usize),
    /// The component asked to close; every message queued before is delivered.
    Close(CloseFrame),
}

/// The receiving end of a connection's outgoing queue, owned by whoever writes
/// to the client (the server's session, or a test).
///
/// Dropping it makes further sends fail with [`SendError::Closed`].
pub struct Outbox {
    rx: mpsc::Receiver<Message>,
    conn: Arc<Inner>,
    close_taken: bool,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("id", &self.conn.id)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// Waits for outgoing messages and appends up to `limit` of them to `buf`,
    /// or returns the close the component asked for once nothing queued before
    /// it is left. Returns `None` after the close was handed out.
    ///
    /// Cancel safe: no message is lost when the future is dropped.
    pub async fn recv(&mut self, buf: &mut Vec<Message>, limit: usize) -> Option<Outgoing> {
        if self.close_taken {
            return None;
        }
        let limit = limit.max(1);
        if !self.conn.closing.load(Ordering::Acquire) {
            tokio::select! {
                biased;
                n = self.rx.recv_many(buf, limit) => {
                    // The connection holds a sender, so the queue cannot end
                    // while we hold `conn`; n is at least 1.
                    return Some(Outgoing::Messages(n));
                }
                () = self.conn.close_notify.notified() => {}
            }
        }
        // Closing: deliver what was queued before the close, then the close.
        let before = buf.len();
        while buf.len() - before < limit {
            match self.rx.try_recv() {
                Ok(m) => buf.push(m),
                Err(_) => break,
            }
        }
        if buf.len() > before {
            return Some(Outgoing::Messages(buf.len() - before));
        }
        self.close_taken = true;
        let frame = self
            .conn
            .close_frame
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| CloseFrame::new(CloseCode::NORMAL, ""));
        Some(Outgoing::Close(frame))
    }

    /// Messages queued and not yet taken.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether [`recv`](Self::recv) has nothing to hand out: no message queued
    /// and no close pending.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty() && (self.close_taken || !self.conn.closing.load(Ordering::Acquire))
    }

    /// Marks the connection closed: sends fail from now on. The server calls
    /// this as soon as the connection ends, whoever ended it.
    pub fn mark_closed(&mut self) {
        self.conn.closing.store(true, Ordering::Release);
        self.rx.close();
        if self.conn.registered.swap(false, Ordering::AcqRel) {
            self.conn.hub.backend().unregister(self.conn.id);
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.mark_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> HandshakeInfo {
        HandshakeInfo::new("127.0.0.1:9".parse().unwrap(), "/x")
    }

    #[tokio::test]
    async fn send_full_then_closed() {
        let (conn, mut outbox) = Connection::new(info(), 2);
        conn.send("a").unwrap();
        conn.send("b").unwrap();
        assert!(matches!(conn.send("c"), Err(SendError::Full(_))));
        let mut buf = Vec::new();
        assert_eq!(outbox.recv(&mut buf, 10).await, Some(Outgoing::Messages(2)));
        assert_eq!(buf, vec![Message::from("a"), Message::from("b")]);
        outbox.mark_closed();
        assert!(matches!(conn.send("d"), Err(SendError::Closed(_))));
        assert!(conn.is_closed());
    }

    #[tokio::test]
    async fn close_comes_after_queued_messages() {
        let (conn, mut outbox) = Connection::new(info(), 8);
        conn.send("1").unwrap();
        conn.send("2").unwrap();
        conn.close(CloseCode::POLICY_VIOLATION, "bye");
        conn.close(CloseCode::NORMAL, "second close is ignored");
        assert!(matches!(conn.send("3"), Err(SendError::Closed(_))));
        let mut buf = Vec::new();
        assert_eq!(outbox.recv(&mut buf, 1).await, Some(Outgoing::Messages(1)));
        assert_eq!(outbox.recv(&mut buf, 8).await, Some(Outgoing::Messages(1)));
        assert_eq!(buf.len(), 2);
        assert_eq!(
            outbox.recv(&mut buf, 8).await,
            Some(Outgoing::Close(CloseFrame::new(
                CloseCode::POLICY_VIOLATION,
                "bye"
            )))
        );
        assert_eq!(outbox.recv(&mut buf, 8).await, None);
    }

    #[tokio::test]
    async fn close_wakes_a_waiting_outbox() {
        let (conn, mut outbox) = Connection::new(info(), 8);
        let waiter = tokio::spawn(async move {
            let mut buf = Vec::new();
            outbox.recv(&mut buf, 8).await
        });
        tokio::task::yield_now().await;
        conn.close(CloseCode::NORMAL, "done");
        let got = waiter.await.unwrap();
        assert_eq!(
            got,
            Some(Outgoing::Close(CloseFrame::new(CloseCode::NORMAL, "done")))
        );
    }

    #[test]
    fn ids_are_unique_and_state_is_typed() {
        let (a, _oa) = Connection::new(info(), 1);
        let (b, _ob) = Connection::new(info(), 1);
        assert_ne!(a.id(), b.id());
        assert_eq!(a.state::<u32>(), None);
        a.insert_state(5u32);
        assert_eq!(
            a.with_state(|n: &mut u32| {
                *n += 1;
                *n
            }),
            Some(6)
        );
        assert_eq!(a.state::<u32>(), Some(6));
        assert_eq!(b.state::<u32>(), None);
    }

    #[test]
    fn params_by_name() {
        let mut i = info();
        i.params = vec![("room".into(), "lobby".into())];
        let (c, _o) = Connection::new(i, 1);
        assert_eq!(c.param("room"), Some("lobby"));
        assert_eq!(c.param("nope"), None);
    }
}
