//! The bench's results as types: what a load generator prints for one run
//! ([`Figures`]), one run of one scenario against one server ([`Run`]), the
//! summary of a metric over the rounds ([`MetricSummary`]) and the whole
//! report written to `results.json` ([`Report`]). Reports written before
//! these types existed (the snapshots in `bench/results/`) still read:
//! every field that was added later has a default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::scenarios::{Better, Goal, Kind, MetricDef};

/// One client run's result, as ws-bench or ws-bench-peer prints it: the
/// figures the bench reads are typed, the rest is kept as printed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Figures {
    /// Events (echoes, round trips, handshakes, deliveries, cycles) counted
    /// in the measured window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) count: Option<f64>,
    /// Events per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rate: Option<f64>,
    /// The server's user + system CPU time per event, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) server_cpu_us_per_event: Option<f64>,
    /// The server core's busy time per event (softirq included), µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) core_cpu_us_per_event: Option<f64>,
    /// The server's CPU time per second of the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) server_util: Option<f64>,
    /// The load generator's CPU time per second of the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) client_util: Option<f64>,
    /// Round-trip or delivery latency percentiles, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) p50_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) p99_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) p999_us: Option<f64>,
    /// Idle memory per connection, KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rss_per_conn_kib: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pss_per_conn_kib: Option<f64>,
    /// Churn and soak: the server's RSS and descriptors around the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rss_before_kib: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rss_after_kib: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rss_growth_kib: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fds_before: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fds_after: Option<f64>,
    /// `fds_after − fds_before` (churn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fd_delta: Option<f64>,
    /// Churn cycles completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cycles: Option<f64>,
    /// Client errors and the first one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) errors: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) first_error: Option<String>,
    /// Handshakes the server refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) refused: Option<u64>,
    /// `false` when the server has no route for the scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) available: Option<bool>,
    /// The HTTP status of a refused route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<Value>,
    /// Machine-wide kernel TCP counters that moved in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kernel_tcp: Option<BTreeMap<String, Value>>,
    /// The server's pid in this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) server_pid: Option<u32>,
    /// Everything else the generator printed (parameters, percentiles,
    /// readings), kept as printed.
    #[serde(flatten)]
    pub(crate) rest: BTreeMap<String, Value>,
}

/// One scenario run against one server in one round.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Run {
    pub(crate) scenario: String,
    /// `baseline` or `ws-provider`.
    pub(crate) server: String,
    /// From 0.
    pub(crate) round: usize,
    pub(crate) wall_secs: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<Figures>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// Median and range of one figure over rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Stats {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) n: usize,
    /// In round order.
    pub(crate) values: Vec<f64>,
}

impl Stats {
    /// `None` for no values.
    pub(crate) fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
            n,
            values: values.to_vec(),
        })
    }
}

/// Whether a metric met its target in this run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Verdict {
    pub(crate) goal: String,
    pub(crate) value: f64,
    pub(crate) met: bool,
}

/// One metric over the rounds: both servers' figures and their ratio.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct MetricSummary {
    pub(crate) id: String,
    pub(crate) scenario: String,
    pub(crate) label: String,
    pub(crate) unit: String,
    pub(crate) better: Better,
    pub(crate) baseline: Option<Stats>,
    pub(crate) ws_provider: Option<Stats>,
    /// ws-provider ÷ baseline, round by round.
    pub(crate) ratio: Option<Stats>,
    pub(crate) target: Option<Verdict>,
    pub(crate) goal: Option<String>,
}

/// A scenario as the report lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ScenarioInfo {
    pub(crate) id: String,
    pub(crate) title: String,
    /// Why the scenario could not run (a route the server lacks).
    #[serde(default)]
    pub(crate) unavailable: Option<String>,
    /// `measured` or `n/a for baseline`.
    pub(crate) baseline: String,
}

/// What the bench turned on in ws-provider's configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct ProviderConfig {
    pub(crate) file: String,
    #[serde(default)]
    pub(crate) applied: Vec<String>,
    #[serde(default)]
    pub(crate) missing: Vec<String>,
    /// What `/demo_echo_Whoami` reported of the JWT aspect before measuring.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub(crate) aspect_check: Value,
}

