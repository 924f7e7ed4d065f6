//! The two background tasks of a [`RedisHub`](crate::RedisHub): the writer
//! (publications, presence, heartbeat, on one multiplexed connection) and
//! the subscriber (one pub/sub connection, messages handled in order). Each
//! reconnects on its own with capped exponential backoff.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use ws_core::hub::{HubBackend as _, Target, validate_channel};
use ws_core::{Bytes, ConnectionId, Message, Utf8Bytes};

use crate::envelope::{self, EnvelopeArg, Route, Seen, SeqTracker};
use crate::hub::{Charge, Counters, Outbound, Shared};
use crate::presence;

/// Publications taken from the queue at once.
const BATCH: usize = 256;
/// Payload bytes per pipeline; a batch is split above it.
const PIPELINE_BYTES: usize = 1 << 20;
/// First wait before reconnecting.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// How far back publications Redis took are sent again after the
/// connection broke (see [`Recent`]).
const RESEND_WINDOW: Duration = Duration::from_secs(2);
/// Most envelope bytes kept for sending again.
const RESEND_BYTES: usize = 16 << 20;

/// Publications Redis took in the last [`RESEND_WINDOW`] (at most
/// `queue_size` of them and [`RESEND_BYTES`] of envelopes), with their
/// sequence numbers. The payloads are shared with the local deliveries
/// (clones of a `Bytes`); keeping them makes them live up to the window
/// longer.
///
/// Redis answering a `PUBLISH` means it has queued the message for every
/// subscribed server, not that it has written it to their sockets: Redis
/// answers the publisher first, and a Redis that dies just then (or that
/// still holds a backlog for a slow subscriber) takes those messages with
/// it. So after a lost connection the writer sends these again, with
/// their own sequence numbers, once the servers have subscribed again;
/// a server that got one already skips it as a repeat.
pub(crate) struct Recent {
    items: VecDeque<Written>,
    cap: usize,
    /// Envelope bytes of `items`.
    bytes: usize,
}

struct Written {
    seq: u64,
    at: Instant,
    route: Route,
    msg: Message,
    /// Keeps its bytes counted in the memory budget while kept.
    _charge: Charge,
}

impl Written {
    fn len(&self) -> usize {
        envelope::encoded_len(&self.route, &self.msg)
    }
}

impl Recent {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            items: VecDeque::new(),
            cap,
            bytes: 0,
        }
    }

    fn keep(&mut self, seq: u64, at: Instant, o: Outbound) {
        let w = Written {
            seq,
            at,
            route: o.route,
            msg: o.msg,
            _charge: o.charge,
        };
        let len = w.len();
        self.forget_before(at.checked_sub(RESEND_WINDOW));
        while !self.items.is_empty()
            && (self.items.len() >= self.cap || self.bytes + len > RESEND_BYTES)
        {
            self.pop();
        }
        self.bytes += len;
        self.items.push_back(w);
    }

    /// Drops what was written before `oldest`.
    fn forget_before(&mut self, oldest: Option<Instant>) {
        let Some(oldest) = oldest else { return };
        while self.items.front().is_some_and(|w| w.at < oldest) {
            self.pop();
        }
    }

    fn pop(&mut self) {
        if let Some(w) = self.items.pop_front() {
            self.bytes -= w.len();
        }
    }
}

/// Why a Redis operation failed.
#[derive(Debug)]
pub(crate) enum Failure {
    Redis(redis::RedisError),
    Timeout,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis(e) => fmt::Display::fmt(e, f),
            Self::Timeout => f.write_str("no answer within command_timeout"),
        }
    }
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Self {
        Self::Redis(e)
    }
}

async fn timed<T>(
    limit: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(Failure::Redis),
        Err(_) => Err(Failure::Timeout),
    }
}

/// Opens the writer's connection.
pub(crate) async fn open_connection(shared: &Shared) -> Result<MultiplexedConnection, Failure> {
    let t = shared.config.command_timeout;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(t))
        .set_response_timeout(Some(t));
    timed(
        t * 2,
        shared
            .client
            .get_multiplexed_async_connection_with_config(&config),
    )
    .await
}

