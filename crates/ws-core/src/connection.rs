//! One open WebSocket connection, as a component sees it.

use std::cell::Cell;
use std::fmt;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use http::{Extensions, HeaderMap};

use crate::aspect::{Aspects, UserAspect};
use crate::budget::MemoryBudget;
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
    /// The request headers. A server keeps all but those that only served
    /// the upgrade itself (`Connection`, `Upgrade`, `Sec-WebSocket-Key`,
    /// `-Version`, `-Extensions`).
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
    /// The server's memory budget (`max_buffered_memory`) has no room for
    /// the message: the connection is being closed with 1013 (try again
    /// later), after what was queued before.
    #[error("server memory budget exhausted; the connection is closing with 1013")]
    OverBudget(Message),
}

impl SendError {
    /// The message that was not sent.
    pub fn into_message(self) -> Message {
        match self {
            Self::Full(m) | Self::Closed(m) | Self::OverBudget(m) => m,
        }
    }
}

struct Inner {
    id: ConnectionId,
    info: HandshakeInfo,
    queue: Mutex<Queue>,
    state: Mutex<Extensions>,
    aspects: Mutex<Aspects>,
    hub: Hub,
    /// Counts the queue's bytes beyond its allowance.
    budget: MemoryBudget,
}

impl Inner {
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// The queue with its lock is 64 bytes at most: wherever it lands, at most
// two cache lines, both of which `Connection::prefetch` asks for. (Aligned
// to a line of its own it was one, but the aligned allocation of every
// connection cost 250 bytes of RSS each.)
const _: () = assert!(std::mem::size_of::<Mutex<Queue>>() <= 64);

/// A connection's outgoing queue and what ends it, behind one lock that
/// only the connection's senders and its writer take (never a lock shared
/// with other connections). It allocates nothing until the first message,
/// and gives memory back after a burst. With its lock it takes 64 bytes,
/// so a send touches at most two cache lines: what is rare is boxed.
struct Queue {
    items: Vec<Message>,
    /// Set by [`Connection::close`]: the frame to send once `items` are out.
    close_frame: Option<Box<CloseFrame>>,
    /// The writer waiting for something to write.
    waker: Option<Waker>,
    /// Messages `items` may hold ([`CAPACITY`]) and two flags: no more
    /// sends ([`CLOSING`]: a close was asked for, or the writer is gone);
    /// the writer handed out the close or went away ([`DONE`]). One word,
    /// so the byte count fits in the queue's 64 bytes.
    bits: u32,
    /// Bytes of the messages in `items`, counted against the server's
    /// [`MemoryBudget`] beyond its allowance.
    bytes: u32,
}

/// The capacity's bits of [`Queue::bits`].
const CAPACITY: u32 = (1 << 30) - 1;
/// See [`Queue::bits`].
const CLOSING: u32 = 1 << 30;
/// See [`Queue::bits`].
const DONE: u32 = 1 << 31;

impl Queue {
    fn capacity(&self) -> usize {
        (self.bits & CAPACITY) as usize
    }
    fn closing(&self) -> bool {
        self.bits & CLOSING != 0
    }
    fn done(&self) -> bool {
        self.bits & DONE != 0
    }
    fn set(&mut self, flag: u32) {
        self.bits |= flag;
    }
    /// Asks for the close `frame` after what is queued (no more sends);
    /// the writer to wake, if it waits.
    fn close_with(&mut self, frame: CloseFrame) -> Option<Waker> {
        self.set(CLOSING);
        self.close_frame = Some(Box::new(frame));
        self.waker.take()
    }
    /// Takes `n` bytes off the count (messages left the queue).
    fn taken(&mut self, n: usize, budget: &MemoryBudget) {
        let before = self.bytes as usize;
        let after = before.saturating_sub(n);
        self.bytes = after as u32;
        if before > MemoryBudget::UNCOUNTED {
            let _ = budget.adjust(before, after);
        }
    }
}

thread_local! {
    /// The connection whose writer is running its own work on this thread
    /// right now (see [`Outbox::serving`]); 0 for none.
    static SERVING: Cell<usize> = const { Cell::new(0) };
}

/// Queued messages above this many are not kept allocated once written.
const KEEP_QUEUED: usize = 64;

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
    /// A connection and the receiving end of its outgoing queue, holding at
    /// most `queue_capacity` messages (at least 1), whose queued bytes count
    /// against `budget`. It uses `hub` for [`hub`](Self::hub), `join` and
    /// `leave`, but is not registered with it: that is the runtime's
    /// business (`__runtime::Membership`).
    pub(crate) fn open(
        mut info: HandshakeInfo,
        queue_capacity: usize,
        hub: Hub,
        budget: MemoryBudget,
    ) -> (Self, Outbox) {
        let mut aspects = std::mem::take(&mut info.aspects);
        // Kept as long as the connection: no spare capacity.
        aspects.shrink_to_fit();
        let inner = Arc::new(Inner {
            id: ConnectionId::next(),
            info,
            queue: Mutex::new(Queue {
                items: Vec::new(),
                close_frame: None,
                waker: None,
                bits: u32::try_from(queue_capacity)
                    .unwrap_or(CAPACITY)
                    .clamp(1, CAPACITY),
                bytes: 0,
            }),
            state: Mutex::new(Extensions::new()),
            aspects: Mutex::new(aspects),
            hub,
            budget,
        });
        let outbox = Outbox {
            conn: Arc::clone(&inner),
        };
        (Self { inner }, outbox)
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

    /// Starts loading the lines that [`send`](Self::send) touches first
    /// (the queue and its lock, 64 bytes: one or two lines), without
    /// waiting for them. A fan-out calls it a few members ahead: with
    /// thousands of subscribers every queue is out of cache, and the loads
    /// then overlap instead of stalling one send after the other. A no-op
    /// on other targets than x86-64.
    #[allow(unsafe_code)]
    #[inline]
    pub(crate) fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `prefetcht0` only hints the cache; it never faults, reads
        // nothing into the program and writes nothing (SSE, which it
        // needs, is part of x86-64).
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let first = std::ptr::from_ref(&self.inner.queue).cast::<i8>();
            _mm_prefetch::<_MM_HINT_T0>(first);
            _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(63));
        }
    }

    /// Queues a message for the client without waiting.
    ///
    /// # Errors
    /// [`SendError::Full`] when the client does not keep up and the queue is
    /// full; [`SendError::Closed`] once the connection is closing or closed;
    /// [`SendError::OverBudget`] when the server's memory budget has no
    /// room for the message (the connection then closes with 1013).
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        let message = message.into();
        let mut q = self.inner.lock_queue();
        if q.closing() {
            return Err(SendError::Closed(message));
        }
        if q.items.len() >= q.capacity() {
            return Err(SendError::Full(message));
        }
        let before = q.bytes as usize;
        let after = before + message.len();
        // Only a queue past its allowance counts (a shared atomic).
        if after > MemoryBudget::UNCOUNTED {
            let counted = u32::try_from(after)
                .ok()
                .and_then(|_| self.inner.budget.adjust(before, after).ok());
            if counted.is_none() {
                let waker = q.close_with(CloseFrame::new(
                    CloseCode::TRY_AGAIN_LATER,
                    "server memory budget exhausted",
                ));
                drop(q);
                if let Some(w) = waker {
                    w.wake();
                }
                return Err(SendError::OverBudget(message));
            }
        }
        q.bytes = after as u32;
        q.items.push(message);
        // The writer's own work (an answer from `on_message`) needs no
        // wake-up: the writer looks at the queue next anyway.
        let own = SERVING.with(Cell::get) == Arc::as_ptr(&self.inner) as usize;
        let waker = if own { None } else { q.waker.take() };
        drop(q);
        // Woken outside the lock, and only when the writer waits.
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Closes the connection with `code` and `reason` after the messages
    /// already queued. Later sends fail; only the first close counts.
    pub fn close(&self, code: CloseCode, reason: impl Into<Utf8Bytes>) {
        let mut q = self.inner.lock_queue();
        if q.closing() {
            return;
        }
        let waker = q.close_with(CloseFrame::new(code, reason));
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Whether the connection is closing or closed.
    pub fn is_closed(&self) -> bool {
        self.inner.lock_queue().closing()
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
    /// revalidated, then tells the hub); returns the previous one.
    pub(crate) fn set_aspect(&self, name: &str, aspect: UserAspect) -> Option<Arc<UserAspect>> {
        self.lock_aspects().insert(name, aspect)
    }

    /// The logged-in user (see [`Aspects::user`]), without copying the
    /// aspects.
    pub(crate) fn user(&self) -> Option<Arc<UserAspect>> {
        self.lock_aspects().user()
    }

    fn lock_aspects(&self) -> MutexGuard<'_, Aspects> {
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

    fn lock_state(&self) -> MutexGuard<'_, Extensions> {
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
    conn: Arc<Inner>,
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
        poll_fn(|cx| self.poll_recv(cx, buf, limit)).await
    }

    /// [`recv`](Self::recv) as a poll: `Pending` (with `cx`'s waker kept to
    /// be woken by the next send or close) while nothing is queued.
    ///
    /// Costs one uncontended lock; the waker is cloned only when it changed.
    pub fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Vec<Message>,
        limit: usize,
    ) -> Poll<Option<Outgoing>> {
        let mut q = self.conn.lock_queue();
        if !q.items.is_empty() {
            let n = q.items.len().min(limit.max(1));
            let bytes = if n == q.items.len() {
                q.bytes as usize
            } else {
                q.items[..n].iter().map(Message::len).sum()
            };
            q.taken(bytes, &self.conn.budget);
            if n == q.items.len() && buf.is_empty() {
                // Everything, into an empty buffer: trade the two (the
                // queue gets the caller's spare capacity).
                std::mem::swap(buf, &mut q.items);
            } else {
                buf.extend(q.items.drain(..n));
            }
            if q.items.is_empty() && q.items.capacity() > KEEP_QUEUED {
                q.items = Vec::new();
            }
            return Poll::Ready(Some(Outgoing::Messages(n)));
        }
        if q.done() {
            return Poll::Ready(None);
        }
        if q.closing() {
            // Closing with nothing left queued: hand out the close once.
            q.set(DONE);
            let frame = q
                .close_frame
                .take()
                .map_or_else(|| CloseFrame::new(CloseCode::NORMAL, ""), |f| *f);
            return Poll::Ready(Some(Outgoing::Close(frame)));
        }
        match &q.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => q.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Polls `work` as the writer's own: sends to this connection made while
    /// it is polled (on this thread) do not wake the writer, which must look
    /// at the queue after `work` returns. The server wraps `on_message` in
    /// this, so an answer costs no wake-up of the task that is running.
    pub fn serving<F: Future + Unpin>(&self, work: F) -> Serving<F> {
        Serving {
            conn: Arc::as_ptr(&self.conn) as usize,
            work,
        }
    }

    /// Runs `work` as the writer's own, like [`serving`](Self::serving)
    /// for a future: sends to this connection made meanwhile (on this
    /// thread) do not wake the writer. The server runs a
    /// [`SyncComponent`](crate::SyncComponent)'s `on_message` in this.
    pub fn serving_now<R>(&self, work: impl FnOnce() -> R) -> R {
        let _restore = Restore(SERVING.with(|c| c.replace(Arc::as_ptr(&self.conn) as usize)));
        work()
    }

    /// Messages queued and not yet taken.
    pub fn len(&self) -> usize {
        self.conn.lock_queue().items.len()
    }

    /// Whether [`recv`](Self::recv) has nothing to hand out: no message queued
    /// and no close pending.
    pub fn is_empty(&self) -> bool {
        let q = self.conn.lock_queue();
        q.items.is_empty() && (q.done() || !q.closing())
    }

    /// Marks the connection closed: sends fail from now on; what is already
    /// queued can still be taken. The server calls this as soon as the
    /// connection ends, whoever ended it.
    pub fn mark_closed(&mut self) {
        let mut q = self.conn.lock_queue();
        q.set(CLOSING);
        q.waker = None;
    }
}

