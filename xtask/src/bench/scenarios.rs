//! What the bench runs: the servers, the scenarios (with the size sweep
//! and the second load generator's cells) and the metrics read from them,
//! with issue 7's and issue 18's targets.

use serde::{Deserialize, Serialize};

use super::results::Figures;

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Baseline,
    Provider,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Provider => "ws-provider",
        }
    }
}

/// Which load generator drives a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Generator {
    /// `crates/ws-bench`, ours: pre-encoded frames written in batches.
    WsBench,
    /// `crates/ws-bench-peer`: a client on tokio-websockets, which we did
    /// not write, one `send` per message as applications do.
    Peer,
}

impl Generator {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::WsBench => "ws-bench",
            Self::Peer => "ws-bench-peer",
        }
    }
}

/// Pipelined echo or ping-pong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Traffic {
    /// `conns` connections × `window` messages in flight.
    Pipelined,
    /// One message in flight per connection, round trips timed.
    PingPong,
}

/// A cell of the size sweep (or of the second generator's check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cell {
    pub(crate) generator: Generator,
    pub(crate) traffic: Traffic,
    pub(crate) text: bool,
    pub(crate) size: usize,
}

/// The sweep's message sizes (issue 18).
pub(crate) const SWEEP_SIZES: [usize; 6] = [64, 256, 1024, 4096, 16_384, 65_536];

/// The cells the second load generator runs: issue 18 asks at least for
/// pipelined 64 B, 1 KiB and 4 KiB and ping-pong 1 KiB.
const PEER_CELLS: [(Traffic, bool, usize); 7] = [
    (Traffic::Pipelined, false, 64),
    (Traffic::Pipelined, false, 1024),
    (Traffic::Pipelined, true, 1024),
    (Traffic::Pipelined, false, 4096),
    (Traffic::Pipelined, false, 16_384),
    (Traffic::PingPong, false, 64),
    (Traffic::PingPong, false, 1024),
];

impl Cell {
    /// `sweep-echo-bin-1k`, `peer-pp-bin-64`, …
    pub(crate) fn id(self) -> String {
        format!(
            "{}-{}-{}-{}",
            match self.generator {
                Generator::WsBench => "sweep",
                Generator::Peer => "peer",
            },
            match self.traffic {
                Traffic::Pipelined => "echo",
                Traffic::PingPong => "pp",
            },
            if self.text { "text" } else { "bin" },
            size_id(self.size)
        )
    }

    /// Connections and messages in flight on each: many small messages,
    /// fewer large ones (about 1.6 MiB in flight at most, like echo16k).
    pub(crate) fn load(self) -> (usize, usize) {
        match (self.traffic, self.size) {
            (Traffic::PingPong, _) => (16, 1),
            (Traffic::Pipelined, ..=1024) => (100, 16),
            (Traffic::Pipelined, ..=4096) => (100, 8),
            (Traffic::Pipelined, ..=16_384) => (50, 4),
            (Traffic::Pipelined, _) => (25, 2),
        }
    }

    fn title(self) -> String {
        let (conns, window) = self.load();
        format!(
            "{}, {} {}, {} connections{} ({})",
            match self.traffic {
                Traffic::Pipelined => "pipelined echo",
                Traffic::PingPong => "ping-pong",
            },
            if self.text { "text" } else { "binary" },
            size_label(self.size),
            conns,
            match self.traffic {
                Traffic::Pipelined => format!(" × window {window}"),
                Traffic::PingPong => ", 1 in flight each".to_owned(),
            },
            self.generator.name()
        )
    }
}

/// `64`, `1k`, `64k`.
pub(crate) fn size_id(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{}k", size / 1024)
    } else {
        size.to_string()
    }
}

/// `64 B`, `1 KiB`.
pub(crate) fn size_label(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// How a scenario is driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Driver {
    /// A ws-bench subcommand of the same name, with fixed arguments.
    Fixed,
    /// The idle scenario: several ws-bench processes hold connections.
    Idle,
    /// A sweep or second-generator cell.
    Cell(Cell),
}