/// Opens the subscriber's connection and subscribes to the bus and both
/// plain patterns.
pub(crate) async fn open_subscription(
    shared: &Shared,
) -> Result<(PubSubSink, PubSubStream), Failure> {
    let t = shared.config.command_timeout;
    let k = &shared.keys;
    let pubsub = timed(t, shared.client.get_async_pubsub()).await?;
    let (mut sink, stream) = pubsub.split();
    timed(t, sink.subscribe(&k.bus)).await?;
    timed(t, sink.psubscribe(&[k.channel_pattern(), k.user_pattern()])).await?;
    Ok((sink, stream))
}

/// Makes this server and its members known (after connecting); returns how
/// many servers are alive.
pub(crate) async fn announce(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
) -> Result<usize, Failure> {
    let servers = heartbeat(shared, conn).await?;
    flush_presence(shared, conn).await?;
    Ok(servers)
}

/// After a reconnection: waits until as many servers listen on the bus as
/// were alive before (they reconnect on their own schedules, and what is
/// published before a server subscribes never reaches it), for at most
/// twice `reconnect_max_delay`. Publications are refused meanwhile.
///
/// The heartbeat goes on while it waits: the wait can be longer than
/// `presence_expiry`, and this server's keys, just announced, must not
/// expire meanwhile (the others would forget it and drop its members from
/// their presence lists until its next heartbeat).
async fn settle(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    expected: usize,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Failure> {
    let grace = shared.config.reconnect_max_delay * 2;
    let start = Instant::now();
    let mut beat = Instant::now();
    loop {
        if beat.elapsed() >= shared.config.presence_heartbeat {
            heartbeat(shared, conn).await?;
            beat = Instant::now();
        }
        let (_, listening): (String, usize) = timed(
            shared.config.command_timeout,
            redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&shared.keys.bus)
                .query_async(conn),
        )
        .await?;
        if listening >= expected {
            return Ok(());
        }
        if start.elapsed() >= grace {
            tracing::warn!(
                server = %shared.id,
                listening,
                expected,
                "broker: not every server subscribed again in time; forwarding anyway"
            );
            return Ok(());
        }
        tokio::select! {
            () = stopped(stop) => return Ok(()),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

/// Returns how many servers are alive, this one included.
async fn heartbeat(shared: &Shared, conn: &mut MultiplexedConnection) -> Result<usize, Failure> {
    let channels = shared.index().channels();
    let beat = timed(
        shared.config.command_timeout,
        presence::heartbeat(
            conn,
            &shared.keys,
            &shared.id,
            shared.config.presence_expiry,
            &channels,
        ),
    )
    .await?;
    if !beat.gone.is_empty() {
        tracing::debug!(
            channels = beat.gone.len(),
            "broker: presence entries expired; rewriting them"
        );
        shared.index().mark_full(&beat.gone);
        shared.presence_dirty.notify_one();
    }
    Ok(beat.servers)
}

async fn flush_presence(shared: &Shared, conn: &mut MultiplexedConnection) -> Result<(), Failure> {
    let work = shared.index().take_work();
    if work.is_empty() {
        return Ok(());
    }
    let r = timed(
        shared.config.command_timeout,
        presence::write(
            conn,
            &shared.keys,
            &shared.id,
            shared.config.presence_expiry,
            &work,
        ),
    )
    .await;
    if r.is_err() {
        shared.index().requeue(&work);
    }
    r
}

/// Capped exponential backoff with jitter (half the delay is random, so
/// servers that lost Redis together do not come back in lockstep).
struct Backoff {
    next: Duration,
    max: Duration,
    attempts: u32,
    since: Option<Instant>,
    last_warn: Option<Instant>,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Self {
            next: FIRST_DELAY,
            max,
            attempts: 0,
            since: None,
            last_warn: None,
        }
    }

    fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = d / 2;
        let jitter = getrandom::u64().unwrap_or(0) % (half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter)
    }

    /// Whether this failure deserves a warning (the first, then one every
    /// 30 s), else a debug line.
    fn failed(&mut self) -> bool {
        self.attempts += 1;
        let now = Instant::now();
        self.since.get_or_insert(now);
        let warn = self
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(30));
        if warn {
            self.last_warn = Some(now);
        }
        warn
    }

    /// Back to the first delay; returns how long the outage lasted.
    fn reset(&mut self) -> Option<(Duration, u32)> {
        self.next = FIRST_DELAY;
        self.last_warn = None;
        let attempts = std::mem::take(&mut self.attempts);
        self.since.take().map(|t| (t.elapsed(), attempts))
    }
}

