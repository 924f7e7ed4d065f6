//! One upgraded connection: frames in, the component's hooks, batched writes
//! out, keepalive, and the close handshake.
//!
//! A session is one task running one `select!` loop, so a connection's
//! messages are never handed to the component concurrently and no lock is
//! taken per message. Reading is preferred while frames are ready (pipelined
//! messages are all read before anything is written), but only up to a budget:
//! then everything the component queued is written and flushed once.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as TMessage};
use ws_core::__runtime::{self, Handled, Membership, Outbox, Outgoing};
use ws_core::budget::{MemoryBudget, OverBudget};
use ws_core::{
    BoxError, CloseCode, CloseFrame, CloseInitiator, CloseReason, Component, Connection, UserAspect,
};
use ws_ratelimit::{AddressMessageRate, MessageRate};

use crate::auth::{Auth, AuthEvent, Watch};
use crate::convert;
use crate::io::Io;
use crate::keepalive::{self, Keepalive, Verdict};
use crate::read_ahead::ReadAhead;
use crate::registry::Held;

/// The stream of every session: the client socket under the read adapter.
pub(crate) type Ws = WebSocketStream<ReadAhead<Io>>;

/// Messages read in a row before queued output is written regardless.
const READ_BUDGET: u32 = 64;
/// Messages written per batch (one flush each).
const WRITE_BATCH: usize = 128;
/// Batch buffer capacity kept between batches (larger bursts give the rest
/// back).
const KEEP_BATCH: usize = 32;
/// How long a close handshake may take after the server sent its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Settings a session needs, copied out of the server config once.
#[derive(Clone, Debug)]
pub(crate) struct SessionConfig {
    pub(crate) ping_interval: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
}

/// The message-rate limits of one connection: its own budget (owned, no
/// lock) and its address group's (one atomic word). Both unlimited: no
/// clock is even read.
pub(crate) struct MessageGuard {
    rate: MessageRate,
    per_address: AddressMessageRate,
    per_second: u32,
    per_address_per_second: u32,
    active: bool,
}

impl MessageGuard {
    pub(crate) fn new(
        per_second: u32,
        per_address: AddressMessageRate,
        per_address_per_second: u32,
    ) -> Self {
        let rate = MessageRate::new(per_second, std::time::Instant::now());
        Self {
            active: !rate.is_unlimited() || per_address_per_second != 0,
            rate,
            per_address,
            per_second,
            per_address_per_second,
        }
    }

    /// Admits one data message that arrived at `now`, or gives the 1008
    /// close that ends the connection.
    #[inline]
    fn check(&mut self, now: std::time::Instant) -> Result<(), CloseFrame> {
        if !self.active {
            return Ok(());
        }
        if self.rate.check(now).is_err() {
            return Err(CloseFrame::new(
                CloseCode::POLICY_VIOLATION,
                format!(
                    "message rate exceeded (max_messages_per_second = {})",
                    self.per_second
                ),
            ));
        }
        if self.per_address.check(now).is_err() {
            return Err(CloseFrame::new(
                CloseCode::POLICY_VIOLATION,
                format!(
                    "message rate of this address exceeded \
                     (max_messages_per_address_per_second = {})",
                    self.per_address_per_second
                ),
            ));
        }
        Ok(())
    }
}

/// A panic in component code, as an error.
#[derive(Debug, thiserror::Error)]
#[error("component panicked: {0}")]
struct Panicked(String);

fn panic_message(p: Box<dyn Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// Runs a hook of the component, turning a panic into an error.
async fn guarded<F>(fut: F) -> Result<(), BoxError>
where
    F: Future<Output = Result<(), BoxError>>,
{
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(p) => Err(Box::new(Panicked(panic_message(p)))),
    }
}

/// What ended the main loop.
enum End {
    /// The client sent a close frame (already answered by tungstenite).
    ClientClosed(Option<CloseFrame>),
    /// The server closes with this frame, waiting at most the given time
    /// (or the shutdown timeout, at shutdown) for the client's reply.
    ServerCloses(CloseFrame, CloseInitiator, Duration),
    /// The transport is gone; nothing more can be sent.
    Dropped,
}