/// One scenario of the bench.
#[derive(Clone, Debug)]
pub(crate) struct ScenarioDef {
    pub(crate) id: String,
    pub(crate) title: String,
    /// Only ws-provider has what it needs (the baseline is reported n/a).
    pub(crate) provider_only: bool,
    pub(crate) driver: Driver,
}

/// Every scenario, in the order a round runs them. `--only` also takes
/// `sweep` (every sweep cell) and `peer` (every second-generator cell).
pub(crate) fn scenarios() -> Vec<ScenarioDef> {
    let fixed = |id: &str, title: &str, provider_only: bool, driver: Driver| ScenarioDef {
        id: id.to_owned(),
        title: title.to_owned(),
        provider_only,
        driver,
    };
    let mut v = vec![
        fixed(
            "echo64",
            "pipelined echo, 64 B, 100 connections × window 16",
            false,
            Driver::Fixed,
        ),
        fixed(
            "echo16k",
            "pipelined echo, 16 KiB, 50 connections × window 4",
            false,
            Driver::Fixed,
        ),
        fixed(
            "pingpong",
            "ping-pong latency, 64 B, 16 connections, 1 in flight each",
            false,
            Driver::Fixed,
        ),
        fixed("idle", "idle connections memory", false, Driver::Idle),
        fixed(
            "handshake",
            "handshake rate, connect → upgrade → close, 16 concurrent",
            false,
            Driver::Fixed,
        ),
        fixed(
            "fanout",
            "broadcast fan-out on /broadcast, 64 B",
            true,
            Driver::Fixed,
        ),
        fixed(
            "churn",
            "connect/disconnect churn soak",
            false,
            Driver::Fixed,
        ),
    ];
    for c in sweep_cells().into_iter().chain(peer_cells()) {
        v.push(ScenarioDef {
            id: c.id(),
            title: c.title(),
            provider_only: false,
            driver: Driver::Cell(c),
        });
    }
    v
}

/// The size sweep: ws-bench, pipelined and ping-pong, binary and text, at
/// every size of [`SWEEP_SIZES`].
pub(crate) fn sweep_cells() -> Vec<Cell> {
    let mut v = Vec::new();
    for traffic in [Traffic::Pipelined, Traffic::PingPong] {
        for text in [false, true] {
            for size in SWEEP_SIZES {
                v.push(Cell {
                    generator: Generator::WsBench,
                    traffic,
                    text,
                    size,
                });
            }
        }
    }
    v
}

/// The second load generator's cells.
pub(crate) fn peer_cells() -> Vec<Cell> {
    PEER_CELLS
        .iter()
        .map(|&(traffic, text, size)| Cell {
            generator: Generator::Peer,
            traffic,
            text,
            size,
        })
        .collect()
}

/// Which way is better for a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Better {
    Lower,
    Higher,
}

/// A target of issue 7 or 18 for one metric.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Goal {
    /// ws-provider / baseline at most this.
    RatioAtMost(f64),
    /// ws-provider / baseline at least this.
    RatioAtLeast(f64),
    /// ws-provider's own value at most this.
    AtMost(f64),
    /// ws-provider's own value at least this.
    AtLeast(f64),
}

impl Goal {
    pub(crate) fn describe(self) -> String {
        match self {
            Self::RatioAtMost(r) => format!("≤ {r}× baseline"),
            Self::RatioAtLeast(r) => format!("≥ {r}× baseline"),
            Self::AtMost(v) => format!("≤ {v}"),
            Self::AtLeast(v) => format!("≥ {v}"),
        }
    }
}

/// A reported figure: which field of which scenario's result it is.
#[derive(Clone, Debug)]
pub(crate) struct MetricDef {
    pub(crate) id: String,
    pub(crate) scenario: String,
    pub(crate) label: String,
    pub(crate) unit: &'static str,
    pub(crate) field: fn(&Figures) -> Option<f64>,
    pub(crate) better: Better,
    /// Whether a ratio means something (not for counts that are ~0).
    pub(crate) ratio: bool,
    pub(crate) goal: Option<Goal>,
}