/// Resolves when `shutdown` was asked for (or the hub was dropped).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Retries `open` with backoff until it succeeds; `None` when stopped.
async fn reconnect<T, F, Fut>(
    shared: &Shared,
    what: &str,
    backoff: &mut Backoff,
    stop: &mut watch::Receiver<bool>,
    mut open: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    loop {
        let wait = backoff.delay();
        tokio::select! {
            () = stopped(stop) => return None,
            () = tokio::time::sleep(wait) => {}
        }
        let r = tokio::select! {
            () = stopped(stop) => return None,
            r = open() => r,
        };
        match r {
            Ok(v) => {
                if let Some((down, attempts)) = backoff.reset() {
                    tracing::info!(
                        server = %shared.id,
                        redis = %shared.url_shown,
                        after = %humantime::format_duration(Duration::from_millis(down.as_millis() as u64)),
                        attempts,
                        "broker: {what} reconnected"
                    );
                }
                return Some(v);
            }
            Err(e) => {
                if backoff.failed() {
                    tracing::warn!(server = %shared.id, redis = %shared.url_shown, error = %e, "broker: {what} cannot reach Redis; retrying");
                } else {
                    tracing::debug!(error = %e, "broker: {what} reconnection failed");
                }
            }
        }
    }
}

/// Drops what waits in the queue, counted and logged as lost. Each one
/// still takes a sequence number, so receivers see the gap too.
fn drop_queued(shared: &Shared, rx: &mut mpsc::Receiver<Outbound>, seq: &mut u64, why: &str) {
    let mut n = 0u64;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    *seq += n;
    if n > 0 {
        Counters::add(&shared.counters.lost, n);
        tracing::warn!(server = %shared.id, lost = n, "broker: publications not forwarded: {why}");
    }
}

/// Writes a batch of publications in pipelines, in order; those Redis took
/// go into `recent`.
async fn forward(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    batch: &mut Vec<Outbound>,
    seq: &mut u64,
    recent: &mut Recent,
) -> Result<(), Failure> {
    let first = *seq + 1;
    let mut start = 0;
    while start < batch.len() {
        let mut pipe = redis::pipe();
        let mut bytes = 0;
        let mut end = start;
        while end < batch.len() && (end == start || bytes < PIPELINE_BYTES) {
            let o = &batch[end];
            *seq += 1;
            bytes += envelope::encoded_len(&o.route, &o.msg);
            pipe.cmd("PUBLISH")
                .arg(&shared.keys.bus)
                .arg(EnvelopeArg {
                    origin: &shared.id,
                    seq: *seq,
                    route: &o.route,
                    msg: &o.msg,
                })
                .ignore();
            end += 1;
        }
        let r = timed(shared.config.command_timeout, pipe.query_async::<()>(conn)).await;
        if let Err(e) = r {
            // Unknown whether Redis took them: they count as lost (a
            // receiver that did get one sees no gap; one that did not, does).
            // The rest of the batch is numbered too, so receivers see it
            // missing.
            *seq += (batch.len() - end) as u64;
            let n = (batch.len() - start) as u64;
            Counters::add(&shared.counters.lost, n);
            tracing::warn!(server = %shared.id, lost = n, error = %e, "broker: publications not forwarded: the Redis connection broke");
            let why = format!(
                "Redis at {} did not confirm the publication: {e}",
                shared.url_shown
            );
            for o in &mut batch[start..] {
                if let Some(ack) = o.ack.take() {
                    let _ = ack.send(Err(why.clone()));
                }
            }
            batch.truncate(start);
            keep_written(recent, batch, first);
            return Err(e);
        }
        Counters::add(&shared.counters.forwarded, (end - start) as u64);
        // Redis answered every PUBLISH of the pipeline: it has handed them
        // to the subscribed servers' connections.
        for o in &mut batch[start..end] {
            if let Some(ack) = o.ack.take() {
                let _ = ack.send(Ok(()));
            }
        }
        start = end;
    }
    keep_written(recent, batch, first);
    Ok(())
}

