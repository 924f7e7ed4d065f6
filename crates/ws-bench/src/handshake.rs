//! Handshake rate: `concurrency` loops of connect → upgrade → close
//! handshake → end of stream. One cycle is counted when the server's close
//! frame and its end of stream have both arrived, so the server's whole
//! connection life (accept, HTTP, pipeline, session start and end) is in
//! each count. Reported: cycles per second and server CPU per cycle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::task::JoinSet;

use crate::common::{Errors, Phase, Server, Window};
use crate::conn::{self, OpenError, Target};
use crate::pingpong::{new_histogram, percentiles_us};
use crate::wire::{self, FrameReader, OP_CLOSE};

/// How long a cycle waits for the server's close frame and end of stream.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Parameters of a handshake-rate run.
#[derive(Clone, Debug)]
pub(crate) struct HandshakeParams {
    /// Loops running at once.
    pub(crate) concurrency: usize,
    /// Loopback source addresses to spread connections over.
    pub(crate) sources: usize,
    /// Time before measuring.
    pub(crate) warmup: Duration,
    /// Measured time.
    pub(crate) duration: Duration,
    /// The server, for its CPU time.
    pub(crate) server: Server,
}

/// Runs the scenario against `target`.
pub(crate) async fn run(target: Arc<Target>, p: HandshakeParams) -> Value {
    let phase = Arc::new(Phase::default());
    let cycles = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Errors::default());
    let close = Arc::<[u8]>::from(wire::close_frame());
    let times = Arc::new(Mutex::new(new_histogram()));
    let mut tasks = JoinSet::new();
    for i in 0..p.concurrency {
        let (target, phase, cycles, refused, errors, close, times) = (
            Arc::clone(&target),
            Arc::clone(&phase),
            Arc::clone(&cycles),
            Arc::clone(&refused),
            Arc::clone(&errors),
            Arc::clone(&close),
            Arc::clone(&times),
        );
        let src = conn::source_for(i, p.sources, 1);
        tasks.spawn(async move {
            while !phase.stopped() {
                let t0 = Instant::now();
                match cycle(&target, src, &close).await {
                    Ok(()) => {
                        cycles.fetch_add(1, Ordering::Relaxed);
                        if phase.measuring()
                            && let Ok(mut h) = times.lock()
                        {
                            let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                            let _ = h.record(ns.max(1));
                        }
                    }
                    Err(e) => {
                        if matches!(e, OpenError::Refused(_)) {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        errors.record(e);
                        // Do not spin on a persistent failure.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        });
    }
    let w = Window::run(&phase, &cycles, p.warmup, p.duration, p.server).await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let mut out = w.json();
    if let Ok(h) = times.lock() {
        out.insert("cycle".into(), Value::Object(percentiles_us(&h)));
    }
    out.insert("errors".into(), errors.count().into());
    out.insert("refused".into(), refused.load(Ordering::Relaxed).into());
    out.insert("first_error".into(), json!(errors.first()));
    out.insert("params".into(), json!({"concurrency": p.concurrency}));
    Value::Object(out)
}

/// One connection's whole life, closed cleanly by the client.
pub(crate) async fn cycle(
    target: &Target,
    src: Option<std::net::Ipv4Addr>,
    close: &[u8],
) -> Result<(), OpenError> {
    let c = conn::open(target, src).await?;
    close_cleanly(c, close).await
}

/// Sends a close frame, waits for the server's close frame and then for
/// its end of stream.
pub(crate) async fn close_cleanly(c: conn::Opened, close: &[u8]) -> Result<(), OpenError> {
    let conn::Opened { mut stream, rest } = c;
    let mut reader = FrameReader::new(1024, &rest);
    let wait = async {
        stream.write_all(close).await?;
        let mut got_close = false;
        loop {
            while let Some((h, _)) = reader.next_frame() {
                got_close |= h.opcode == OP_CLOSE;
            }
            if reader.fill(&mut stream).await? == 0 {
                break;
            }
        }
        Ok::<_, std::io::Error>(got_close)
    };
    match tokio::time::timeout(CLOSE_TIMEOUT, wait).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(OpenError::BadAnswer(
            "end of stream without a close frame".into(),
        )),
        Ok(Err(e)) => Err(OpenError::Io(e)),
        Err(_) => Err(OpenError::BadAnswer(
            "no close frame and end of stream within 5 s".into(),
        )),
    }
}