/// The machine a run was taken on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Machine {
    #[serde(default)]
    pub(crate) cores: usize,
    #[serde(default)]
    pub(crate) cpu: String,
    #[serde(default)]
    pub(crate) memory_gib: f64,
    #[serde(default)]
    pub(crate) kernel: String,
    #[serde(default)]
    pub(crate) rustc: String,
    #[serde(default)]
    pub(crate) commit: Option<String>,
    #[serde(default)]
    pub(crate) dirty: bool,
    #[serde(default)]
    pub(crate) pinning: String,
    /// `/proc/loadavg` (1, 5, 15 minutes) when the run started.
    #[serde(default)]
    pub(crate) load_before: String,
}

/// Durations and sizes of the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct PlanInfo {
    #[serde(default)]
    pub(crate) warmup_secs: f64,
    #[serde(default)]
    pub(crate) duration_secs: f64,
    /// The size sweep's own (shorter) window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sweep_warmup_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sweep_duration_secs: Option<f64>,
    #[serde(default)]
    pub(crate) churn_secs: f64,
    #[serde(default)]
    pub(crate) idle_conns: usize,
    #[serde(default)]
    pub(crate) fanout_subscribers: usize,
}

/// `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Report {
    /// `quick` or `full`.
    pub(crate) mode: String,
    pub(crate) rounds: usize,
    #[serde(default)]
    pub(crate) plan: PlanInfo,
    #[serde(default)]
    pub(crate) machine: Machine,
    /// `/proc/loadavg` at the end.
    #[serde(default)]
    pub(crate) load_after: String,
    #[serde(default)]
    pub(crate) wall_secs: f64,
    #[serde(default)]
    pub(crate) provider_config: ProviderConfig,
    pub(crate) scenarios: Vec<ScenarioInfo>,
    pub(crate) metrics: Vec<MetricSummary>,
    #[serde(default)]
    pub(crate) failures: Vec<String>,
    #[serde(default)]
    pub(crate) runs: Vec<Run>,
}

impl Report {
    /// The scenario `id` as listed.
    pub(crate) fn scenario(&self, id: &str) -> Option<&ScenarioInfo> {
        self.scenarios.iter().find(|s| s.id == id)
    }

    /// The metric `id`, when the run has it.
    pub(crate) fn metric(&self, id: &str) -> Option<&MetricSummary> {
        self.metrics.iter().find(|m| m.id == id)
    }
}

/// Every metric of `defs` whose scenario ran, over the rounds of `runs`.
pub(crate) fn summarize(runs: &[Run], defs: &[MetricDef]) -> Vec<MetricSummary> {
    let value = |m: &MetricDef, server: Kind, round: usize| -> Option<f64> {
        runs.iter()
            .find(|r| r.scenario == m.scenario && r.server == server.name() && r.round == round)
            .and_then(|r| r.result.as_ref())
            .and_then(|f| (m.field)(f))
    };
    let rounds = runs.iter().map(|r| r.round + 1).max().unwrap_or(0);
    let mut out = Vec::new();
    for m in defs {
        if !runs.iter().any(|r| r.scenario == m.scenario) {
            continue;
        }
        let mut base = Vec::new();
        let mut prov = Vec::new();
        let mut ratio = Vec::new();
        for r in 0..rounds {
            let b = value(m, Kind::Baseline, r);
            let p = value(m, Kind::Provider, r);
            base.extend(b);
            prov.extend(p);
            if let (true, Some(b), Some(p)) = (m.ratio, b, p)
                && b > 0.0
            {
                ratio.push(p / b);
            }
        }
        let ratio = Stats::of(&ratio);
        let ws_provider = Stats::of(&prov);
        let target = m.goal.and_then(|g| {
            let (x, ok) = match g {
                Goal::RatioAtMost(t) => {
                    let x = ratio.as_ref()?.median;
                    (x, x <= t)
                }
                Goal::RatioAtLeast(t) => {
                    let x = ratio.as_ref()?.median;
                    (x, x >= t)
                }
                Goal::AtMost(t) => {
                    let x = ws_provider.as_ref()?.median;
                    (x, x <= t)
                }
                Goal::AtLeast(t) => {
                    let x = ws_provider.as_ref()?.median;
                    (x, x >= t)
                }
            };
            Some(Verdict {
                goal: g.describe(),
                value: x,
                met: ok,
            })
        });
        out.push(MetricSummary {
            id: m.id.clone(),
            scenario: m.scenario.clone(),
            label: m.label.clone(),
            unit: m.unit.to_owned(),
            better: m.better,
            baseline: Stats::of(&base),
            ws_provider,
            ratio,
            target,
            goal: m.goal.map(Goal::describe),
        });
    }
    out
}