/// Moves the publications of `batch` (numbered from `first`) into `recent`.
fn keep_written(recent: &mut Recent, batch: &mut Vec<Outbound>, first: u64) {
    let now = Instant::now();
    for (seq, o) in (first..).zip(batch.drain(..)) {
        recent.keep(seq, now, o);
    }
}

/// After a lost connection: sends again what Redis took within
/// [`RESEND_WINDOW`] before the loss was noticed at `broke`, in order, with
/// the original sequence numbers; returns how many.
async fn resend(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    recent: &mut Recent,
    broke: Instant,
) -> Result<usize, Failure> {
    recent.forget_before(broke.checked_sub(RESEND_WINDOW));
    let mut start = 0;
    let items = recent.items.make_contiguous();
    while start < items.len() {
        let mut pipe = redis::pipe();
        let mut bytes = 0;
        let mut end = start;
        while end < items.len() && (end == start || bytes < PIPELINE_BYTES) {
            let w = &items[end];
            bytes += envelope::encoded_len(&w.route, &w.msg);
            pipe.cmd("PUBLISH")
                .arg(&shared.keys.bus)
                .arg(EnvelopeArg {
                    origin: &shared.id,
                    seq: w.seq,
                    route: &w.route,
                    msg: &w.msg,
                })
                .ignore();
            end += 1;
        }
        timed(shared.config.command_timeout, pipe.query_async::<()>(conn)).await?;
        start = end;
    }
    Ok(items.len())
}

/// The writer: owns the publishing connection; publications, presence
/// writes and heartbeats go through it in order.
pub(crate) async fn run_writer(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Outbound>,
    first: MultiplexedConnection,
    mut servers: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut seq = 0u64;
    let mut next = Some(first);
    let mut backoff = Backoff::new(shared.config.reconnect_max_delay);
    let mut batch = Vec::with_capacity(BATCH);
    let mut recent = Recent::new(shared.config.queue_size);
    // When the last connection broke (the reconnecting branch runs only
    // after one did).
    let mut broke = Instant::now();
    loop {
        let mut conn = match next.take() {
            Some(c) => c,
            None => {
                let opened = reconnect(&shared, "publisher", &mut backoff, &mut stop, || {
                    open_connection(&shared)
                })
                .await;
                let Some(mut c) = opened else {
                    drop_queued(
                        &shared,
                        &mut rx,
                        &mut seq,
                        "the broker shut down while Redis was away",
                    );
                    return;
                };
                drop_queued(
                    &shared,
                    &mut rx,
                    &mut seq,
                    "accepted just before the Redis connection broke",
                );
                shared.index().mark_all_full();
                let ready = match announce(&shared, &mut c).await {
                    Ok(_) => settle(&shared, &mut c, servers, &mut stop).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = ready {
                    tracing::warn!(server = %shared.id, error = %e, "broker: announcing this server after reconnecting failed");
                    continue;
                }
                match resend(&shared, &mut c, &mut recent, broke).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(server = %shared.id, resent = n, "broker: sent again what Redis took just before the connection broke (servers that got it skip it)");
                    }
                    Err(e) => {
                        tracing::warn!(server = %shared.id, error = %e, "broker: sending recent publications again after reconnecting failed");
                        continue;
                    }
                }
                shared.set_conn(Some(c.clone()));
                c
            }
        };
        let r = connected(
            &shared,
            &mut conn,
            &mut rx,
            &mut stop,
            &mut batch,
            &mut seq,
            &mut servers,
            &mut recent,
        )
        .await;
        shared.set_conn(None);
        match r {
            Ok(()) => {
                finish(
                    &shared,
                    &mut conn,
                    &mut rx,
                    &mut batch,
                    &mut seq,
                    &mut recent,
                )
                .await;
                return;
            }
            Err(e) => {
                broke = Instant::now();
                tracing::warn!(server = %shared.id, redis = %shared.url_shown, error = %e, "broker: lost the publishing connection to Redis; publications are refused until it is back");
                drop_queued(
                    &shared,
                    &mut rx,
                    &mut seq,
                    "the Redis connection broke before they were written",
                );
                backoff.failed();
            }
        }
    }
}

