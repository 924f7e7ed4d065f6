//! Connect/disconnect churn soak, bounded in time: `concurrency` loops open
//! a connection, echo 0–3 messages and close it — cleanly (close
//! handshake) most of the time, by dropping the socket every fourth cycle —
//! while a burst task opens `burst` connections at once every second and
//! drops them all. Before (after a warm-up) and after the soak the server's
//! RSS and open file descriptors are read; the check is that descriptors
//! return to their count before the soak and RSS does not keep growing.
//!
//! For a long soak (`cargo xtask bench --soak MINUTES`): with a broadcast
//! target, every other loop churns on that route instead (each message it
//! sends is published to everyone on the route, itself included), and with
//! a sampling interval the server's RSS and descriptors are read
//! throughout; the RSS growth per 100,000 connections is the least-squares
//! slope of RSS over connections opened, after the warm-up.

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
    /// Where every other loop churns instead, a route that broadcasts each
    /// message to all its connections.
    pub(crate) broadcast: Option<Arc<Target>>,
    /// Read the server's RSS and descriptors this often during the soak.
    pub(crate) sample_every: Option<Duration>,
}

/// Readings of the server during a soak.
struct Sampler {
    every: Duration,
    pid: u32,
    started: Instant,
    /// Connections opened (cycles and burst connections) when the soak
    /// started: samples count from there.
    base: u64,
    /// (seconds, connections, RSS KiB, descriptors).
    samples: Mutex<Vec<(f64, u64, u64, u64)>>,
}

impl Sampler {
    fn take(&self, connections: u64) {
        let sample = (
            self.started.elapsed().as_secs_f64(),
            connections - self.base,
            procfs::rss_kib(self.pid).unwrap_or(0),
            procfs::fd_count(self.pid).unwrap_or(0),
        );
        if let Ok(mut s) = self.samples.lock() {
            s.push(sample);
        }
    }

    /// The samples as JSON, and the RSS growth per 100,000 connections
    /// (least-squares slope; `None` with fewer than two samples).
    fn report(&self) -> (Value, Option<f64>) {
        let s = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        let json = s
            .iter()
            .map(
                |(t, c, rss, fds)| json!({"secs": t, "connections": c, "rss_kib": rss, "fds": fds}),
            )
            .collect::<Vec<_>>();
        (Value::Array(json), slope_per_100k(&s))
    }
}

/// Least-squares slope of RSS (KiB) over connections, times 100,000.
fn slope_per_100k(s: &[(f64, u64, u64, u64)]) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let n = s.len() as f64;
    let mx = s.iter().map(|x| x.1 as f64).sum::<f64>() / n;
    let my = s.iter().map(|x| x.2 as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for x in s {
        let dx = x.1 as f64 - mx;
        sxy += dx * (x.2 as f64 - my);
        sxx += dx * dx;
    }
    (sxx > 0.0).then(|| sxy / sxx * 100_000.0)
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
    churn(&target, &p, p.warmup, &counters, None).await;
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
    let sampler = p.sample_every.map(|every| Sampler {
        every,
        pid: p.server_pid,
        started: t0,
        base: c0 + b0,
        samples: Mutex::new(Vec::new()),
    });
    churn(&target, &p, p.duration, &counters, sampler.as_ref()).await;
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
    let burst_connections = bursts.load(Ordering::Relaxed) - b0;
    let (samples, per_100k) = sampler
        .as_ref()
        .map_or((Value::Null, None), Sampler::report);
    json!({
        "secs": secs,
        "cycles": n,
        "rate": n as f64 / secs,
        "dropped_cycles": dropped.load(Ordering::Relaxed) - d0,
        "burst_connections": burst_connections,
        "connections": n + burst_connections,
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
        "params": {
            "concurrency": p.concurrency,
            "burst": p.burst,
            "broadcast": p.broadcast.is_some(),
            "sample_secs": p.sample_every.map(|d| d.as_secs_f64()),
        },
        "samples": samples,
        "rss_growth_kib_per_100k_connections": per_100k,
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

async fn churn(
    target: &Arc<Target>,
    p: &ChurnParams,
    duration: Duration,
    c: &Counters<'_>,
    sampler: Option<&Sampler>,
) {
    let phase = Arc::new(Phase::default());
    let frame = Arc::<[u8]>::from(wire::client_frame(OP_BINARY, &wire::payload(64)));
    let close = Arc::<[u8]>::from(wire::close_frame());
    let mut tasks = JoinSet::new();
    for i in 0..p.concurrency {
        // Every other loop on the broadcast route, when there is one.
        let target = match &p.broadcast {
            Some(b) if i % 2 == 1 => b,
            _ => target,
        };
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
    match sampler {
        None => tokio::time::sleep(duration).await,
        Some(sampler) => {
            let end = Instant::now() + duration;
            loop {
                let connections =
                    c.cycles.load(Ordering::Relaxed) + c.bursts.load(Ordering::Relaxed);
                sampler.take(connections);
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                tokio::time::sleep(left.min(sampler.every)).await;
            }
        }
    }
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
    // On a broadcast route more frames may have come than were awaited:
    // the close starts where this reader stopped.
    c.rest = reader.unparsed().to_vec();
    close_cleanly(c, close).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn slope_of_rss_over_connections() {
        // 2 KiB per 1,000 connections: 200 KiB per 100,000.
        let s: Vec<_> = (0..5u64)
            .map(|i| (0.0, i * 1000, 10_000 + 2 * i, 0))
            .collect();
        let k = super::slope_per_100k(&s).unwrap();
        assert!((k - 200.0).abs() < 1e-9, "{k}");
        assert!(super::slope_per_100k(&s[..1]).is_none());
    }
}