fn close_for_error(err: &WsError) -> Option<CloseFrame> {
    match err {
        WsError::Capacity(CapacityError::TooManyFrames { max }) => Some(CloseFrame::new(
            CloseCode::MESSAGE_TOO_BIG,
            format!("message split into more than {max} frames (max_frames_per_message)"),
        )),
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            Some(CloseFrame::new(
                CloseCode::MESSAGE_TOO_BIG,
                format!("message of {size} bytes exceeds the limit of {max_size}"),
            ))
        }
        WsError::Capacity(e) => Some(CloseFrame::new(CloseCode::MESSAGE_TOO_BIG, e.to_string())),
        WsError::Utf8(_) => Some(CloseFrame::new(
            CloseCode::INVALID_PAYLOAD,
            "text message is not valid UTF-8",
        )),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(e) => Some(CloseFrame::new(CloseCode::PROTOCOL_ERROR, e.to_string())),
        WsError::AttackAttempt => Some(CloseFrame::new(
            CloseCode::POLICY_VIOLATION,
            "attack attempt detected",
        )),
        _ => None,
    }
}

/// Everything a session owns, in one allocation that is the only thing the
/// connection's task points to: an `async fn` keeps its arguments in its
/// future twice (as given and as bound), so passing them one by one would
/// enlarge every connection's task.
pub(crate) struct Session<'a> {
    pub(crate) ws: Ws,
    pub(crate) conn: Connection,
    pub(crate) outbox: Outbox,
    /// The connection's registration with the hub: given up as soon as
    /// the connection ends (before the close handshake and `on_close`), or
    /// when the session is dropped.
    pub(crate) membership: Option<Membership>,
    pub(crate) component: Arc<dyn Component>,
    pub(crate) cfg: &'a SessionConfig,
    pub(crate) guard: MessageGuard,
    /// Set when the server shuts down, before it closes every connection
    /// with 1001 through [`Connection::close`]: such a close waits up to
    /// the shutdown timeout for the client's answer. (No future shared by
    /// every session is polled per message.)
    pub(crate) shutting_down: &'a AtomicBool,
    /// The re-checking of the connection's sessions (see [`crate::auth`]),
    /// if it has any; dropped, which stops it, before `on_close`.
    pub(crate) watch: Option<Watch>,
    /// The configured aspects (names for the events of a local watch).
    pub(crate) auth: Option<&'a Auth>,
    /// Held until the session has ended, `on_close` included.
    pub(crate) held: Held<'a>,
    /// Keepalive and local session ends; set when the loop starts. Here
    /// rather than in the loop's future: the task, rounded up to 128
    /// bytes, is what every idle connection carries.
    pub(crate) timer: Timer,
    /// The server's memory budget: a message partly received counts
    /// against it while the session waits for the rest.
    pub(crate) budget: &'a MemoryBudget,
    /// Bytes of a message partly received, as last counted.
    pub(crate) read_held: usize,
}

/// The close for a message partly received that the budget has no room
/// for.
fn over_budget(conn: &Connection, e: OverBudget) -> End {
    tracing::warn!(conn = %conn.id(), client = %conn.client_addr(), error = %e, "incoming message refused");
    End::ServerCloses(
        CloseFrame::new(
            CloseCode::MESSAGE_TOO_BIG,
            "server memory budget exhausted (max_buffered_memory_in_mb)",
        ),
        CloseInitiator::Server,
        CLOSE_GRACE,
    )
}

/// Runs one connection from `on_open` to `on_close`.
///
/// Two phases, the second boxed: what only closing needs (the close
/// handshake, `on_close`) takes no room in the task of every open
/// connection.
pub(crate) async fn run(mut s: Box<Session<'_>>) {
    let end = serve(&mut s).await;
    Box::pin(finish(s, end)).await;
}

/// `on_open`, then the session's loop until something ends it.
async fn serve(s: &mut Session<'_>) -> End {
    tracing::debug!(
        conn = %s.conn.id(),
        route = %s.conn.handshake().route,
        client = %s.conn.client_addr(),
        "connection opened"
    );
    match guarded(s.component.on_open(&s.conn)).await {
        Err(e) => {
            tracing::warn!(conn = %s.conn.id(), error = %e, "on_open failed");
            s.component.on_error(&s.conn, e).await;
            End::ServerCloses(
                CloseFrame::new(CloseCode::INTERNAL_ERROR, "internal error"),
                CloseInitiator::Server,
                CLOSE_GRACE,
            )
        }
        Ok(()) => main_loop(s).await,
    }
}

