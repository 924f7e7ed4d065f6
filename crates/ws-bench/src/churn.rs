//! Connect/disconnect churn soak, bounded in time: `concurrency` loops open
//! a connection, echo 0–3 messages and close it — cleanly (close
//! handshake) most of the time, by dropping the socket every fourth cycle —
//! while a burst task opens `burst` connections at once every second and
//! drops them all. Before (after a warm-up) and after the soak the server's
//! RSS and open file descriptors are read; the check is that descriptors
//! return to their count before the soak and RSS does not keep growing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::task::JoinSet;

use crate::common::{Errors, Phase, open_many};
use crate::conn::{self, OpenError, Target};
use crate::handshake::close_cleanly;
use crate::pingpong::{new_histogram, percentiles_us};
use crate::procfs;
use crate::wire::{self, FrameReader, OP_BINARY};

/// Parameters of a churn soak.
#[derive(Clone, Debug)]
pub(crate) struct ChurnParams {
    /// Open/close loops at once.
    pub(crate) concurrency: usize,
    /// Connections opened at once by the burst task, every second.
    pub(crate) burst: usize,
    /// Loopback source addresses to spread connections over.
    pub(crate) sources: usize,
    /// Churn before the "before" reading (warms allocator and caches).
    pub(crate) warmup: Duration,
    /// Length of the soak.
    pub(crate) duration: Duration,
    /// The server's pid: required, its RSS and descriptors are the result.
    pub(crate) server_pid: u32,
}

/// Runs the warm-up churn, reads the baseline, runs the soak, and waits for
/// the server to settle again.
pub(crate) async fn run(target: Arc<Target>, p: ChurnParams) -> Value {
    let errors = Arc::new(Errors::default());
    let cycles = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let bursts = Arc::new(AtomicU64::new(0));
    let times = Arc::new(Mutex::new(new_histogram()));
    let counters = Counters {
        cycles: &cycles,
        dropped: &dropped,
        bursts: &bursts,
        errors: &errors,
        times: &times,
    };

    // Warm-up churn, then let the server settle and take the baseline.
    churn(&target, &p, p.warmup, &counters).await;
    if let Ok(mut h) = times.lock() {
        h.reset();
    }
    let fds_before = settle(p.server_pid, None).await;
    let rss_before = procfs::rss_kib(p.server_pid).unwrap_or(0);
    let (c0, d0, b0) = (
        cycles.load(Ordering::Relaxed),
        dropped.load(Ordering::Relaxed),
        bursts.load(Ordering::Relaxed),
    );
    let e0 = errors.count();

    let tcp = procfs::tcp_counters();
    let t0 = Instant::now();
    churn(&target, &p, p.duration, &counters).await;
    let secs = t0.elapsed().as_secs_f64();
    let kernel = procfs::tcp_counters_since(&tcp);
    let cycle = times
        .lock()
        .map(|h| Value::Object(percentiles_us(&h)))
        .unwrap_or(Value::Null);
    let settle_t0 = Instant::now();
    let fds_after = settle(p.server_pid, Some(fds_before)).await;
    let settle_secs = settle_t0.elapsed().as_secs_f64();
    let rss_after = procfs::rss_kib(p.server_pid).unwrap_or(0);
    let n = cycles.load(Ordering::Relaxed) - c0;
    json!({
        "secs": secs,
        "cycles": n,
        "rate": n as f64 / secs,
        "dropped_cycles": dropped.load(Ordering::Relaxed) - d0,
        "burst_connections": bursts.load(Ordering::Relaxed) - b0,
        "fds_before": fds_before,
        "fds_after": fds_after,
        "fds_returned": fds_after <= fds_before,
        "settle_secs": settle_secs,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_growth_kib": rss_after as f64 - rss_before as f64,
        "errors": errors.count() - e0,
        "first_error": errors.first(),
        "cycle": cycle,
        "kernel_tcp": kernel,
        "params": {"concurrency": p.concurrency, "burst": p.burst},
    })
}

