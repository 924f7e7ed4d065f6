//! Broadcast fan-out, against a server-side broadcasting route.
//!
//! The contract a server implements for this scenario (ws-provider's
//! `/bench/fanout` component, added separately): **every data message that
//! any connection on the route sends is sent, unchanged, to every
//! connection on the route, the sender included.** Nothing else is needed.
//!
//! The client opens `subscribers` connections plus one publisher, which
//! keeps up to `window` broadcasts in flight (a new one goes out when every
//! copy of the one `window` back has arrived). Each payload starts with the
//! send time (nanoseconds on this process's monotonic clock, little
//! endian), so every copy's delivery latency goes into one histogram.
//! Reported: deliveries per second, p50/p99/p99.9 delivery latency and
//! server CPU per delivery. A route that the server refuses (404 where it
//! does not exist) is reported as `{"available": false, "status": 404}`,
//! not as a failure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWriteExt as _};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::common::{Errors, Phase, Server, Window, open_many};
use crate::conn::{self, OpenError, Target};
use crate::pingpong::{new_histogram, percentiles_us};
use crate::wire::{self, FrameReader, OP_BINARY, OP_CLOSE};

/// Parameters of a fan-out run.
#[derive(Clone, Debug)]
pub(crate) struct FanoutParams {
    /// Subscriber connections (the publisher comes on top).
    pub(crate) subscribers: usize,
    /// Payload bytes per message (at least 8, for the timestamp).
    pub(crate) size: usize,
    /// Broadcasts in flight.
    pub(crate) window: u64,
    /// Loopback source addresses to spread subscribers over.
    pub(crate) sources: usize,
    /// Time before measuring.
    pub(crate) warmup: Duration,
    /// Measured time.
    pub(crate) duration: Duration,
    /// The server, for its CPU time.
    pub(crate) server: Server,
}

fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// What every receiving task shares.
struct Shared {
    phase: Phase,
    delivered: AtomicU64,
    wanted: AtomicU64,
    progress: Notify,
    latency: Mutex<Histogram<u64>>,
    errors: Errors,
}

/// Runs the scenario against the broadcasting route `target`.
pub(crate) async fn run(target: Arc<Target>, p: FanoutParams) -> Result<Value> {
    let publisher = match conn::open(&target, None).await {
        Ok(c) => c,
        Err(OpenError::Refused(status)) => {
            return Ok(json!({"available": false, "status": status}));
        }
        Err(e) => bail!("cannot open the publisher: {e}"),
    };
    let subs = open_many(&target, p.subscribers, p.sources, 1, 64)
        .await
        .map_err(|(n, e)| anyhow!("opening subscriber {} failed: {e}", n + 1))?;
    let size = p.size.max(8);
    let per_message = p.subscribers as u64 + 1;
    let shared = Arc::new(Shared {
        phase: Phase::default(),
        delivered: AtomicU64::new(0),
        wanted: AtomicU64::new(0),
        progress: Notify::new(),
        latency: Mutex::new(new_histogram()),
        errors: Errors::default(),
    });
    let mut tasks = JoinSet::new();
    for c in subs {
        tasks.spawn(receive(c.stream, c.rest, size, Arc::clone(&shared)));
    }
    let (rd, mut wr) = publisher.stream.into_split();
    tasks.spawn(receive(rd, publisher.rest, size, Arc::clone(&shared)));
    let sent = Arc::new(AtomicU64::new(0));
    {
        let (shared, sent) = (Arc::clone(&shared), Arc::clone(&sent));
        let window = p.window.max(1);
        tasks.spawn(async move {
            let mut payload = wire::payload(size);
            let mut n = 0u64;
            while !shared.phase.stopped() {
                if n >= window {
                    let need = (n - window + 1) * per_message;
                    shared.wanted.store(need, Ordering::Relaxed);
                    while shared.delivered.load(Ordering::Relaxed) < need {
                        let wait = shared.progress.notified();
                        if tokio::time::timeout(Duration::from_secs(5), wait)
                            .await
                            .is_err()
                        {
                            shared.errors.record("deliveries stalled for 5 s");
                            return;
                        }
                        if shared.phase.stopped() {
                            return;
                        }
                    }
                }
                payload[..8].copy_from_slice(&clock().to_le_bytes());
                if let Err(e) = wr.write_all(&wire::client_frame(OP_BINARY, &payload)).await {
                    shared.errors.record(e);
                    return;
                }
                n += 1;
                sent.store(n, Ordering::Relaxed);
            }
        });
    }
    let w = Window::run(
        &shared.phase,
        &shared.delivered,
        p.warmup,
        p.duration,
        p.server,
    )
    .await;
    shared.progress.notify_waiters();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let mut out = w.json();
    out.insert("available".into(), true.into());
    if let Ok(h) = shared.latency.lock() {
        out.extend(percentiles_us(&h));
    }
    out.insert(
        "broadcasts_sent".into(),
        sent.load(Ordering::Relaxed).into(),
    );
    out.insert("errors".into(), shared.errors.count().into());
    out.insert("first_error".into(), json!(shared.errors.first()));
    out.insert(
        "params".into(),
        json!({"subscribers": p.subscribers, "size": size, "window": p.window}),
    );
    Ok(Value::Object(out))
}

async fn receive<R: AsyncRead + Unpin>(mut rd: R, rest: Vec<u8>, size: usize, shared: Arc<Shared>) {
    let mut reader = FrameReader::new(4 * (size + 14) + 1024, &rest);
    loop {
        match reader.fill(&mut rd).await {
            Ok(0) => {
                if !shared.phase.stopped() {
                    shared.errors.record("server closed a subscriber");
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                shared.errors.record(e);
                return;
            }
        }
        let now = clock();
        let measuring = shared.phase.measuring();
        let mut got = 0u64;
        while let Some((h, payload)) = reader.next_frame() {
            if h.is_data() && h.fin {
                got += 1;
                if measuring && payload.len() >= 8 {
                    let mut ts = [0u8; 8];
                    ts.copy_from_slice(&payload[..8]);
                    let lat = now.saturating_sub(u64::from_le_bytes(ts)).max(1);
                    if let Ok(mut h) = shared.latency.lock() {
                        let _ = h.record(lat);
                    }
                }
            } else if h.opcode == OP_CLOSE {
                shared
                    .errors
                    .record("server closed a subscriber with a close frame");
                return;
            }
        }
        if got > 0 {
            let total = shared.delivered.fetch_add(got, Ordering::Relaxed) + got;
            if total >= shared.wanted.load(Ordering::Relaxed) {
                shared.progress.notify_one();
            }
        }
    }
}