/// Closes the connection as `end` says, then runs `on_close`.
async fn finish(mut s: Box<Session<'_>>, end: End) {
    s.watch = None;
    let _ = s.budget.adjust(std::mem::take(&mut s.read_held), 0);
    s.outbox.mark_closed();
    // It leaves every channel: nothing published reaches it any more, and
    // presence no longer lists it.
    s.membership = None;
    let reason = close(&mut s.ws, &mut s.outbox, end).await;
    // The socket closes now, before `on_close` runs; what is held (the
    // connection's places in the limits, its entry among the open
    // sessions) only after.
    let Session {
        ws,
        conn,
        outbox,
        component,
        guard,
        watch,
        held,
        ..
    } = *s;
    drop((ws, outbox, guard, watch));
    let on_close = AssertUnwindSafe(component.on_close(&conn, reason.clone()));
    if let Err(p) = on_close.catch_unwind().await {
        tracing::error!(conn = %conn.id(), panic = %panic_message(p), "on_close panicked");
    }
    tracing::debug!(
        conn = %conn.id(),
        route = %conn.handshake().route,
        client = %conn.client_addr(),
        code = reason.frame.as_ref().map(|f| f.code.0),
        initiator = ?reason.initiator,
        duration_ms = held.started.elapsed().as_millis() as u64,
        "connection closed"
    );
    drop(held);
}

/// Ends the connection as `end` says: answers still queued, the close
/// handshake, each bounded in time.
async fn close(ws: &mut Ws, outbox: &mut Outbox, end: End) -> CloseReason {
    match end {
        End::ClientClosed(frame) => {
            // tungstenite queued the reply; flush it and let the client close.
            let _ = timeout(CLOSE_GRACE, finish_close(ws)).await;
            CloseReason {
                frame,
                initiator: CloseInitiator::Client,
            }
        }
        End::ServerCloses(frame, initiator, grace) => {
            let deadline = Instant::now() + grace;
            // Answers to messages read before the reason to close (a bad
            // frame, a limit, shutdown) still go out first: RFC 6455 fails
            // the connection from the offending frame on, not before it.
            let mut buf = Vec::new();
            while let Some(Outgoing::Messages(_)) = outbox.recv(&mut buf, WRITE_BATCH).await {
                let left = deadline.saturating_duration_since(Instant::now());
                if !write_batch(ws, &mut buf, left).await {
                    break;
                }
            }
            if timeout_at(deadline, ws.close(Some(convert::close_to_wire(&frame))))
                .await
                .is_ok_and(|r| r.is_ok())
            {
                let _ = timeout_at(deadline, finish_close(ws)).await;
            }
            CloseReason {
                frame: Some(frame),
                initiator,
            }
        }
        End::Dropped => CloseReason {
            frame: None,
            initiator: CloseInitiator::Transport,
        },
    }
}

/// Reads until the peer's close reply or the end of the stream, discarding
/// data, so the close handshake completes.
async fn finish_close<S>(ws: &mut WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = ws.flush().await;
    while let Some(Ok(_)) = ws.next().await {}
}

/// What one turn of the loop found to do. Built without awaiting, so the
/// frame or error it came from (large) is not kept in the task while the
/// step runs.
enum Step {
    /// A data message for the component.
    Message(ws_core::Message),
    /// Nothing to do (a control frame tungstenite answered itself).
    Nothing,
    /// The connection ends.
    End(End),
    /// The outbox handed messages over (they are in the batch buffer).
    Write,
    /// A revalidation event (`None`: nothing left to watch); boxed, as
    /// it is rare and large.
    Auth(Option<Box<AuthEvent>>),
    /// The keepalive timer fired.
    Tick,
}

/// The step a frame read from the client asks for.
fn step_for_frame(frame: Option<Result<TMessage, WsError>>) -> Step {
    match frame {
        None => Step::End(End::Dropped),
        Some(Err(e)) => Step::End(match close_for_error(&e) {
            Some(frame) => End::ServerCloses(frame, CloseInitiator::Server, CLOSE_GRACE),
            None => End::Dropped,
        }),
        Some(Ok(TMessage::Close(frame))) => {
            Step::End(End::ClientClosed(frame.map(convert::close_from_wire)))
        }
        Some(Ok(msg)) => convert::from_wire(msg).map_or(Step::Nothing, Step::Message),
    }
}

/// The session's one timer: keepalive and the end of local sessions (a
/// JWT's `exp`) share it, so a connection has one timer entry and the loop
/// polls one timer, and only when nothing else is ready.
pub(crate) struct Timer {
    /// Keepalive's decisions (plain logic, see [`crate::keepalive`]).
    keepalive: Keepalive,
    /// When the next local session ends.
    end_at: Option<Instant>,
    /// The earlier of the two, as the socket adapter's clock: a message
    /// read at or after it runs the timer's work (a client that never
    /// stops sending still has its session end on time).
    due: Option<std::time::Instant>,
}

