//! What the scenarios share: opening many connections at once, the phase of
//! a run (warm-up, measured window, stop), error bookkeeping, and the
//! measured window itself.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::conn::{self, OpenError, Opened, Target};
use crate::procfs::{self, CpuMeter, CpuUsed};

/// The phase of a run, shared by every task of a scenario.
#[derive(Debug, Default)]
pub(crate) struct Phase(AtomicU8);

impl Phase {
    // 0 (the default) is the warm-up: results do not count yet.
    const MEASURE: u8 = 1;
    const STOP: u8 = 2;

    /// Whether results count now.
    pub(crate) fn measuring(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::MEASURE
    }

    /// Whether tasks should end.
    pub(crate) fn stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::STOP
    }

    /// Starts the measured window.
    pub(crate) fn measure(&self) {
        self.0.store(Self::MEASURE, Ordering::Relaxed);
    }

    /// Tells every task to end.
    pub(crate) fn stop(&self) {
        self.0.store(Self::STOP, Ordering::Relaxed);
    }
}

/// Errors seen by a scenario's tasks: a count and the first message.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    count: AtomicU64,
    first: Mutex<Option<String>>,
}

impl Errors {
    /// Records one error.
    pub(crate) fn record(&self, what: impl std::fmt::Display) {
        if self.count.fetch_add(1, Ordering::Relaxed) == 0
            && let Ok(mut first) = self.first.lock()
        {
            *first = Some(what.to_string());
        }
    }

    /// How many errors were recorded.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The first error's message, if any.
    pub(crate) fn first(&self) -> Option<String> {
        self.first.lock().ok().and_then(|f| f.clone())
    }
}

/// Opens `n` connections to `target`, at most `concurrency` handshakes at a
/// time, spreading them over `sources` loopback addresses from `base`.
/// Fails with the first error, naming how many were open by then.
pub(crate) async fn open_many(
    target: &Arc<Target>,
    n: usize,
    sources: usize,
    base: usize,
    concurrency: usize,
) -> Result<Vec<Opened>, (usize, OpenError)> {
    let mut open = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    let mut next = 0;
    while open.len() < n {
        while next < n && set.len() < concurrency.max(1) {
            let target = Arc::clone(target);
            let src = conn::source_for(next, sources, base);
            set.spawn(async move { conn::open(&target, src).await });
            next += 1;
        }
        match set.join_next().await {
            Some(Ok(Ok(c))) => open.push(c),
            Some(Ok(Err(e))) => return Err((open.len(), e)),
            Some(Err(e)) => {
                return Err((open.len(), OpenError::Io(std::io::Error::other(e))));
            }
            None => break,
        }
    }
    Ok(open)
}

/// The server being measured: its pid and the core it is pinned to.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Server {
    /// Its pid, for its CPU time (user + system).
    pub(crate) pid: Option<u32>,
    /// The core it alone runs on, for that core's busy time (softirq
    /// included).
    pub(crate) core: Option<usize>,
}

/// One measured window: its length, a counter's increase over it and the
/// CPU time the server (and this client) used in it.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    /// Wall-clock length in seconds.
    pub(crate) secs: f64,
    /// How much the counter grew.
    pub(crate) count: u64,
    /// CPU seconds used in the window.
    pub(crate) cpu: CpuUsed,
    /// Kernel TCP counters that moved in the window (machine-wide).
    pub(crate) kernel: serde_json::Value,
}

impl Window {
    /// Waits out `warmup`, then measures `counter` and CPU over `duration`,
    /// switching `phase` to measuring for that time and to stop after it.
    pub(crate) async fn run(
        phase: &Phase,
        counter: &AtomicU64,
        warmup: Duration,
        duration: Duration,
        server: Server,
    ) -> Self {
        tokio::time::sleep(warmup).await;
        let c0 = counter.load(Ordering::Relaxed);
        let tcp = procfs::tcp_counters();
        let cpu = CpuMeter::start(server.pid, server.core);
        let t0 = Instant::now();
        phase.measure();
        tokio::time::sleep(duration).await;
        let c1 = counter.load(Ordering::Relaxed);
        let secs = t0.elapsed().as_secs_f64();
        let cpu = cpu.stop();
        let kernel = procfs::tcp_counters_since(&tcp);
        phase.stop();
        Self {
            secs,
            count: c1 - c0,
            cpu,
            kernel,
        }
    }

    /// Counted events per second.
    pub(crate) fn rate(&self) -> f64 {
        self.count as f64 / self.secs
    }

    fn per_event_us(&self, cpu: Option<f64>) -> serde_json::Value {
        cpu.filter(|_| self.count > 0)
            .map_or(serde_json::Value::Null, |c| {
                (c * 1e6 / self.count as f64).into()
            })
    }

    fn util(&self, cpu: Option<f64>) -> serde_json::Value {
        cpu.map_or(serde_json::Value::Null, |c| (c / self.secs).into())
    }

    /// The common JSON fields of a window.
    pub(crate) fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("secs".into(), self.secs.into());
        m.insert("count".into(), self.count.into());
        m.insert("rate".into(), self.rate().into());
        m.insert(
            "server_cpu_us_per_event".into(),
            self.per_event_us(self.cpu.server),
        );
        m.insert("server_util".into(), self.util(self.cpu.server));
        m.insert(
            "core_cpu_us_per_event".into(),
            self.per_event_us(self.cpu.core),
        );
        m.insert("core_util".into(), self.util(self.cpu.core));
        m.insert("client_util".into(), (self.cpu.client / self.secs).into());
        m.insert("kernel_tcp".into(), self.kernel.clone());
        m
    }
}