/// The metric id of a cell's CPU per message (`sweep-echo-bin-1k_cpu`).
pub(crate) fn cpu_metric(c: Cell) -> String {
    format!("{}_cpu", c.id())
}

/// The metric id of a ping-pong cell's p99 (`sweep-pp-bin-1k_p99`).
pub(crate) fn p99_metric(c: Cell) -> String {
    format!("{}_p99", c.id())
}

/// Every metric, the fixed scenarios' first, then two per cell (server CPU
/// per message; for ping-pong cells the p99 round trip, for pipelined
/// ones the rate). Issue 18's targets: CPU per message at most 1.05× the
/// baseline at every size, p99 at most 1.1× at 64 B and 1 KiB.
pub(crate) fn metrics() -> Vec<MetricDef> {
    let mut v = vec![
        MetricDef {
            id: "echo64_cpu".into(),
            scenario: "echo64".into(),
            label: "server CPU per echo, 64 B".into(),
            unit: "µs",
            field: |f| f.server_cpu_us_per_event,
            better: Better::Lower,
            ratio: true,
            goal: Some(Goal::RatioAtMost(1.05)),
        },
        MetricDef {
            id: "echo64_core".into(),
            scenario: "echo64".into(),
            label: "server core busy per echo, 64 B (incl. softirq)".into(),
            unit: "µs",
            field: |f| f.core_cpu_us_per_event,
            better: Better::Lower,
            ratio: true,
            goal: None,
        },
        MetricDef {
            id: "echo64_rate".into(),
            scenario: "echo64".into(),
            label: "echoes/s, 64 B".into(),
            unit: "msg/s",
            field: |f| f.rate,
            better: Better::Higher,
            ratio: true,
            goal: None,
        },
        MetricDef {
            id: "echo16k_cpu".into(),
            scenario: "echo16k".into(),
            label: "server CPU per echo, 16 KiB".into(),
            unit: "µs",
            field: |f| f.server_cpu_us_per_event,
            better: Better::Lower,
            ratio: true,
            goal: Some(Goal::RatioAtMost(1.1)),
        },
        MetricDef {
            id: "echo16k_core".into(),
            scenario: "echo16k".into(),
            label: "server core busy per echo, 16 KiB (incl. softirq)".into(),
            unit: "µs",
            field: |f| f.core_cpu_us_per_event,
            better: Better::Lower,
            ratio: true,
            goal: None,
        },
        MetricDef {
            id: "echo16k_rate".into(),
            scenario: "echo16k".into(),
            label: "echoes/s, 16 KiB".into(),
            unit: "msg/s",
            field: |f| f.rate,
            better: Better::Higher,
            ratio: true,
            goal: None,
        },
        MetricDef {
            id: "pingpong_p50".into(),
            scenario: "pingpong".into(),
            label: "ping-pong round trip p50".into(),
            unit: "µs",
            field: |f| f.p50_us,
            better: Better::Lower,
            ratio: true,
            goal: None,
        },
        MetricDef {
            id: "pingpong_p99".into(),
            scenario: "pingpong".into(),
            label: "ping-pong round trip p99".into(),
            unit: "µs",
            field: |f| f.p99_us,
            better: Better::Lower,
            ratio: true,
            goal: Some(Goal::RatioAtMost(1.1)),
        },
        MetricDef {
            id: "pingpong_p999".into(),
            scenario: "pingpong".into(),
            label: "ping-pong round trip p99.9".into(),
            unit: "µs",
            field: |f| f.p999_us,
            better: Better::Lower,
            ratio: true,
            goal: None,
        },
        MetricDef {
            id: "pingpong_cpu".into(),
            scenario: "pingpong".into(),
            label: "server CPU per round trip".into(),
            unit: "µs",
            field: |f| f.server_cpu_us_per_event,
            better: Better::Lower,
            ratio: true,
            goal: None,
        },
        MetricDef {
            id: "idle_rss".into(),
            scenario: "idle".into(),
            label: "idle memory per connection, RSS".into(),
            unit: "KiB",
            field: |f| f.rss_per_conn_kib,
            better: Better::Lower,
            ratio: true,
            goal: Some(Goal::AtMost(4.0)),
        },
        MetricDef {
            id: "idle_pss".into(),
            scenario: "idle".into(),
            label: "idle memory per connection, PSS".into(),
            unit: "KiB",
            field: |f| f.pss_per_conn_kib,
            better: Better::Lower,
            ratio: true,
            goal: Some(Goal::AtMost(4.0)),
        },
        MetricDef {
            id: "handshake_rate".into(),
            scenario: "handshake".into(),
            label: "handshakes/s".into(),
            unit: "1/s",
            field: |f| f.rate,
            better: Better::Higher,
            ratio: true,
            goal: Some(Goal::RatioAtLeast(0.9)),
        },
        MetricDef {
            id: "handshake_cpu".into(),
            scenario: "handshake".into(),
            label: "server CPU per handshake".into(),
            unit: "µs",
            field: |f| f.server_cpu_us_per_event,
            better: Better::Lower,
            ratio: true,
            goal: None,
        },
        MetricDef {
            id: "fanout_rate".into(),
            scenario: "fanout".into(),
            label: "broadcast deliveries/s".into(),
            unit: "1/s",
            field: |f| f.rate,
            better: Better::Higher,
            ratio: false,
            goal: Some(Goal::AtLeast(500_000.0)),
        },
        MetricDef {
            id: "fanout_p99".into(),
            scenario: "fanout".into(),
            label: "broadcast delivery latency p99".into(),
            unit: "µs",
            field: |f| f.p99_us,
            better: Better::Lower,
            ratio: false,
            goal: None,
        },
        MetricDef {
            id: "churn_rate".into(),
            scenario: "churn".into(),
            label: "churn cycles/s".into(),
            unit: "1/s",
            field: |f| f.rate,
            better: Better::Higher,
            ratio: true,
            goal: None,
        },
        MetricDef {
            id: "churn_rss".into(),
            scenario: "churn".into(),
            label: "RSS growth over the soak".into(),
            unit: "KiB",
            field: |f| f.rss_growth_kib,
            better: Better::Lower,
            ratio: false,
            goal: None,
        },
        MetricDef {
            id: "churn_fds".into(),
            scenario: "churn".into(),
            label: "fds left open after the soak".into(),
            unit: "fds",
            field: |f| f.fd_delta,
            better: Better::Lower,
            ratio: false,
            goal: Some(Goal::AtMost(0.0)),
        },
    ];
    for c in sweep_cells().into_iter().chain(peer_cells()) {
        let what = match c.traffic {
            Traffic::Pipelined => "echo",
            Traffic::PingPong => "round trip",
        };
        let name = format!(
            "{} {} {}{}",
            match c.traffic {
                Traffic::Pipelined => "pipelined",
                Traffic::PingPong => "ping-pong",
            },
            if c.text { "text" } else { "binary" },
            size_label(c.size),
            match c.generator {
                Generator::WsBench => String::new(),
                Generator::Peer => format!(" ({})", c.generator.name()),
            }
        );
        v.push(MetricDef {
            id: cpu_metric(c),
            scenario: c.id(),
            label: format!("{name}: server CPU per {what}"),
            unit: "µs",
            field: |f| f.server_cpu_us_per_event,
            better: Better::Lower,
            ratio: true,
            goal: Some(Goal::RatioAtMost(1.05)),
        });
        v.push(match c.traffic {
            Traffic::PingPong => MetricDef {
                id: p99_metric(c),
                scenario: c.id(),
                label: format!("{name}: round trip p99"),
                unit: "µs",
                field: |f| f.p99_us,
                better: Better::Lower,
                ratio: true,
                goal: (c.size <= 1024).then_some(Goal::RatioAtMost(1.1)),
            },
            Traffic::Pipelined => MetricDef {
                id: format!("{}_rate", c.id()),
                scenario: c.id(),
                label: format!("{name}: echoes/s"),
                unit: "msg/s",
                field: |f| f.rate,
                better: Better::Higher,
                ratio: true,
                goal: None,
            },
        });
    }
    v
}