impl Timer {
    /// Nothing due (the loop sets the timer when it starts).
    pub(crate) const OFF: Self = Self {
        keepalive: Keepalive::OFF,
        end_at: None,
        due: None,
    };

    fn new(cfg: &SessionConfig, watch: Option<&Watch>) -> Self {
        let now = Instant::now();
        let mut t = Self {
            keepalive: Keepalive::new(cfg.ping_interval, now.into_std()),
            end_at: None,
            due: None,
        };
        t.set_end(watch, now);
        t
    }

    /// Takes the next end of a local watch.
    fn set_end(&mut self, watch: Option<&Watch>, now: Instant) {
        self.end_at = match watch {
            Some(Watch::Local(ends)) => ends.next_end().map(|at| {
                now + at
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
            }),
            _ => None,
        };
        self.due = keepalive::earliest(self.keepalive.due(), self.end_at.map(Instant::into_std));
    }
}

async fn main_loop(s: &mut Session<'_>) -> End {
    s.timer = Timer::new(s.cfg, s.watch.as_ref());
    let sleep = tokio::time::sleep_until(s.timer.due.map_or_else(Instant::now, Instant::from_std));
    tokio::pin!(sleep);
    let mut reads_since_write = 0u32;
    let mut batch: Vec<ws_core::Message> = Vec::new();
    // The stream said it had nothing to read when last asked. Only the
    // socket becoming readable changes that (nothing is read ahead above it
    // then), so until it is, a turn does not ask the stream again: a
    // subscriber woken to write one message asks its socket's readiness,
    // not tungstenite.
    let mut read_pending = false;

    loop {
        // After a burst of reads, write what the component queued before
        // reading on; with nothing queued, keep reading.
        let write_first = reads_since_write >= READ_BUDGET && !s.outbox.is_empty();
        // One turn: the first ready of, in this order, a task's
        // revalidation event (first: a client that never stops sending must
        // not delay its session's end), a frame from the client, queued
        // output, the timer. Hand-written rather than `select!`, which
        // fixes once per turn which branches it polls.
        let step = std::future::poll_fn(|cx| {
            let skip_read = write_first || (read_pending && s.ws.get_ref().poll_read_idle(cx));
            if let Some(watch) = &mut s.watch
                && let Poll::Ready(event) = watch.poll_task_event(cx)
            {
                return Poll::Ready(Step::Auth(event.map(Box::new)));
            }
            if !skip_read {
                match s.ws.poll_next_unpin(cx) {
                    Poll::Ready(frame) => {
                        read_pending = false;
                        reads_since_write += 1;
                        // What was counted of a message now complete is
                        // given back (any growth is counted when the
                        // session next waits).
                        if s.read_held > MemoryBudget::UNCOUNTED {
                            let held = s.ws.buffered_read_bytes();
                            if held < s.read_held {
                                let _ = s.budget.adjust(s.read_held, held);
                                s.read_held = held;
                            }
                        }
                        return Poll::Ready(step_for_frame(frame));
                    }
                    Poll::Pending => {
                        read_pending = true;
                        // A message partly received waits for the rest:
                        // what it holds beyond the allowance counts.
                        let held = s.ws.buffered_read_bytes();
                        if held.max(s.read_held) > MemoryBudget::UNCOUNTED {
                            if let Err(e) = s.budget.adjust(s.read_held, held) {
                                return Poll::Ready(Step::End(over_budget(&s.conn, e)));
                            }
                            s.read_held = held;
                        }
                    }
                }
            }
            if let Poll::Ready(out) = s.outbox.poll_recv(cx, &mut batch, WRITE_BATCH) {
                reads_since_write = 0;
                return Poll::Ready(match out {
                    Some(Outgoing::Messages(_)) => Step::Write,
                    Some(Outgoing::Close(frame)) => Step::End(
                        // The server's own 1001 at shutdown waits as long
                        // as shutdown allows for the client's answer.
                        if frame.code == CloseCode::GOING_AWAY
                            && s.shutting_down.load(Ordering::Acquire)
                        {
                            End::ServerCloses(
                                frame,
                                CloseInitiator::Shutdown,
                                s.cfg.shutdown_timeout,
                            )
                        } else {
                            End::ServerCloses(frame, CloseInitiator::Server, CLOSE_GRACE)
                        },
                    ),
                    None => Step::End(End::Dropped),
                });
            }
            if s.timer.due.is_some() && sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Step::Tick);
            }
            Poll::Pending
        })
        .await;
        match step {
            Step::Message(msg) => {
                s.ws.get_mut().set_quiet(false);
                let read_at = s.ws.get_ref().last_read();
                if let Err(frame) = s.guard.check(read_at) {
                    tracing::debug!(conn = %s.conn.id(), client = %s.conn.client_addr(), reason = %frame.reason, "message rate exceeded");
                    return End::ServerCloses(frame, CloseInitiator::Server, CLOSE_GRACE);
                }
                // Its answers to this connection need no wake-up: the loop
                // looks at the outbox next. A `SyncComponent` handles it
                // right here: no future is allocated.
                let now = s.outbox.serving_now(|| {
                    std::panic::catch_unwind(AssertUnwindSafe(|| {
                        __runtime::on_message_now(&*s.component, &s.conn, msg)
                    }))
                });
                let handled = match now {
                    Ok(Ok(Handled::Done)) => Ok(()),
                    Ok(Ok(Handled::Later(msg))) => {
                        guarded(s.outbox.serving(s.component.on_message(&s.conn, msg))).await
                    }
                    Ok(Err(e)) => Err(e),
                    Err(p) => Err(Box::new(Panicked(panic_message(p))) as BoxError),
                };
                if let Err(e) = handled {
                    let frame = failure_frame(&e, &s.conn);
                    s.component.on_error(&s.conn, e).await;
                    return End::ServerCloses(frame, CloseInitiator::Server, CLOSE_GRACE);
                }
                // The timer's work is due (no clock read: the read's time).
                if s.timer.due.is_some_and(|due| read_at >= due)
                    && let Some(end) = Box::pin(tick(s)).await
                {
                    return end;
                }
            }
            Step::Nothing => {}
            Step::End(end) => return end,
            Step::Write => {
                if !write_batch(&mut s.ws, &mut batch, s.cfg.write_timeout).await {
                    return End::Dropped;
                }
            }
            Step::Auth(event) => {
                if let Some(end) = Box::pin(auth_event(event.map(|e| *e), s)).await {
                    return end;
                }
            }
            Step::Tick => {
                if let Some(end) = Box::pin(tick(s)).await {
                    return end;
                }
                // The tick may have made the connection quiet: the stream is
                // asked once, and gives its read buffer back.
                read_pending = false;
            }
        }
        if let Some(due) = s.timer.due
            && sleep.deadline() != Instant::from_std(due)
        {
            sleep.as_mut().reset(Instant::from_std(due));
        }
    }
}

