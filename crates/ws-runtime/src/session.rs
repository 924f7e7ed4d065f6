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
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as TMessage};
use tokio_util::sync::CancellationToken;
use ws_core::{
    BoxError, CloseCode, CloseFrame, CloseInitiator, CloseReason, Component, Connection, Outbox,
    Outgoing, UserAspect,
};
use ws_ratelimit::{AddressMessageRate, MessageRate};

use crate::auth::{AuthEvent, Watch};
use crate::convert;

/// Messages read in a row before queued output is written regardless.
const READ_BUDGET: u32 = 64;
/// Messages written per batch (one flush each).
const WRITE_BATCH: usize = 128;
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

    /// Admits one data message, or gives the 1008 close that ends the
    /// connection.
    #[inline]
    fn check(&mut self) -> Result<(), CloseFrame> {
        if !self.active {
            return Ok(());
        }
        let now = std::time::Instant::now();
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

/// What ends or changes a session from outside its socket.
pub(crate) struct Signals {
    /// Cancelled at shutdown: close with 1001.
    pub(crate) shutdown: CancellationToken,
    /// The re-checking of the connection's sessions (see [`crate::auth`]),
    /// if it has any; dropped, which stops it, before `on_close`.
    pub(crate) watch: Option<Watch>,
}

/// Runs one connection from `on_open` to `on_close`.
pub(crate) async fn run<S>(
    mut ws: WebSocketStream<S>,
    conn: Connection,
    mut outbox: Outbox,
    component: Arc<dyn Component>,
    cfg: SessionConfig,
    mut guard: MessageGuard,
    mut signals: Signals,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let end = match guarded(component.on_open(&conn)).await {
        Err(e) => {
            tracing::warn!(conn = %conn.id(), error = %e, "on_open failed");
            component.on_error(&conn, e).await;
            End::ServerCloses(
                CloseFrame::new(CloseCode::INTERNAL_ERROR, "internal error"),
                CloseInitiator::Server,
                CLOSE_GRACE,
            )
        }
        Ok(()) => {
            main_loop(
                &mut ws,
                &conn,
                &mut outbox,
                &*component,
                &cfg,
                &mut guard,
                &mut signals,
            )
            .await
        }
    };
    drop(signals.watch.take());
    outbox.mark_closed();
    let reason = match end {
        End::ClientClosed(frame) => {
            // tungstenite queued the reply; flush it and let the client close.
            let _ = timeout(CLOSE_GRACE, finish_close(&mut ws)).await;
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
                if !write_batch(&mut ws, &mut buf, left).await {
                    break;
                }
            }
            if timeout_at(deadline, ws.close(Some(convert::close_to_wire(&frame))))
                .await
                .is_ok_and(|r| r.is_ok())
            {
                let _ = timeout_at(deadline, finish_close(&mut ws)).await;
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
    };
    drop(ws);
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
        "connection closed"
    );
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

async fn main_loop<S>(
    ws: &mut WebSocketStream<S>,
    conn: &Connection,
    outbox: &mut Outbox,
    component: &dyn Component,
    cfg: &SessionConfig,
    guard: &mut MessageGuard,
    signals: &mut Signals,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let keepalive = !cfg.ping_interval.is_zero();
    let interval = if keepalive {
        cfg.ping_interval
    } else {
        Duration::from_secs(3600)
    };
    let mut last_seen = Instant::now();
    let mut pinged = false;
    let ping_timer = tokio::time::sleep(interval);
    tokio::pin!(ping_timer);
    // Built once: a fresh `cancelled()` future per turn would lock the
    // token's wait list, which every session shares, on every message.
    let mut reads_since_write = 0u32;
    let mut buf: Vec<ws_core::Message> = Vec::new();
    let Signals { shutdown, watch } = signals;
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);

    loop {
        // After a burst of reads, write what the component queued before
        // reading on; with nothing queued, keep reading.
        let write_first = reads_since_write >= READ_BUDGET && !outbox.is_empty();
        tokio::select! {
            biased;
            () = &mut cancelled => {
                return End::ServerCloses(
                    CloseFrame::new(CloseCode::GOING_AWAY, "server shutting down"),
                    CloseInitiator::Shutdown,
                    cfg.shutdown_timeout,
                );
            }
            // Only a connection with sessions to re-check polls this.
            event = next_auth_event(watch), if watch.is_some() => match event {
                // Every session was downgraded: nothing left to watch.
                None => *watch = None,
                Some(AuthEvent::Changed(name, user)) => {
                    tracing::debug!(conn = %conn.id(), aspect = %name, "session changed");
                    conn.set_aspect(&name, user);
                    aspect_changed(component, conn, &name).await;
                }
                Some(AuthEvent::Downgrade(name)) => {
                    tracing::debug!(conn = %conn.id(), aspect = %name, "session ended: aspect now anonymous");
                    conn.set_aspect(&name, UserAspect::anonymous());
                    aspect_changed(component, conn, &name).await;
                }
                Some(AuthEvent::Close(name, frame)) => {
                    tracing::debug!(conn = %conn.id(), aspect = %name, code = frame.code.0, reason = %frame.reason, "session over: closing");
                    return End::ServerCloses(frame, CloseInitiator::Server, CLOSE_GRACE);
                }
            },
            frame = ws.next(), if !write_first => {
                reads_since_write += 1;
                last_seen = Instant::now();
                pinged = false;
                match frame {
                    None => return End::Dropped,
                    Some(Err(e)) => {
                        return match close_for_error(&e) {
                            Some(frame) => End::ServerCloses(frame, CloseInitiator::Server, CLOSE_GRACE),
                            None => End::Dropped,
                        };
                    }
                    Some(Ok(TMessage::Close(frame))) => {
                        return End::ClientClosed(frame.map(convert::close_from_wire));
                    }
                    Some(Ok(msg)) => {
                        let Some(msg) = convert::from_wire(msg) else { continue };
                        if let Err(frame) = guard.check() {
                            tracing::debug!(conn = %conn.id(), client = %conn.client_addr(), reason = %frame.reason, "message rate exceeded");
                            return End::ServerCloses(frame, CloseInitiator::Server, CLOSE_GRACE);
                        }
                        if let Err(e) = guarded(component.on_message(conn, msg)).await {
                            tracing::warn!(conn = %conn.id(), error = %e, "on_message failed");
                            component.on_error(conn, e).await;
                            return End::ServerCloses(
                                CloseFrame::new(CloseCode::INTERNAL_ERROR, "internal error"),
                                CloseInitiator::Server,
                                CLOSE_GRACE,
                            );
                        }
                    }
                }
            }
            out = outbox.recv(&mut buf, WRITE_BATCH) => {
                reads_since_write = 0;
                match out {
                    Some(Outgoing::Messages(_)) => {
                        if !write_batch(ws, &mut buf, cfg.write_timeout).await {
                            return End::Dropped;
                        }
                    }
                    Some(Outgoing::Close(frame)) => {
                        return End::ServerCloses(frame, CloseInitiator::Server, CLOSE_GRACE);
                    }
                    None => return End::Dropped,
                }
            }
            () = &mut ping_timer, if keepalive => {
                // Nothing read since the last ping either: the peer is gone.
                if pinged && last_seen.elapsed() >= interval {
                    return End::ServerCloses(
                        CloseFrame::new(CloseCode::GOING_AWAY, "keepalive timeout"),
                        CloseInitiator::Server,
                        // The peer has been silent for two intervals: it will
                        // hardly answer now.
                        Duration::from_millis(100),
                    );
                }
                let since = last_seen.elapsed();
                if since >= interval {
                    pinged = true;
                    let ping = ws.send(TMessage::Ping(bytes::Bytes::new()));
                    if !matches!(timeout(cfg.write_timeout, ping).await, Ok(Ok(()))) {
                        return End::Dropped;
                    }
                    ping_timer.as_mut().reset(Instant::now() + interval);
                } else {
                    ping_timer.as_mut().reset(last_seen + interval);
                }
            }
        }
    }
}

/// The next event of `watch`; pending forever without one.
async fn next_auth_event(watch: &mut Option<Watch>) -> Option<AuthEvent> {
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
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
async fn write_batch<S>(
    ws: &mut WebSocketStream<S>,
    buf: &mut Vec<ws_core::Message>,
    limit: Duration,
) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let write = async {
        for msg in buf.drain(..) {
            ws.feed(convert::to_wire(msg)).await?;
        }
        ws.flush().await
    };
    let ok = matches!(timeout(limit, write).await, Ok(Ok(())));
    buf.clear();
    ok
}