/// Serves one connection until it fails (`Err`) or shutdown (`Ok`).
#[allow(clippy::too_many_arguments)]
async fn connected(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    rx: &mut mpsc::Receiver<Outbound>,
    stop: &mut watch::Receiver<bool>,
    batch: &mut Vec<Outbound>,
    seq: &mut u64,
    servers: &mut usize,
    recent: &mut Recent,
) -> Result<(), Failure> {
    let period = shared.config.presence_heartbeat;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stopped(stop) => return Ok(()),
            _ = tick.tick() => {
                // Nothing written lately stays kept past the window.
                recent.forget_before(Instant::now().checked_sub(RESEND_WINDOW));
                *servers = heartbeat(shared, conn).await?;
            }
            () = shared.check.notified() => {
                timed(shared.config.command_timeout, redis::cmd("PING").query_async::<()>(conn)).await?;
            }
            () = shared.presence_dirty.notified() => flush_presence(shared, conn).await?,
            n = rx.recv_many(batch, BATCH) => {
                if n == 0 {
                    return Ok(());
                }
                forward(shared, conn, batch, seq, recent).await?;
            }
        }
    }
}

/// Clean shutdown: writes what was accepted, then removes this server's keys.
async fn finish(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    rx: &mut mpsc::Receiver<Outbound>,
    batch: &mut Vec<Outbound>,
    seq: &mut u64,
    recent: &mut Recent,
) {
    while let Ok(o) = rx.try_recv() {
        batch.push(o);
    }
    if !batch.is_empty() {
        let _ = forward(shared, conn, batch, seq, recent).await;
    }
    let channels = shared.index().all_channels();
    let r = timed(
        shared.config.command_timeout,
        presence::remove_all(conn, &shared.keys, &shared.id, &channels),
    )
    .await;
    if let Err(e) = r {
        tracing::warn!(server = %shared.id, error = %e, "broker: could not remove presence entries at shutdown; they expire");
    }
}

/// The subscriber: one pub/sub connection, messages handled one by one in
/// the order Redis sends them.
pub(crate) async fn run_subscriber(
    shared: Arc<Shared>,
    first: (PubSubSink, PubSubStream),
    mut stop: watch::Receiver<bool>,
) {
    let mut seqs = SeqTracker::default();
    let mut next = Some(first);
    let mut backoff = Backoff::new(shared.config.reconnect_max_delay);
    loop {
        let (mut sink, mut stream) = match next.take() {
            Some(p) => p,
            None => {
                let opened = reconnect(&shared, "subscriber", &mut backoff, &mut stop, || {
                    open_subscription(&shared)
                })
                .await;
                let Some(p) = opened else { return };
                p
            }
        };
        shared.subscribed.store(true, Ordering::Release);
        let period = shared.config.presence_heartbeat;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let why = loop {
            tokio::select! {
                biased;
                () = stopped(&mut stop) => return,
                m = stream.next() => match m {
                    Some(m) => receive(&shared, &mut seqs, &m),
                    None => break "connection closed".to_owned(),
                },
                _ = ping.tick() => {
                    let r = timed(shared.config.command_timeout, sink.ping::<redis::Value>()).await;
                    if let Err(e) = r {
                        break e.to_string();
                    }
                }
            }
        };
        shared.subscribed.store(false, Ordering::Release);
        shared.check.notify_one();
        backoff.failed();
        tracing::warn!(server = %shared.id, redis = %shared.url_shown, reason = %why, "broker: lost the subscription to Redis; other servers' publications do not arrive until it is back");
    }
}