/// The close frame for a failed `on_message`: 1013 when the component's
/// `send` found the outgoing queue full (the client reads too slowly: its
/// doing, not the component's) or the memory budget exhausted (the
/// connection is closing with 1013 already), 1011 otherwise.
fn failure_frame(e: &BoxError, conn: &Connection) -> CloseFrame {
    match e.downcast_ref::<ws_core::SendError>() {
        Some(ws_core::SendError::Full(_)) => {
            tracing::debug!(conn = %conn.id(), client = %conn.client_addr(), "outgoing queue full: the client reads too slowly");
            CloseFrame::new(CloseCode::TRY_AGAIN_LATER, "client reads too slowly")
        }
        Some(ws_core::SendError::OverBudget(_)) => CloseFrame::new(
            CloseCode::TRY_AGAIN_LATER,
            "server memory budget exhausted (max_buffered_memory_in_mb)",
        ),
        _ => {
            tracing::warn!(conn = %conn.id(), error = %e, "on_message failed");
            CloseFrame::new(CloseCode::INTERNAL_ERROR, "internal error")
        }
    }
}

/// The timer's work: the end of local sessions, then keepalive; `Some`
/// when it ends the connection. Sets the timer's next due time.
async fn tick(s: &mut Session<'_>) -> Option<End> {
    let now = Instant::now();
    if s.timer.end_at.is_some_and(|at| at <= now) {
        let wall = SystemTime::now();
        while let (Some(Watch::Local(ends)), Some(auth)) = (&mut s.watch, s.auth) {
            let Some(event) = ends.ended(auth, wall) else {
                break;
            };
            if ends.is_empty() {
                s.watch = None;
            }
            if let Some(end) = auth_event(Some(event), s).await {
                return Some(end);
            }
        }
    }
    let interval = s.cfg.ping_interval;
    // Read times come from the socket adapter: no clock read per message.
    let last_seen = s.ws.get_ref().last_read();
    match s.timer.keepalive.check(now.into_std(), last_seen, interval) {
        Verdict::Wait => {}
        Verdict::TimedOut => {
            return Some(End::ServerCloses(
                CloseFrame::new(CloseCode::GOING_AWAY, "keepalive timeout"),
                CloseInitiator::Server,
                // The peer has been silent for two intervals: it will
                // hardly answer now.
                Duration::from_millis(100),
            ));
        }
        Verdict::Ping => {
            // Silent for an interval: quiet until its next message, so its
            // read buffers go (the loop asks the stream once after a tick).
            s.ws.get_mut().set_quiet(true);
            let ping = timeout(
                s.cfg.write_timeout,
                s.ws.send(TMessage::Ping(bytes::Bytes::new())),
            );
            if !matches!(ping.await, Ok(Ok(()))) {
                return Some(End::Dropped);
            }
            s.timer
                .keepalive
                .pinged(Instant::now().into_std(), interval);
        }
    }
    s.timer.set_end(s.watch.as_ref(), now);
    None
}