/// Waits until the server's descriptor count stops changing (and, with
/// `target`, is at most that), for at most 10 s; returns the last count.
async fn settle(pid: u32, target: Option<u64>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = procfs::fd_count(pid).unwrap_or(0);
    let mut stable_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = procfs::fd_count(pid).unwrap_or(0);
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
        let low_enough = target.is_none_or(|t| now <= t);
        if (low_enough && stable_since.elapsed() >= Duration::from_millis(500))
            || Instant::now() >= deadline
        {
            return now;
        }
    }
}

/// What the churn tasks count into.
struct Counters<'a> {
    cycles: &'a Arc<AtomicU64>,
    dropped: &'a Arc<AtomicU64>,
    bursts: &'a Arc<AtomicU64>,
    errors: &'a Arc<Errors>,
    /// Time of each whole cycle (open, echoes, close).
    times: &'a Arc<Mutex<Histogram<u64>>>,
}

async fn churn(target: &Arc<Target>, p: &ChurnParams, duration: Duration, c: &Counters<'_>) {
    let phase = Arc::new(Phase::default());
    let frame = Arc::<[u8]>::from(wire::client_frame(OP_BINARY, &wire::payload(64)));
    let close = Arc::<[u8]>::from(wire::close_frame());
    let mut tasks = JoinSet::new();
    for i in 0..p.concurrency {
        let (target, phase, cycles, dropped, errors, frame, close, times) = (
            Arc::clone(target),
            Arc::clone(&phase),
            Arc::clone(c.cycles),
            Arc::clone(c.dropped),
            Arc::clone(c.errors),
            Arc::clone(&frame),
            Arc::clone(&close),
            Arc::clone(c.times),
        );
        let sources = p.sources;
        tasks.spawn(async move {
            let mut n = i;
            while !phase.stopped() {
                let src = conn::source_for(n, sources, 1);
                let abrupt = n % 4 == 3;
                let t0 = Instant::now();
                match one(&target, src, n % 4, abrupt, &frame, &close).await {
                    Ok(()) => {
                        cycles.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut h) = times.lock() {
                            let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                            let _ = h.record(ns.max(1));
                        }
                        if abrupt {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        errors.record(e);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                n += p_stride(sources);
            }
        });
    }
    if p.burst > 0 {
        let (target, phase, bursts, errors) = (
            Arc::clone(target),
            Arc::clone(&phase),
            Arc::clone(c.bursts),
            Arc::clone(c.errors),
        );
        let (burst, sources) = (p.burst, p.sources);
        tasks.spawn(async move {
            while !phase.stopped() {
                let t = Instant::now();
                match open_many(&target, burst, sources, 1, 32).await {
                    Ok(conns) => {
                        bursts.fetch_add(conns.len() as u64, Ordering::Relaxed);
                        drop(conns);
                    }
                    Err((_, e)) => errors.record(e),
                }
                let rest = Duration::from_secs(1).saturating_sub(t.elapsed());
                tokio::time::sleep(rest).await;
            }
        });
    }
    tokio::time::sleep(duration).await;
    phase.stop();
    // Let loops finish their cycle (bounded by the open and close timeouts).
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// Loops step through source addresses by an odd stride so that they do
/// not all use the same one.
fn p_stride(sources: usize) -> usize {
    if sources > 1 { 7 } else { 1 }
}

/// One connection: open, `echoes` round trips, then a clean close or a drop.
async fn one(
    target: &Target,
    src: Option<std::net::Ipv4Addr>,
    echoes: usize,
    abrupt: bool,
    frame: &[u8],
    close: &[u8],
) -> Result<(), OpenError> {
    let mut c = conn::open(target, src).await?;
    let mut reader = FrameReader::new(1024, &c.rest);
    for _ in 0..echoes {
        c.stream.write_all(frame).await?;
        loop {
            if let Some((h, _)) = reader.next_frame() {
                if h.is_data() {
                    break;
                }
                continue;
            }
            if reader.fill(&mut c.stream).await? == 0 {
                return Err(OpenError::BadAnswer("closed during echo".into()));
            }
        }
    }
    if abrupt {
        drop(c);
        return Ok(());
    }
    c.rest.clear();
    close_cleanly(c, close).await
}