/// Puts the previous [`SERVING`] value back, also when the work panics.
struct Restore(usize);

impl Drop for Restore {
    fn drop(&mut self) {
        SERVING.with(|c| c.set(self.0));
    }
}

/// The future returned by [`Outbox::serving`].
#[must_use = "futures do nothing unless polled"]
pub struct Serving<F> {
    conn: usize,
    work: F,
}

impl<F> fmt::Debug for Serving<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serving").finish_non_exhaustive()
    }
}

impl<F: Future + Unpin> Future for Serving<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _restore = Restore(SERVING.with(|c| c.replace(self.conn)));
        Pin::new(&mut self.work).poll(cx)
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.mark_closed();
        // Nobody takes them any more; clones of the connection may live on.
        let left = {
            let mut q = self.conn.lock_queue();
            q.set(DONE);
            let bytes = q.bytes as usize;
            q.taken(bytes, &self.conn.budget);
            std::mem::take(&mut q.items)
        };
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> HandshakeInfo {
        HandshakeInfo::new("127.0.0.1:9".parse().unwrap(), "/x")
    }

    fn new(info: HandshakeInfo, cap: usize) -> (Connection, Outbox) {
        Connection::open(info, cap, Hub::local(), MemoryBudget::unlimited())
    }

    #[tokio::test]
    async fn send_full_then_closed() {
        let (conn, mut outbox) = new(info(), 2);
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
        let (conn, mut outbox) = new(info(), 8);
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
    async fn queued_bytes_count_against_the_budget_and_past_it_close_with_1013() {
        const U: usize = MemoryBudget::UNCOUNTED;
        let budget = MemoryBudget::new(140_000);
        let (conn, mut outbox) = Connection::open(info(), 100, Hub::local(), budget.clone());
        let (other, other_outbox) = Connection::open(info(), 100, Hub::local(), budget.clone());
        let chunk = bytes::Bytes::from(vec![0u8; 30_000]);
        let sent = |c: &Connection| c.send(chunk.clone()).map_err(|e| e.to_string());
        // The allowance (16 KiB) is not counted; beyond it every byte is.
        assert_eq!(sent(&conn), Ok(()));
        assert_eq!(budget.used(), 30_000 - U);
        for _ in 0..3 {
            assert_eq!(sent(&conn), Ok(()));
        }
        assert_eq!(budget.used(), 120_000 - U);
        // The other connection's queue shares the budget: its second
        // message does not fit, and it closes.
        assert_eq!(sent(&other), Ok(()));
        let refused = other.send(chunk.clone()).unwrap_err();
        assert!(matches!(refused, SendError::OverBudget(_)), "{refused}");
        assert!(other.is_closed());
        assert!(matches!(other.send("x"), Err(SendError::Closed(_))));
        drop(other_outbox);
        assert_eq!(budget.used(), 120_000 - U, "its bytes are given back");
        // Taking part of the queue gives back what it took.
        let mut buf = Vec::new();
        assert_eq!(outbox.recv(&mut buf, 2).await, Some(Outgoing::Messages(2)));
        assert_eq!(budget.used(), 60_000 - U);
        // Up to the budget, then refused; the connection closes with 1013
        // after what was queued before.
        for _ in 0..3 {
            assert_eq!(sent(&conn), Ok(()));
        }
        let e = conn.send(chunk.clone()).unwrap_err();
        assert!(matches!(e, SendError::OverBudget(_)), "{e}");
        assert!(budget.used() <= budget.limit());
        assert_eq!(
            outbox.recv(&mut buf, 100).await,
            Some(Outgoing::Messages(5))
        );
        assert_eq!(budget.used(), 0);
        match outbox.recv(&mut buf, 100).await {
            Some(Outgoing::Close(frame)) => {
                assert_eq!(frame.code, CloseCode::TRY_AGAIN_LATER);
                assert!(frame.reason.contains("memory budget"), "{}", frame.reason);
            }
            _ => panic!("expected the close"),
        }
    }

    #[test]
    fn a_dropped_outbox_gives_its_bytes_back() {
        let budget = MemoryBudget::new(1 << 20);
        let (conn, outbox) = Connection::open(info(), 100, Hub::local(), budget.clone());
        conn.send(bytes::Bytes::from(vec![0u8; 100_000])).unwrap();
        assert!(budget.used() > 0);
        drop(outbox);
        assert_eq!(budget.used(), 0);
        // The queue and its lock still fit the 64 bytes `prefetch` loads.
        assert!(std::mem::size_of::<Mutex<Queue>>() <= 64);
    }

    #[tokio::test]
    async fn close_wakes_a_waiting_outbox() {
        let (conn, mut outbox) = new(info(), 8);
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

    #[tokio::test]
    async fn send_wakes_a_waiting_outbox() {
        let (conn, mut outbox) = new(info(), 8);
        let waiter = tokio::spawn(async move {
            let mut buf = Vec::new();
            let got = outbox.recv(&mut buf, 8).await;
            (got, buf)
        });
        tokio::task::yield_now().await;
        conn.send("late").unwrap();
        let (got, buf) = waiter.await.unwrap();
        assert_eq!(got, Some(Outgoing::Messages(1)));
        assert_eq!(buf, vec![Message::from("late")]);
    }

    #[test]
    fn the_writers_own_sends_do_not_wake_it_others_do() {
        use std::sync::atomic::AtomicUsize;
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let (conn, mut outbox) = new(info(), 8);
        let mut buf = Vec::new();
        assert!(outbox.poll_recv(&mut cx, &mut buf, 8).is_pending());
        // An answer from the writer's own work: queued, no wake-up.
        let c = conn.clone();
        let work = outbox.serving(Box::pin(async move { c.send("own") }));
        let mut work = std::pin::pin!(work);
        assert!(matches!(work.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        // Anyone else's send wakes the waiting writer.
        conn.send("other").unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            outbox.poll_recv(&mut cx, &mut buf, 8),
            Poll::Ready(Some(Outgoing::Messages(2)))
        );
        assert_eq!(buf, vec![Message::from("own"), Message::from("other")]);
    }

    #[tokio::test]
    async fn a_burst_is_not_kept_allocated_and_limits_hold() {
        let (conn, mut outbox) = new(info(), 1000);
        for i in 0..1000 {
            conn.send(i.to_string()).unwrap();
        }
        assert!(matches!(conn.send("over"), Err(SendError::Full(_))));
        let mut buf = Vec::new();
        let mut taken = 0;
        while taken < 1000 {
            let Some(Outgoing::Messages(n)) = outbox.recv(&mut buf, 300).await else {
                panic!("messages expected");
            };
            assert!(n <= 300);
            taken += n;
        }
        assert_eq!(buf.len(), 1000);
        assert_eq!(buf[999], Message::from("999"));
        assert!(outbox.is_empty());
        assert_eq!(conn.inner.lock_queue().items.capacity(), 0);
        // A queue that never grew past the threshold keeps its allocation.
        conn.send("x").unwrap();
        assert_eq!(outbox.recv(&mut buf, 8).await, Some(Outgoing::Messages(1)));
        assert!(conn.inner.lock_queue().items.capacity() > 0);
    }

    #[test]
    fn ids_are_unique_and_state_is_typed() {
        let (a, _oa) = new(info(), 1);
        let (b, _ob) = new(info(), 1);
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
        let (c, _o) = new(i, 1);
        assert_eq!(c.param("room"), Some("lobby"));
        assert_eq!(c.param("nope"), None);
    }
}