/// Applies a revalidation event; `Some` when it ends the connection.
async fn auth_event(event: Option<AuthEvent>, s: &mut Session<'_>) -> Option<End> {
    let (conn, component) = (&s.conn, &*s.component);
    match event {
        // Every session was downgraded: nothing left to watch.
        None => s.watch = None,
        Some(AuthEvent::Changed(name, user)) => {
            tracing::debug!(conn = %conn.id(), aspect = %name, "session changed");
            set_aspect(conn, &name, user);
            aspect_changed(component, conn, &name).await;
        }
        Some(AuthEvent::Downgrade(name)) => {
            tracing::debug!(conn = %conn.id(), aspect = %name, "session ended: aspect now anonymous");
            set_aspect(conn, &name, UserAspect::anonymous());
            aspect_changed(component, conn, &name).await;
        }
        Some(AuthEvent::Close(name, frame)) => {
            tracing::debug!(conn = %conn.id(), aspect = %name, code = frame.code.0, reason = %frame.reason, "session over: closing");
            return Some(End::ServerCloses(
                frame,
                CloseInitiator::Server,
                CLOSE_GRACE,
            ));
        }
    }
    None
}

/// Replaces the aspect `name` of the connection, then tells the hub (its
/// user may be another one now).
fn set_aspect(conn: &Connection, name: &str, aspect: UserAspect) {
    __runtime::set_aspect(conn, name, aspect);
    __runtime::backend(conn.hub()).refresh(conn);
}

/// Tells the component that aspect `name` changed; a panic is logged.
async fn aspect_changed(component: &dyn Component, conn: &Connection, name: &str) {
    let hook = AssertUnwindSafe(component.on_aspect_change(conn, name));
    if let Err(p) = hook.catch_unwind().await {
        tracing::error!(conn = %conn.id(), aspect = %name, panic = %panic_message(p), "on_aspect_change panicked");
    }
}

/// Writes every message in `buf` and flushes once. `false` when the client
/// is gone or does not read within `limit`.
///
/// The write is tried first without a timer: when the socket takes it all
/// (the usual case) no clock is read and no timer is armed.
async fn write_batch(ws: &mut Ws, buf: &mut Vec<ws_core::Message>, limit: Duration) -> bool {
    // Taken from the back from here on.
    buf.reverse();
    let first = std::future::poll_fn(|cx| Poll::Ready(poll_write(ws, buf, cx))).await;
    let ok = match first {
        Poll::Ready(r) => r.is_ok(),
        // The client reads slowly: only now is the wait bounded.
        Poll::Pending => {
            let rest = std::future::poll_fn(|cx| poll_write(ws, buf, cx));
            matches!(Box::pin(timeout(limit, rest)).await, Ok(Ok(())))
        }
    };
    buf.clear();
    if buf.capacity() > KEEP_BATCH {
        buf.shrink_to(KEEP_BATCH);
    }
    ok
}

/// Hands the messages of `buf` (last first) to tungstenite, then flushes.
/// A poll function rather than an `async` block: nothing of it stays in
/// the session's task between writes.
fn poll_write(
    ws: &mut Ws,
    buf: &mut Vec<ws_core::Message>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<(), WsError>> {
    use futures_util::Sink as _;
    while !buf.is_empty() {
        std::task::ready!(Pin::new(&mut *ws).poll_ready(cx))?;
        if let Some(msg) = buf.pop() {
            Pin::new(&mut *ws).start_send(convert::to_wire(msg))?;
        }
    }
    Pin::new(&mut *ws).poll_flush(cx)
}
