//! Ping-pong latency: each of `conns` connections has exactly one message in
//! flight; the time from writing it to reading its echo goes into an
//! HdrHistogram. Reported: p50, p99, p99.9 and max round trip in
//! microseconds, round trips per second and server CPU per round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::task::JoinSet;

use crate::common::{Errors, Phase, Server, Window, open_many};
use crate::conn::{Opened, Target};
use crate::wire::{self, FrameReader, OP_BINARY, OP_CLOSE, OP_TEXT};

/// Parameters of a latency run.
#[derive(Clone, Debug)]
pub(crate) struct PingPongParams {
    /// Connections, one message in flight each.
    pub(crate) conns: usize,
    /// Payload bytes per message.
    pub(crate) size: usize,
    /// Text frames (the payload is ASCII) instead of binary ones.
    pub(crate) text: bool,
    /// Time before measuring.
    pub(crate) warmup: Duration,
    /// Measured time.
    pub(crate) duration: Duration,
    /// The server, for its CPU time.
    pub(crate) server: Server,
}

/// A histogram of round trips in nanoseconds, 1 ns to 60 s, 3 digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low >= 1,
    // high >= 2 * low, 3 significant digits).
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Percentiles of `h` (nanoseconds) as JSON fields in microseconds.
pub(crate) fn percentiles_us(h: &Histogram<u64>) -> serde_json::Map<String, Value> {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let mut m = serde_json::Map::new();
    m.insert("p50_us".into(), us(0.5).into());
    m.insert("p90_us".into(), us(0.9).into());
    m.insert("p99_us".into(), us(0.99).into());
    m.insert("p999_us".into(), us(0.999).into());
    m.insert("max_us".into(), (h.max() as f64 / 1000.0).into());
    m.insert("samples".into(), h.len().into());
    m
}

/// Runs the scenario against `target`.
pub(crate) async fn run(target: Arc<Target>, p: PingPongParams) -> Result<Value> {
    let conns = open_many(&target, p.conns, 1, 1, 16)
        .await
        .map_err(|(n, e)| anyhow!("opening connection {} failed: {e}", n + 1))?;
    let frame: Arc<[u8]> = wire::client_frame(
        if p.text { OP_TEXT } else { OP_BINARY },
        &wire::payload(p.size),
    )
    .into();
    let phase = Arc::new(Phase::default());
    let trips = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Errors::default());
    let mut tasks = JoinSet::new();
    for c in conns {
        tasks.spawn(connection(
            c,
            Arc::clone(&frame),
            p.size,
            Arc::clone(&phase),
            Arc::clone(&trips),
            Arc::clone(&errors),
        ));
    }
    let w = Window::run(&phase, &trips, p.warmup, p.duration, p.server).await;
    let mut all = new_histogram();
    while let Some(h) = tasks.join_next().await {
        if let Ok(h) = h {
            let _ = all.add(&h);
        }
    }
    let mut out = w.json();
    out.extend(percentiles_us(&all));
    out.insert("errors".into(), errors.count().into());
    out.insert("first_error".into(), json!(errors.first()));
    out.insert(
        "params".into(),
        json!({"conns": p.conns, "size": p.size, "text": p.text}),
    );
    Ok(Value::Object(out))
}

async fn connection(
    c: Opened,
    frame: Arc<[u8]>,
    size: usize,
    phase: Arc<Phase>,
    trips: Arc<AtomicU64>,
    errors: Arc<Errors>,
) -> Histogram<u64> {
    let mut hist = new_histogram();
    let Opened { mut stream, rest } = c;
    let mut reader = FrameReader::new(size + 4096, &rest);
    'trips: while !phase.stopped() {
        let t0 = Instant::now();
        if let Err(e) = stream.write_all(&frame).await {
            errors.record(e);
            break;
        }
        loop {
            if let Some((h, _)) = reader.next_frame() {
                if h.is_data() && h.fin {
                    break;
                }
                if h.opcode == OP_CLOSE {
                    errors.record("server sent a close frame");
                    break 'trips;
                }
                continue;
            }
            match reader.fill(&mut stream).await {
                Ok(0) => {
                    errors.record("server closed the connection");
                    break 'trips;
                }
                Ok(_) => {}
                Err(e) => {
                    errors.record(e);
                    break 'trips;
                }
            }
        }
        let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        trips.fetch_add(1, Ordering::Relaxed);
        if phase.measuring() {
            let _ = hist.record(ns.max(1));
        }
    }
    hist
}