/// Handles one pub/sub message.
fn receive(shared: &Shared, seqs: &mut SeqTracker, m: &redis::Msg) {
    let channel = m.get_channel_name();
    let k = &shared.keys;
    // One copy out of the client's buffer; fan-out shares it.
    let payload = Bytes::copy_from_slice(m.get_payload_bytes());
    let (target, msg) = if channel == k.bus {
        let env = match envelope::decode(payload) {
            Ok(env) => env,
            Err(e) => return malformed(shared, channel, &e),
        };
        if env.origin == shared.id {
            // Ours: delivered locally when it was published.
            return;
        }
        match seqs.observe(env.origin, env.seq) {
            Seen::Repeat => return,
            Seen::Deliver { missed: 0 } => {}
            Seen::Deliver { missed } => {
                Counters::add(&shared.counters.missed, missed);
                tracing::warn!(server = %shared.id, from = %env.origin, missed, "broker: publications of another server never arrived (a connection to Redis was down)");
            }
        }
        let target = match env.route {
            Route::Channel(c) => Target::Channel(c),
            Route::User(u) => Target::User(u),
            Route::Connection(addr) => {
                if addr.server != shared.id {
                    return;
                }
                Target::Connection(ConnectionId::from_raw(addr.id))
            }
        };
        (target, env.msg)
    } else if let Some(name) = channel.strip_prefix(&k.channel_prefix) {
        if let Err(e) = validate_channel(name) {
            return malformed(shared, channel, &e);
        }
        (Target::Channel(name.to_owned()), plain(payload))
    } else if let Some(user) = channel.strip_prefix(&k.user_prefix) {
        (Target::User(user.to_owned()), plain(payload))
    } else {
        return;
    };
    Counters::add(&shared.counters.received, 1);
    // Errors are impossible here (the channel name was checked).
    let _ = shared.local.publish(&target, msg);
}

/// A plain `PUBLISH` payload: text when it is UTF-8, else binary.
fn plain(payload: Bytes) -> Message {
    match Utf8Bytes::try_from(payload.clone()) {
        Ok(t) => Message::Text(t),
        Err(_) => Message::Binary(payload),
    }
}

fn malformed(shared: &Shared, channel: &str, e: &dyn std::error::Error) {
    Counters::add(&shared.counters.malformed, 1);
    tracing::debug!(channel, error = %e, "broker: ignoring an unreadable message");
}

#[cfg(test)]
mod tests {
    use ws_core::budget::MemoryBudget;

    use super::*;

    fn outbound(budget: &MemoryBudget, payload: Bytes) -> Outbound {
        let route = Route::Channel("c".into());
        let msg = Message::Binary(payload);
        let charge = Charge::new(budget, envelope::encoded_len(&route, &msg)).unwrap();
        Outbound {
            route,
            msg,
            ack: None,
            charge,
        }
    }

    fn seqs(r: &Recent) -> Vec<u64> {
        r.items.iter().map(|w| w.seq).collect()
    }

    #[test]
    fn recent_publications_are_bounded_by_count_bytes_and_age() {
        let t0 = Instant::now();
        let budget = MemoryBudget::new(usize::MAX);
        let mut r = Recent::new(3);
        for seq in 1..=5 {
            r.keep(seq, t0, outbound(&budget, Bytes::from_static(b"x")));
        }
        assert_eq!(seqs(&r), [3, 4, 5], "at most `queue_size`");
        assert_eq!(budget.used(), r.bytes, "what is kept is what is counted");
        // Older than the window: gone with the next one.
        r.keep(
            6,
            t0 + RESEND_WINDOW + Duration::from_millis(1),
            outbound(&budget, Bytes::new()),
        );
        assert_eq!(seqs(&r), [6]);
        r.forget_before(Some(t0 + RESEND_WINDOW * 2));
        assert!(r.items.is_empty());
        assert_eq!(r.bytes, 0);
        assert_eq!(
            budget.used(),
            0,
            "forgotten publications are no longer counted"
        );
        // At most RESEND_BYTES of envelopes, but always the last one.
        let mut r = Recent::new(100);
        let big = Bytes::from(vec![0u8; RESEND_BYTES / 2]);
        for seq in 1..=3 {
            r.keep(seq, t0, outbound(&budget, big.clone()));
        }
        assert_eq!(seqs(&r), [3]);
        assert!(r.bytes <= RESEND_BYTES);
        assert_eq!(budget.used(), r.bytes);
    }
}
