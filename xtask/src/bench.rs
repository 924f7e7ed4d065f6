//! `cargo xtask bench [--quick] [--json] [--rounds N] [--only LIST]`:
//! ws-provider against a baseline, in interleaved A/B rounds.
//!
//! It builds, in release, `ws-cli` (ws-provider with the demo components),
//! `ws-bench-baseline` (a minimal tuned tokio-tungstenite echo server kept
//! in the repo as the yardstick) and `ws-bench` (the load generator). For
//! every round and scenario it starts a fresh baseline, runs the scenario,
//! stops it, then does the same with ws-provider — so the two are measured
//! back to back under the same machine conditions. Servers run pinned to
//! core 0 and the load generator to core 1 when there are two cores or
//! more. Every figure of ws-provider is reported as a ratio to the baseline
//! of the same round, with the median and min–max over rounds; the results
//! go to `target/bench/results.json` and a chart to
//! `target/bench/chart.svg`.
//!
//! ws-provider runs with the full handshake pipeline on: the configuration
//! written to `target/bench/ws-provider.toml` turns on every known pipeline
//! key that `ws-cli check-config` lists (origin allow-list, connection and
//! message limits set high enough never to refuse the benchmark itself;
//! keys a `--provider-bin` build lacks are listed as missing in the report)
//! and one JWT aspect, `bench.user`: an HS256 secret made for the run
//! (`target/bench/bench-jwt.secret`) and a token signed with it, which
//! ws-bench sends as the cookie `bench_token` on every handshake of every
//! scenario — to the baseline too, which ignores it, so that the client
//! does the same work for both. Before the first round the bench asks
//! ws-provider's `/demo_echo_Whoami` with that cookie and stops unless the
//! aspect is logged in as the token's user: a token the server does not
//! accept would otherwise measure anonymous connections unnoticed.
//!
//! `--soak MINUTES` runs ws-provider alone under connect/disconnect churn
//! for that long (32 loops opening a connection, echoing or broadcasting
//! 0–3 messages on `/echo` or `/broadcast` and closing it, cleanly or by
//! dropping the socket, plus 500 connections opened and dropped together
//! every second), after a warm-up of a tenth of it (5 s to 60 s). It reads
//! the server's RSS and descriptors throughout and reports the RSS growth
//! per 100,000 connections after the warm-up (the least-squares slope of
//! RSS over connections opened) and the descriptors left open once the
//! churn stopped; the result goes to `soak.json` in the output directory.
//!
//! `--out DIR` puts the configuration, the secret, the logs and the results
//! somewhere else than `target/bench` (a second checkout's run must not
//! rewrite the files a running bench reads).
//!
//! Every process started is stopped by its pid; all traffic goes to
//! 127.0.0.0/8; every client run has a deadline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::util;

/// Connections per idle client process: below the 20,000 open files one
/// process may have here, with room to spare.
const IDLE_PER_PROCESS: usize = 15_000;
/// Source addresses (127.0.0.x) per idle client process.
const IDLE_SOURCES: usize = 8;

/// The JWT aspect of the bench configuration (issue 7: "one JWT aspect").
const ASPECT: &str = "bench.user";
/// The cookie its token travels in, on every handshake of every scenario.
const TOKEN_COOKIE: &str = "bench_token";
/// The user the token names (`sub`, the aspect's id).
const TOKEN_SUB: &str = "bench";
/// The token's `name` claim (the aspect's username).
const TOKEN_NAME: &str = "ws-bench";
/// How long the token is valid: far longer than any run.
const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// ws-provider's demo route (`ws-cli start`) that answers any message with
/// the connection's aspects.
const WHOAMI_PATH: &str = "/demo_echo_Whoami";

/// Run options from the command line.
#[derive(Debug)]
struct Opts {
    quick: bool,
    json: bool,
    rounds: Option<usize>,
    only: Option<Vec<String>>,
    provider_bin: Option<PathBuf>,
    report: Option<PathBuf>,
    out: Option<PathBuf>,
    /// `--soak MINUTES`.
    soak: Option<f64>,
}

fn parse_opts(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        quick: false,
        json: false,
        rounds: None,
        only: None,
        provider_bin: None,
        report: None,
        out: None,
        soak: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--json" => o.json = true,
            "--rounds" => {
                let n: usize = it
                    .next()
                    .context("--rounds needs a number")?
                    .parse()
                    .context("--rounds needs a number")?;
                if n == 0 {
                    bail!("--rounds must be at least 1");
                }
                o.rounds = Some(n);
            }
            "--only" => {
                let list = it.next().context("--only needs a list of scenarios")?;
                let names: Vec<String> = list.split(',').map(str::to_owned).collect();
                for n in &names {
                    if !SCENARIOS.iter().any(|s| s.id == n) {
                        bail!(
                            "unknown scenario `{n}`; known: {}",
                            SCENARIOS
                                .iter()
                                .map(|s| s.id)
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                }
                o.only = Some(names);
            }
            "--provider-bin" => {
                let p = PathBuf::from(it.next().context("--provider-bin needs a path")?);
                if !p.is_file() {
                    bail!("--provider-bin {}: no such file", p.display());
                }
                o.provider_bin = Some(p);
            }
            "--out" => {
                o.out = Some(PathBuf::from(it.next().context("--out needs a directory")?));
            }
            "--soak" => {
                let m: f64 = it
                    .next()
                    .context("--soak needs a number of minutes")?
                    .parse()
                    .context("--soak needs a number of minutes")?;
                if !(m > 0.0 && m <= 24.0 * 60.0) {
                    bail!("--soak takes minutes above 0, at most a day (1440)");
                }
                o.soak = Some(m);
            }
            "--report" => {
                o.report = Some(PathBuf::from(
                    it.next().context("--report needs a results JSON file")?,
                ));
            }
            "-h" | "--help" => {
                println!(
                    "usage: cargo xtask bench [--quick] [--json] [--rounds N] [--only SCENARIO,...]\n\
                     \x20                        [--provider-bin PATH-TO-ws-cli] [--out DIR (default target/bench)]\n\
                     \x20      cargo xtask bench --report RESULTS.json   (table and chart again)\n\
                     scenarios: {}",
                    SCENARIOS
                        .iter()
                        .map(|s| s.id)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                std::process::exit(0);
            }
            other => bail!("unknown option `{other}` for bench"),
        }
    }
    Ok(o)
}

/// Durations and sizes of one mode (quick or full).
#[derive(Clone, Debug)]
struct Plan {
    rounds: usize,
    warmup: f64,
    duration: f64,
    churn_secs: f64,
    churn_warmup: f64,
    idle_conns: usize,
    fanout_subscribers: usize,
}

impl Plan {
    fn new(o: &Opts) -> Self {
        let mut p = if o.quick {
            Self {
                rounds: 2,
                warmup: 0.3,
                duration: 1.0,
                churn_secs: 1.5,
                churn_warmup: 0.5,
                idle_conns: 10_000,
                fanout_subscribers: 2_000,
            }
        } else {
            Self {
                rounds: 3,
                warmup: 1.0,
                duration: 5.0,
                churn_secs: 10.0,
                churn_warmup: 1.0,
                idle_conns: 10_000,
                fanout_subscribers: 10_000,
            }
        };
        if let Some(r) = o.rounds {
            p.rounds = r;
        }
        p
    }
}

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Baseline,
    Provider,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Provider => "ws-provider",
        }
    }
}

/// One scenario of the bench.
struct ScenarioDef {
    id: &'static str,
    title: &'static str,
    /// Only ws-provider has what it needs (the baseline is reported n/a).
    provider_only: bool,
}

const SCENARIOS: &[ScenarioDef] = &[
    ScenarioDef {
        id: "echo64",
        title: "pipelined echo, 64 B, 100 connections × window 16",
        provider_only: false,
    },
    ScenarioDef {
        id: "echo16k",
        title: "pipelined echo, 16 KiB, 50 connections × window 4",
        provider_only: false,
    },
    ScenarioDef {
        id: "pingpong",
        title: "ping-pong latency, 64 B, 16 connections, 1 in flight each",
        provider_only: false,
    },
    ScenarioDef {
        id: "idle",
        title: "idle connections memory",
        provider_only: false,
    },
    ScenarioDef {
        id: "handshake",
        title: "handshake rate, connect → upgrade → close, 16 concurrent",
        provider_only: false,
    },
    ScenarioDef {
        id: "fanout",
        title: "broadcast fan-out on /broadcast, 64 B",
        provider_only: true,
    },
    ScenarioDef {
        id: "churn",
        title: "connect/disconnect churn soak",
        provider_only: false,
    },
];

/// Which way is better for a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Better {
    Lower,
    Higher,
}

/// A target of issue 7 for one metric.
#[derive(Clone, Copy, Debug)]
enum Goal {
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
    fn describe(self) -> String {
        match self {
            Self::RatioAtMost(r) => format!("≤ {r}× baseline"),
            Self::RatioAtLeast(r) => format!("≥ {r}× baseline"),
            Self::AtMost(v) => format!("≤ {v}"),
            Self::AtLeast(v) => format!("≥ {v}"),
        }
    }
}

/// A reported figure: which scenario's result field it is.
struct MetricDef {
    id: &'static str,
    scenario: &'static str,
    label: &'static str,
    unit: &'static str,
    field: &'static str,
    better: Better,
    /// Whether a ratio means something (not for counts that are ~0).
    ratio: bool,
    goal: Option<Goal>,
}

const METRICS: &[MetricDef] = &[
    MetricDef {
        id: "echo64_cpu",
        scenario: "echo64",
        label: "server CPU per echo, 64 B",
        unit: "µs",
        field: "server_cpu_us_per_event",
        better: Better::Lower,
        ratio: true,
        goal: Some(Goal::RatioAtMost(1.05)),
    },
    MetricDef {
        id: "echo64_core",
        scenario: "echo64",
        label: "server core busy per echo, 64 B (incl. softirq)",
        unit: "µs",
        field: "core_cpu_us_per_event",
        better: Better::Lower,
        ratio: true,
        goal: None,
    },
    MetricDef {
        id: "echo64_rate",
        scenario: "echo64",
        label: "echoes/s, 64 B",
        unit: "msg/s",
        field: "rate",
        better: Better::Higher,
        ratio: true,
        goal: None,
    },
    MetricDef {
        id: "echo16k_cpu",
        scenario: "echo16k",
        label: "server CPU per echo, 16 KiB",
        unit: "µs",
        field: "server_cpu_us_per_event",
        better: Better::Lower,
        ratio: true,
        goal: Some(Goal::RatioAtMost(1.1)),
    },
    MetricDef {
        id: "echo16k_core",
        scenario: "echo16k",
        label: "server core busy per echo, 16 KiB (incl. softirq)",
        unit: "µs",
        field: "core_cpu_us_per_event",
        better: Better::Lower,
        ratio: true,
        goal: None,
    },
    MetricDef {
        id: "echo16k_rate",
        scenario: "echo16k",
        label: "echoes/s, 16 KiB",
        unit: "msg/s",
        field: "rate",
        better: Better::Higher,
        ratio: true,
        goal: None,
    },
    MetricDef {
        id: "pingpong_p50",
        scenario: "pingpong",
        label: "ping-pong round trip p50",
        unit: "µs",
        field: "p50_us",
        better: Better::Lower,
        ratio: true,
        goal: None,
    },
    MetricDef {
        id: "pingpong_p99",
        scenario: "pingpong",
        label: "ping-pong round trip p99",
        unit: "µs",
        field: "p99_us",
        better: Better::Lower,
        ratio: true,
        goal: Some(Goal::RatioAtMost(1.1)),
    },
    MetricDef {
        id: "pingpong_p999",
        scenario: "pingpong",
        label: "ping-pong round trip p99.9",
        unit: "µs",
        field: "p999_us",
        better: Better::Lower,
        ratio: true,
        goal: None,
    },
    MetricDef {
        id: "pingpong_cpu",
        scenario: "pingpong",
        label: "server CPU per round trip",
        unit: "µs",
        field: "server_cpu_us_per_event",
        better: Better::Lower,
        ratio: true,
        goal: None,
    },
    MetricDef {
        id: "idle_rss",
        scenario: "idle",
        label: "idle memory per connection, RSS",
        unit: "KiB",
        field: "rss_per_conn_kib",
        better: Better::Lower,
        ratio: true,
        goal: Some(Goal::AtMost(4.0)),
    },
    MetricDef {
        id: "idle_pss",
        scenario: "idle",
        label: "idle memory per connection, PSS",
        unit: "KiB",
        field: "pss_per_conn_kib",
        better: Better::Lower,
        ratio: true,
        goal: Some(Goal::AtMost(4.0)),
    },
    MetricDef {
        id: "handshake_rate",
        scenario: "handshake",
        label: "handshakes/s",
        unit: "1/s",
        field: "rate",
        better: Better::Higher,
        ratio: true,
        goal: Some(Goal::RatioAtLeast(0.9)),
    },
    MetricDef {
        id: "handshake_cpu",
        scenario: "handshake",
        label: "server CPU per handshake",
        unit: "µs",
        field: "server_cpu_us_per_event",
        better: Better::Lower,
        ratio: true,
        goal: None,
    },
    MetricDef {
        id: "fanout_rate",
        scenario: "fanout",
        label: "broadcast deliveries/s",
        unit: "1/s",
        field: "rate",
        better: Better::Higher,
        ratio: false,
        goal: Some(Goal::AtLeast(500_000.0)),
    },
    MetricDef {
        id: "fanout_p99",
        scenario: "fanout",
        label: "broadcast delivery latency p99",
        unit: "µs",
        field: "p99_us",
        better: Better::Lower,
        ratio: false,
        goal: None,
    },
    MetricDef {
        id: "churn_rate",
        scenario: "churn",
        label: "churn cycles/s",
        unit: "1/s",
        field: "rate",
        better: Better::Higher,
        ratio: true,
        goal: None,
    },
    MetricDef {
        id: "churn_rss",
        scenario: "churn",
        label: "RSS growth over the soak",
        unit: "KiB",
        field: "rss_growth_kib",
        better: Better::Lower,
        ratio: false,
        goal: None,
    },
    MetricDef {
        id: "churn_fds",
        scenario: "churn",
        label: "fds left open after the soak",
        unit: "fds",
        field: "fd_delta",
        better: Better::Lower,
        ratio: false,
        goal: Some(Goal::AtMost(0.0)),
    },
];

/// The built executables.
#[derive(Debug)]
struct Bins {
    cli: PathBuf,
    bench: PathBuf,
    baseline: PathBuf,
}

/// Everything a run needs to know.
#[derive(Debug)]
struct Env {
    bins: Bins,
    out: PathBuf,
    logs: PathBuf,
    config: PathBuf,
    /// (server core, client core) when pinning.
    pin: Option<(usize, usize)>,
    plan: Plan,
    /// `NAME=TOKEN`: the cookie every handshake sends, to both servers.
    cookie: String,
}

/// `cargo xtask bench`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let opts = parse_opts(args)?;
    if let Some(file) = &opts.report {
        return report_again(file);
    }
    let plan = Plan::new(&opts);
    let started = Instant::now();
    let out = match &opts.out {
        // Absolute: the key file's path goes into ws-provider's configuration.
        Some(dir) => std::path::absolute(dir)
            .with_context(|| format!("--out {}: no absolute path", dir.display()))?,
        None => util::root().join("target").join("bench"),
    };
    let logs = out.join("logs");
    if logs.exists() {
        std::fs::remove_dir_all(&logs)
            .with_context(|| format!("cannot clear {}", logs.display()))?;
    }
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let bins = build(opts.provider_bin.clone())?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let taskset = Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let pin = (cores >= 2 && taskset).then_some((0, 1));
    if pin.is_none() {
        eprintln!(
            "xtask bench: {cores} core(s){}: server and client are not pinned; \
             CPU figures stay valid, rates and latencies are not comparable to pinned runs",
            if taskset { "" } else { ", no taskset" }
        );
    }
    let config = out.join("ws-provider.toml");
    let mut hooks = write_provider_config(&bins.cli, &config, &out.join("state"))?;
    let env = Env {
        bins,
        out: out.clone(),
        logs,
        config,
        pin,
        plan,
        cookie: hooks.cookie.clone(),
    };
    let aspect_check = match hooks.aspect {
        Some(i) => {
            let seen = check_aspect(&env)?;
            let _ = write!(
                hooks.applied[i],
                "; checked: {WHOAMI_PATH} reports it logged in as {}",
                seen["username"]
            );
            seen
        }
        None => Value::Null,
    };
    let machine = machine_info(cores, pin);
    if let Some(minutes) = opts.soak {
        return soak(&env, minutes, machine, &hooks, started);
    }
    let scenarios: Vec<&ScenarioDef> = SCENARIOS
        .iter()
        .filter(|s| {
            opts.only
                .as_ref()
                .is_none_or(|o| o.iter().any(|n| n == s.id))
        })
        .collect();
    eprintln!(
        "xtask bench: {} mode, {} round(s), scenarios: {}",
        if opts.quick { "quick" } else { "full" },
        env.plan.rounds,
        scenarios
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut runs: Vec<Value> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut unavailable: BTreeMap<&str, String> = BTreeMap::new();
    for round in 0..env.plan.rounds {
        for s in &scenarios {
            for kind in [Kind::Baseline, Kind::Provider] {
                if s.provider_only && kind == Kind::Baseline {
                    continue;
                }
                if unavailable.contains_key(s.id) {
                    continue;
                }
                let t = Instant::now();
                let result = run_one(&env, s, kind, round);
                let secs = t.elapsed().as_secs_f64();
                match result {
                    Ok(v) => {
                        if v["available"] == false {
                            let why = format!(
                                "not available: {} answered HTTP {} (the route does not exist yet)",
                                kind.name(),
                                v["status"]
                            );
                            eprintln!("xtask bench: {}: {why}", s.id);
                            unavailable.insert(s.id, why);
                        } else {
                            eprintln!(
                                "xtask bench: round {} {:<9} {:<11} {}",
                                round + 1,
                                s.id,
                                kind.name(),
                                brief(s.id, &v)
                            );
                        }
                        if let Some(n) = v["errors"].as_u64().filter(|&n| n > 0) {
                            eprintln!(
                                "xtask bench:   {n} client error(s), first: {}",
                                v["first_error"]
                            );
                        }
                        runs.push(json!({
                            "scenario": s.id, "server": kind.name(), "round": round,
                            "wall_secs": secs, "result": v,
                        }));
                    }
                    Err(e) => {
                        let mut msg =
                            format!("round {} {} {}: {e:#}", round + 1, s.id, kind.name());
                        if msg.contains("HTTP 429") && !hooks.missing.is_empty() {
                            msg.push_str(
                                " — ws-provider's limiter refused the bench, and ws-cli has no \
                                 key yet to raise its limits (see `missing` below); bench a \
                                 build whose limits can be configured, e.g. with --provider-bin",
                            );
                        }
                        eprintln!("xtask bench: FAILED {msg}");
                        failures.push(msg);
                        runs.push(json!({
                            "scenario": s.id, "server": kind.name(), "round": round,
                            "wall_secs": secs, "error": format!("{e:#}"),
                        }));
                    }
                }
            }
        }
    }

    let metrics = summarize(&runs, &scenarios);
    let report = json!({
        "mode": if opts.quick { "quick" } else { "full" },
        "rounds": env.plan.rounds,
        "plan": {
            "warmup_secs": env.plan.warmup, "duration_secs": env.plan.duration,
            "churn_secs": env.plan.churn_secs, "idle_conns": env.plan.idle_conns,
            "fanout_subscribers": env.plan.fanout_subscribers,
        },
        "machine": machine,
        "load_after": loadavg(),
        "wall_secs": started.elapsed().as_secs_f64(),
        "provider_config": {
            "file": env.config.display().to_string(),
            "applied": hooks.applied,
            "missing": hooks.missing,
            "aspect_check": aspect_check,
        },
        "scenarios": scenarios.iter().map(|s| json!({
            "id": s.id, "title": s.title,
            "unavailable": unavailable.get(s.id),
            "baseline": if s.provider_only { "n/a for baseline" } else { "measured" },
        })).collect::<Vec<_>>(),
        "metrics": metrics,
        "failures": failures,
        "runs": runs,
    });
    let text = serde_json::to_string_pretty(&report)?;
    std::fs::write(env.out.join("results.json"), &text)?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    std::fs::write(env.out.join(format!("results-{stamp}.json")), &text)?;
    let chart = env.out.join("chart.svg");
    if let Err(e) = draw_chart(&chart, &report) {
        eprintln!("xtask bench: no chart: {e:#}");
    }
    let table = render_table(&report);
    if opts.json {
        eprint!("{table}");
        println!("{text}");
    } else {
        print!("{table}");
    }
    eprintln!(
        "xtask bench: results in {}, chart in {} ({})",
        env.out.join("results.json").display(),
        chart.display(),
        util_human(started.elapsed())
    );
    if !failures.is_empty() {
        bail!("{} run(s) failed: {}", failures.len(), failures.join("; "));
    }
    Ok(())
}

/// `--soak MINUTES`: see the module's documentation.
fn soak(env: &Env, minutes: f64, machine: Value, hooks: &Hooks, started: Instant) -> Result<()> {
    let secs = minutes * 60.0;
    let warmup = (secs / 10.0).clamp(5.0, 60.0);
    // About a hundred readings, at most one every 30 s.
    let sample = (secs / 100.0).clamp(0.5, 30.0);
    eprintln!(
        "xtask bench: soak of {minutes} min after {warmup} s of warm-up, readings every {sample} s"
    );
    let log = env.logs.join("soak-ws-provider.log");
    let mut server = Server::start(env, Kind::Provider, &log)?;
    let mut args: Vec<String> = [
        "churn",
        "--addr",
        &server.addr.to_string(),
        "--server-pid",
        &server.pid.to_string(),
        "--warmup",
        &warmup.to_string(),
        "--duration",
        &secs.to_string(),
        "--concurrency",
        "32",
        "--burst",
        "500",
        "--sources",
        "8",
        "--broadcast-path",
        "/broadcast",
        "--sample-secs",
        &sample.to_string(),
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    args.extend(cookie_args(env));
    let client = Client::start(env, &args, false)?;
    let result = client.finish(Duration::from_secs_f64(warmup + secs + 120.0));
    let stopped = server.stop();
    let mut v = result?;
    stopped?;
    if let (Some(a), Some(b), Some(o)) = (
        v["fds_after"].as_f64(),
        v["fds_before"].as_f64(),
        v.as_object_mut(),
    ) {
        // Counts of descriptors: whole numbers.
        #[allow(clippy::cast_possible_truncation)]
        o.insert("fds_left_open".into(), ((a - b).max(0.0) as u64).into());
    }
    let report = json!({
        "mode": "soak",
        "minutes": minutes,
        "warmup_secs": warmup,
        "machine": machine,
        "load_after": loadavg(),
        "wall_secs": started.elapsed().as_secs_f64(),
        "provider_config": {
            "file": env.config.display().to_string(),
            "applied": hooks.applied,
            "missing": hooks.missing,
        },
        "result": v,
    });
    let text = serde_json::to_string_pretty(&report)?;
    std::fs::write(env.out.join("soak.json"), &text)?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    std::fs::write(env.out.join(format!("soak-{stamp}.json")), &text)?;
    let v = &report["result"];
    let samples = v["samples"].as_array().map_or(&[][..], Vec::as_slice);
    let rss: Vec<f64> = samples
        .iter()
        .filter_map(|s| s["rss_kib"].as_f64())
        .collect();
    let (lo, hi) = rss
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    println!(
        "soak: {:.1} min, {} connections ({:.0}/s; {} by the churn loops, {} in bursts), \
         {} client error(s)",
        v["secs"].as_f64().unwrap_or(0.0) / 60.0,
        v["connections"],
        v["connections"].as_f64().unwrap_or(0.0) / v["secs"].as_f64().unwrap_or(1.0),
        v["cycles"],
        v["burst_connections"],
        v["errors"],
    );
    println!(
        "soak: server RSS {} KiB after the warm-up, {} KiB at the end (readings {lo:.0}–{hi:.0} \
         KiB); growth {:.1} KiB per 100,000 connections",
        v["rss_before_kib"],
        v["rss_after_kib"],
        v["rss_growth_kib_per_100k_connections"]
            .as_f64()
            .unwrap_or(f64::NAN),
    );
    println!(
        "soak: descriptors {} before, {} after ({} left open)",
        v["fds_before"], v["fds_after"], v["fds_left_open"]
    );
    eprintln!(
        "xtask bench: soak results in {} ({})",
        env.out.join("soak.json").display(),
        util_human(started.elapsed())
    );
    check_errors("churn", v)?;
    if v["fds_left_open"].as_f64().unwrap_or(0.0) > 0.0 {
        bail!("the soak left {} descriptor(s) open", v["fds_left_open"]);
    }
    Ok(())
}

/// `--report FILE`: the table and the chart (next to the file) of a
/// results JSON written by an earlier run.
fn report_again(file: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let report: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let chart = file.with_extension("svg");
    draw_chart(&chart, &report)?;
    print!("{}", render_table(&report));
    eprintln!("xtask bench: chart in {}", chart.display());
    Ok(())
}

fn util_human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// A one-line summary of a result, for progress output.
fn brief(scenario: &str, v: &Value) -> String {
    let mut s = brief_figures(scenario, v);
    // Accept-queue overflows and SYN retransmissions (1 s each) distort
    // rates; they are machine-wide, so another process may cause them.
    if let Some(k) = v["kernel_tcp"]
        .as_object()
        .filter(|k| k.contains_key("ListenOverflows") || k.contains_key("TCPSynRetrans"))
    {
        let _ = write!(s, " [kernel TCP: {}]", Value::Object(k.clone()));
    }
    s
}

fn brief_figures(scenario: &str, v: &Value) -> String {
    let f = |k: &str| v[k].as_f64().map_or("-".to_owned(), fmt_num);
    match scenario {
        "echo64" | "echo16k" => format!(
            "{} msg/s, {} µs CPU/msg (server util {}, client util {})",
            f("rate"),
            f("server_cpu_us_per_event"),
            f("server_util"),
            f("client_util")
        ),
        "pingpong" => format!(
            "p50 {} µs, p99 {} µs, p99.9 {} µs",
            f("p50_us"),
            f("p99_us"),
            f("p999_us")
        ),
        "idle" => format!(
            "{} conns: RSS {} KiB/conn, PSS {} KiB/conn",
            f("conns"),
            f("rss_per_conn_kib"),
            f("pss_per_conn_kib")
        ),
        "handshake" => format!(
            "{} handshakes/s, {} µs CPU each",
            f("rate"),
            f("server_cpu_us_per_event")
        ),
        "fanout" => format!("{} deliveries/s, p99 {} µs", f("rate"), f("p99_us")),
        "churn" => format!(
            "{} cycles/s (cycle p99 {} µs), fds {} → {}, RSS {} → {} KiB",
            f("rate"),
            v["cycle"]["p99_us"]
                .as_f64()
                .map_or("-".to_owned(), fmt_num),
            f("fds_before"),
            f("fds_after"),
            f("rss_before_kib"),
            f("rss_after_kib")
        ),
        _ => v.to_string(),
    }
}

// ---------------------------------------------------------------- build

/// The baseline's own workspace, relative to the repository root.
pub(crate) const BASELINE_MANIFEST: &str = "crates/ws-bench-baseline/Cargo.toml";

/// Builds the load generator, the baseline and (unless `provider` names a
/// prebuilt one) `ws-cli`, in release.
fn build(provider: Option<PathBuf>) -> Result<Bins> {
    // The baseline is a workspace of its own (on the unpatched tungstenite,
    // see its Cargo.toml), built into the same target directory.
    let target_dir = util::target_dir();
    let baseline = util::cargo_build_bin(
        &[
            "build",
            "--release",
            "--manifest-path",
            BASELINE_MANIFEST,
            "--target-dir",
            &target_dir.to_string_lossy(),
        ],
        "ws-bench-baseline",
    )?;
    let mut args = vec!["build", "--release", "-p", "ws-bench"];
    if provider.is_none() {
        args.extend(["-p", "ws-cli"]);
    }
    args.push("--message-format=json-render-diagnostics");
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut child = util::cargo_cmd()
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo build")?;
    let stdout = child.stdout.take().context("cargo's stdout is not piped")?;
    let mut exes: BTreeMap<String, PathBuf> = BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && let (Some(name), Some(exe)) =
                (msg["target"]["name"].as_str(), msg["executable"].as_str())
        {
            exes.insert(name.to_owned(), PathBuf::from(exe));
        }
    }
    let status = child.wait().context("cannot wait for cargo")?;
    if !status.success() {
        bail!("cargo build --release failed ({status})");
    }
    let mut take = |name: &str| {
        exes.remove(name)
            .with_context(|| format!("cargo reported no executable `{name}`"))
    };
    Ok(Bins {
        cli: match provider {
            Some(p) => p,
            None => take("ws-cli")?,
        },
        bench: take("ws-bench")?,
        baseline,
    })
}

// ------------------------------------------------------ provider config

/// Which pipeline settings the generated configuration could turn on.
#[derive(Debug, Default)]
struct Hooks {
    applied: Vec<String>,
    missing: Vec<String>,
    /// The index in `applied` of the JWT aspect, when it is on.
    aspect: Option<usize>,
    /// `NAME=TOKEN`: the aspect's credential, which ws-bench sends on every
    /// handshake (to both servers, whether the aspect is on or not).
    cookie: String,
}

/// Settings that put the handshake pipeline and the limits to work without
/// refusing the benchmark's own connections: every key is applied only
/// where `ws-cli check-config` lists it, in the section it lists it in.
/// The load generator sends `Origin: http://localhost`, so the origin check
/// runs (and passes) on every handshake.
const PIPELINE_KEYS: &[(&str, &str, &str)] = &[
    ("allowed_origins", r#"["localhost"]"#, "origin check"),
    ("max_connections", "100000", "limiter: open connections"),
    (
        "max_connections_per_address",
        "100000",
        "limiter: connections per address",
    ),
    (
        "max_connections_per_address_per_second",
        "10000000",
        "limiter: new connections per address per second",
    ),
    (
        "max_messages_per_second",
        "1000000000",
        "limiter: messages per connection per second",
    ),
    (
        "max_messages_per_address_per_second",
        "1000000000",
        "limiter: messages per address per second",
    ),
];

/// The `(section, key)` pairs `ws-cli check-config` prints.
fn known_keys(cli: &Path) -> Result<Vec<(String, String)>> {
    let mut cmd = Command::new(cli);
    cmd.arg("check-config");
    clear_ws_env(&mut cmd);
    let out = cmd.output().context("cannot run ws-cli check-config")?;
    if !out.status.success() {
        bail!(
            "ws-cli check-config failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim();
        if line.starts_with("[[") {
            // Arrays of tables (per-route overrides): not ours to set.
            section = "[[".to_owned();
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_owned();
        } else if let Some((k, _)) = line.split_once('=')
            && !line.starts_with('#')
            && section != "[["
        {
            keys.push((section.clone(), k.trim().to_owned()));
        }
    }
    Ok(keys)
}

/// `ws-cli` reads `WS_*` variables; the bench's server must not.
fn clear_ws_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("WS_") {
            cmd.env_remove(k);
        }
    }
}

/// Writes to `file` the configuration the bench runs ws-provider with:
/// every handshake pipeline key `ws-cli check-config` knows turned on with
/// limits that refuse nothing of a test's own, and one JWT aspect (a fresh
/// secret next to `file`). Returns what it turned on and what this `cli`
/// lacks. A client without the aspect's cookie connects anonymously.
pub(crate) fn write_pipeline_config(
    cli: &Path,
    file: &Path,
    state: &Path,
) -> Result<(Vec<String>, Vec<String>)> {
    let hooks = write_provider_config(cli, file, state)?;
    Ok((hooks.applied, hooks.missing))
}

fn write_provider_config(cli: &Path, file: &Path, state: &Path) -> Result<Hooks> {
    let keys = known_keys(cli)?;
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let state_str = serde_json::to_string(&state.display().to_string())?;
    for (k, v) in [
        ("host", r#""127.0.0.1""#.to_owned()),
        ("port", "0".to_owned()),
        ("state_dir", state_str),
    ] {
        if let Some((sec, _)) = keys.iter().find(|(_, key)| key == k) {
            sections
                .entry(sec.clone())
                .or_default()
                .push((k.to_owned(), v));
        }
    }
    let mut hooks = Hooks::default();
    for (key, value, what) in PIPELINE_KEYS {
        match keys.iter().find(|(_, k)| k == key) {
            Some((sec, _)) => {
                sections
                    .entry(sec.clone())
                    .or_default()
                    .push(((*key).to_owned(), (*value).to_owned()));
                hooks
                    .applied
                    .push(format!("{sec}.{key} = {value} ({what})"));
            }
            None => hooks
                .missing
                .push(format!("{key} ({what}): ws-cli has no such key yet")),
        }
    }
    // Issue 7's pipeline also has one JWT aspect: a secret made for this
    // run, and a token signed with it that ws-bench sends as a cookie.
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key_file = dir.join("bench-jwt.secret");
    let token = make_token(&key_file)?;
    hooks.cookie = format!("{TOKEN_COOKIE}={token}");
    let aspect = aspect_toml(&key_file)?;
    let mut text = String::from(
        "# Written by `cargo xtask bench`: ws-provider with every pipeline key that\n\
         # `ws-cli check-config` knows turned on, limits high enough never to refuse\n\
         # the benchmark's own connections, and one JWT aspect whose token ws-bench\n\
         # sends on every handshake. Regenerated (with a new secret) on every run.\n",
    );
    for (sec, kvs) in &sections {
        let _ = write!(text, "\n[{sec}]\n");
        for (k, v) in kvs {
            let _ = writeln!(text, "{k} = {v}");
        }
    }
    let check = |text: &str| -> Result<std::result::Result<(), String>> {
        std::fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))?;
        let mut cmd = Command::new(cli);
        cmd.arg("check-config").arg("--config").arg(file);
        clear_ws_env(&mut cmd);
        let out = cmd.output().context("cannot run ws-cli check-config")?;
        Ok(if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        })
    };
    let what = "one JWT aspect";
    match check(&format!("{text}{aspect}"))? {
        Ok(()) => {
            hooks.aspect = Some(hooks.applied.len());
            hooks.applied.push(format!(
                "[[aspect]] name = \"{ASPECT}\", credential = {{ cookie = \"{TOKEN_COOKIE}\" }}, \
                 jwt HS256 with key_file {} ({what}: every handshake sends a token for \
                 sub \"{TOKEN_SUB}\")",
                key_file.display()
            ));
        }
        // A `--provider-bin` build from before authentication existed.
        Err(e) if e.contains("unknown field `aspect`") => {
            hooks.missing.push(format!(
                "{what} ([[aspect]] with [aspect.jwt]): this ws-cli has no [[aspect]] yet"
            ));
            if let Err(e) = check(&text)? {
                bail!(
                    "ws-cli rejects the bench configuration {}: {e}",
                    file.display()
                );
            }
        }
        Err(e) => bail!(
            "ws-cli rejects the bench configuration {}: {e}",
            file.display()
        ),
    }
    for m in &hooks.missing {
        eprintln!("xtask bench: not on in this run: {m}");
    }
    Ok(hooks)
}

/// Makes a fresh HS256 secret (64 hex digits from `/dev/urandom`), writes
/// it to `key_file` (mode 0600), and returns a JWT signed with it: `sub`
/// [`TOKEN_SUB`], `name` [`TOKEN_NAME`], `iat` now and `exp`
/// [`TOKEN_LIFETIME`] later.
fn make_token(key_file: &Path) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt as _;

    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .context("cannot read /dev/urandom for the bench's JWT secret")?;
    let secret: String = random.iter().map(|b| format!("{b:02x}")).collect();
    // Removed first: the mode applies to new files only.
    let _ = std::fs::remove_file(key_file);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(key_file)
        .and_then(|mut f| f.write_all(secret.as_bytes()))
        .with_context(|| format!("cannot write {}", key_file.display()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let claims = json!({
        "sub": TOKEN_SUB,
        "name": TOKEN_NAME,
        "iat": now,
        "exp": now + TOKEN_LIFETIME.as_secs(),
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("cannot sign the bench's JWT")
}

/// The `[[aspect]]` table of the bench configuration (appended last: in
/// TOML everything after `[[aspect]]` belongs to it).
fn aspect_toml(key_file: &Path) -> Result<String> {
    let key_file = serde_json::to_string(&key_file.display().to_string())?;
    Ok(format!(
        "\n# One JWT aspect: ws-bench sends the token as the cookie `{TOKEN_COOKIE}`.\n\
         [[aspect]]\n\
         name = \"{ASPECT}\"\n\
         credential = {{ cookie = \"{TOKEN_COOKIE}\" }}\n\
         \n\
         [aspect.jwt]\n\
         algorithm = \"HS256\"\n\
         key_file = {key_file}\n\
         \n\
         [aspect.jwt.claims]\n\
         id = \"sub\"\n\
         username = \"name\"\n"
    ))
}

/// Asks a ws-provider started for this alone, on [`WHOAMI_PATH`] with the
/// bench's cookie, who is on the connection; fails unless [`ASPECT`] is
/// logged in as the token's user. Returns what it reported of the aspect.
fn check_aspect(env: &Env) -> Result<Value> {
    let log = env.logs.join("aspect-check-ws-provider.log");
    let mut server = Server::start(env, Kind::Provider, &log)?;
    let mut args: Vec<String> = [
        "probe",
        "--addr",
        &server.addr.to_string(),
        "--path",
        WHOAMI_PATH,
        "--message",
        "whoami",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(cookie_args(env));
    let answer = Client::start(env, &args, false).and_then(|c| c.finish(Duration::from_secs(30)));
    let stopped = server.stop();
    let answer = answer.with_context(|| {
        format!(
            "cannot check the JWT aspect `{ASPECT}`: no answer from ws-provider's \
             {WHOAMI_PATH} (server log: {})",
            log.display()
        )
    })?;
    stopped?;
    let reply = answer["reply"].as_str().unwrap_or_default();
    let seen = logged_in_aspect(reply).with_context(|| {
        format!(
            "JWT aspect check before measuring (configuration: {}, server log: {})",
            env.config.display(),
            log.display()
        )
    })?;
    eprintln!(
        "xtask bench: JWT aspect `{ASPECT}` checked on {WHOAMI_PATH}: logged in as id {}, \
         username {}",
        seen["id"], seen["username"]
    );
    Ok(seen)
}

/// [`ASPECT`] in the answer of `demo_echo::Whoami`, when it is logged in as
/// the token's user.
fn logged_in_aspect(reply: &str) -> Result<Value> {
    let who: Value = serde_json::from_str(reply).with_context(|| {
        format!("{WHOAMI_PATH} answered {reply:?}, not the JSON of demo_echo::Whoami")
    })?;
    let seen = &who["aspects"][ASPECT];
    if seen["logged_in"] != true || seen["id"] != TOKEN_SUB {
        bail!(
            "the JWT aspect `{ASPECT}` does not resolve: with the bench's token in the \
             cookie `{TOKEN_COOKIE}`, ws-provider's {WHOAMI_PATH} reports it as {seen} \
             (expected logged in as id \"{TOKEN_SUB}\"); all aspects: {}. The bench stops \
             rather than measure anonymous connections",
            who["aspects"]
        );
    }
    Ok(seen.clone())
}

/// The ws-bench arguments that send the bench's cookie.
fn cookie_args(env: &Env) -> [String; 2] {
    ["--cookie".to_owned(), env.cookie.clone()]
}

// ------------------------------------------------------------ processes

/// A command run through `sh` so that its soft limit of open files is
/// raised to the hard limit first, pinned to `core` with `taskset` when
/// given. `exec` keeps the pid: the child's pid is the program's.
fn pinned(core: Option<usize>, exe: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@""#)
        .arg("sh");
    if let Some(c) = core {
        cmd.arg("taskset").arg("-c").arg(c.to_string());
    }
    cmd.arg(exe);
    cmd
}

/// Reads a child's output lines on a thread.
fn lines_of(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                // Nobody listens any more: keep draining so the child never
                // blocks on a full pipe.
                continue;
            }
        }
    });
    rx
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().context("cannot wait for a child")? {
            return Ok(Some(s));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
    }
}

/// A running server, stopped by pid when dropped.
struct Server {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    name: &'static str,
}

impl Server {
    fn start(env: &Env, kind: Kind, log: &Path) -> Result<Self> {
        let exe = match kind {
            Kind::Baseline => &env.bins.baseline,
            Kind::Provider => &env.bins.cli,
        };
        let mut cmd = pinned(env.pin.map(|p| p.0), exe);
        match kind {
            Kind::Baseline => {
                cmd.args(["--host", "127.0.0.1", "--port", "0"]);
            }
            Kind::Provider => {
                cmd.args(["start", "--host", "127.0.0.1", "--port", "0", "--config"])
                    .arg(&env.config);
                clear_ws_env(&mut cmd);
            }
        }
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("server stdout not piped")?;
        let lines = lines_of(stdout);
        let mut server = Self {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            name: kind.name(),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("WebSocket server running on ") {
                        let (addr, said_pid) = rest
                            .split_once(" with pid ")
                            .with_context(|| format!("unexpected line {line:?}"))?;
                        server.addr = addr
                            .parse()
                            .with_context(|| format!("bad address in {line:?}"))?;
                        if said_pid.trim() != pid.to_string() {
                            bail!("{} says pid {said_pid}, started as {pid}", kind.name());
                        }
                        if !server.addr.ip().is_loopback() {
                            bail!("{} listens on {}, not loopback", kind.name(), server.addr);
                        }
                        // Keep draining the rest (ws-cli prints its routes).
                        std::thread::spawn(move || for _ in lines {});
                        return Ok(server);
                    }
                }
                Err(_) => {
                    let mut err = String::new();
                    let _ = std::fs::File::open(log).and_then(|mut f| f.read_to_string(&mut err));
                    bail!(
                        "{} did not report its address within 15 s: {}",
                        kind.name(),
                        err.trim()
                    );
                }
            }
        }
    }

    /// SIGTERM, up to 10 s for a graceful exit, then SIGKILL.
    fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            bail!("{} (pid {}) exited during the run", self.name, self.pid);
        }
        signal(self.pid, nix::sys::signal::Signal::SIGTERM);
        if wait_timeout(&mut self.child, Duration::from_secs(10))?.is_none() {
            signal(self.pid, nix::sys::signal::Signal::SIGKILL);
            let _ = self.child.wait();
            bail!("{} (pid {}) ignored SIGTERM for 10 s", self.name, self.pid);
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.pid, nix::sys::signal::Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// A running client, killed by pid when dropped before it ends.
struct Client {
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Client {
    fn start(env: &Env, args: &[String], stdin: bool) -> Result<Self> {
        let mut cmd = pinned(env.pin.map(|p| p.1), &env.bins.bench);
        cmd.args(args)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("cannot start ws-bench")?;
        let pid = child.id();
        let lines = lines_of(child.stdout.take().context("client stdout not piped")?);
        let stderr = lines_of(child.stderr.take().context("client stderr not piped")?);
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            pid,
            stdin,
            lines,
            stderr,
        })
    }

    /// Waits for the client to end within `limit`; its last stdout line as JSON.
    fn finish(mut self, limit: Duration) -> Result<Value> {
        drop(self.stdin.take());
        let status = match wait_timeout(&mut self.child, limit)? {
            Some(s) => s,
            None => {
                signal(self.pid, nix::sys::signal::Signal::SIGKILL);
                let _ = self.child.wait();
                bail!(
                    "ws-bench (pid {}) did not finish within {limit:?}",
                    self.pid
                );
            }
        };
        let err: Vec<String> = self.stderr.try_iter().collect();
        if !status.success() {
            bail!("ws-bench failed ({status}): {}", err.join(" | "));
        }
        let out: Vec<String> = self
            .lines
            .recv_timeout(Duration::from_secs(2))
            .into_iter()
            .chain(self.lines.try_iter())
            .collect();
        let last = out.last().context("ws-bench printed no result")?;
        serde_json::from_str(last).with_context(|| format!("ws-bench printed {last:?}"))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.pid, nix::sys::signal::Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

// ------------------------------------------------------------ scenarios

fn run_one(env: &Env, s: &ScenarioDef, kind: Kind, round: usize) -> Result<Value> {
    let log = env
        .logs
        .join(format!("{}-{}-{}.log", s.id, kind.name(), round + 1));
    let mut server = Server::start(env, kind, &log)?;
    let result = drive(env, s, &server);
    let stopped = server.stop();
    let mut v = result?;
    stopped?;
    if let Some(o) = v.as_object_mut() {
        o.insert("server_pid".into(), server.pid.into());
    }
    Ok(v)
}

fn drive(env: &Env, s: &ScenarioDef, server: &Server) -> Result<Value> {
    let p = &env.plan;
    let mut args: Vec<String> = vec![
        s.id.to_owned(),
        "--addr".into(),
        server.addr.to_string(),
        "--server-pid".into(),
        server.pid.to_string(),
        "--warmup".into(),
        p.warmup.to_string(),
        "--duration".into(),
        p.duration.to_string(),
    ];
    if let Some((core, _)) = env.pin {
        args.extend(["--server-core".into(), core.to_string()]);
    }
    // The same request to both servers: the baseline ignores the cookie.
    args.extend(cookie_args(env));
    let extra: &[&str] = match s.id {
        "echo64" => &["--conns", "100", "--window", "16", "--size", "64"],
        "echo16k" => &["--conns", "50", "--window", "4", "--size", "16384"],
        "pingpong" => &["--conns", "16", "--size", "64"],
        "handshake" => &["--concurrency", "16"],
        "fanout" => &["--path", "/broadcast", "--size", "64", "--sources", "8"],
        "churn" => &["--concurrency", "32", "--burst", "500", "--sources", "8"],
        "idle" => return idle(env, server),
        other => bail!("no driver for scenario {other}"),
    };
    args[0] = match s.id {
        "echo64" | "echo16k" => "echo".into(),
        other => other.into(),
    };
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let mut limit = p.warmup + p.duration + 60.0;
    match s.id {
        "fanout" => {
            args.extend(["--subscribers".into(), p.fanout_subscribers.to_string()]);
        }
        "churn" => {
            // The soak and its warm-up have their own lengths.
            let d = args
                .iter()
                .position(|a| a == "--duration")
                .map_or(0, |i| i + 1);
            args[d] = p.churn_secs.to_string();
            let w = args
                .iter()
                .position(|a| a == "--warmup")
                .map_or(0, |i| i + 1);
            args[w] = p.churn_warmup.to_string();
            limit = p.churn_secs + 60.0;
        }
        _ => {}
    }
    let client = Client::start(env, &args, false)?;
    let mut v = client.finish(Duration::from_secs_f64(limit))?;
    check_errors(s.id, &v)?;
    if s.id == "churn"
        && let (Some(a), Some(b), Some(o)) = (
            v["fds_after"].as_f64(),
            v["fds_before"].as_f64(),
            v.as_object_mut(),
        )
    {
        o.insert("fd_delta".into(), (a - b).into());
    }
    Ok(v)
}

/// A run whose connections were refused or broke measured something else:
/// it fails. Loops of whole connection lives (handshake, churn) may see a
/// rare error (a reset under load) and pass up to one in a thousand.
fn check_errors(scenario: &str, v: &Value) -> Result<()> {
    let errors = v["errors"].as_u64().unwrap_or(0);
    let refused = v["refused"].as_u64().unwrap_or(0);
    let first = v["first_error"].as_str().unwrap_or("");
    if refused > 0 || first.contains("HTTP 429") {
        bail!("the server refused {refused} handshake(s) (first error: {first})");
    }
    let allowed = match scenario {
        "handshake" | "churn" => v["count"].as_u64().or(v["cycles"].as_u64()).unwrap_or(0) / 1000,
        _ => 0,
    };
    if errors > allowed {
        bail!("{errors} client error(s), first: {first}");
    }
    Ok(())
}

/// `Rss` and `Pss` of a process in KiB, from `/proc/PID/smaps_rollup`.
fn smaps(pid: u32) -> Result<(f64, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("cannot read /proc/{pid}/smaps_rollup"))?;
    let field = |name: &str| -> Result<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in smaps_rollup"))
    };
    Ok((field("Rss:")?, field("Pss:")?))
}

/// Idle memory: the server's RSS and PSS before and while `idle_conns`
/// connections are held, by as many client processes as the file limit
/// needs, each on its own source addresses.
fn idle(env: &Env, server: &Server) -> Result<Value> {
    let n = env.plan.idle_conns;
    let (rss0, pss0) = smaps(server.pid)?;
    let procs = n.div_ceil(IDLE_PER_PROCESS).max(1);
    let mut clients = Vec::new();
    for i in 0..procs {
        let share = n / procs + usize::from(i < n % procs);
        let args: Vec<String> = [
            "idle",
            "--addr",
            &server.addr.to_string(),
            "--conns",
            &share.to_string(),
            "--sources",
            &IDLE_SOURCES.to_string(),
            "--base",
            &(i * IDLE_SOURCES).to_string(),
            "--hold-max",
            "180",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain(cookie_args(env))
        .collect();
        clients.push(Client::start(env, &args, true)?);
    }
    let mut opened = 0u64;
    let mut opening_secs = 0.0f64;
    for c in &clients {
        let line = c
            .lines
            .recv_timeout(Duration::from_secs(120))
            .map_err(|_| {
                let err: Vec<String> = c.stderr.try_iter().collect();
                anyhow::anyhow!("an idle client never got ready: {}", err.join(" | "))
            })?;
        let v: Value =
            serde_json::from_str(&line).with_context(|| format!("idle said {line:?}"))?;
        opened += v["ready"].as_u64().unwrap_or(0);
        opening_secs = opening_secs.max(v["opening_secs"].as_f64().unwrap_or(0.0));
    }
    // Let the server finish setting up sessions, then wait for RSS to settle.
    std::thread::sleep(Duration::from_millis(500));
    let mut last = smaps(server.pid)?.0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        let now = smaps(server.pid)?.0;
        if (now - last).abs() <= last * 0.002 {
            break;
        }
        last = now;
    }
    let (rss1, pss1) = smaps(server.pid)?;
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid))
        .map(|d| d.count())
        .unwrap_or(0);
    for c in clients {
        c_finish_idle(c)?;
    }
    if opened as usize != n {
        bail!("only {opened} of {n} idle connections opened");
    }
    let per = |a: f64, b: f64| (b - a) / n as f64;
    Ok(json!({
        "conns": n,
        "client_processes": procs,
        "opening_secs": opening_secs,
        "rss_before_kib": rss0, "rss_after_kib": rss1,
        "pss_before_kib": pss0, "pss_after_kib": pss1,
        "rss_per_conn_kib": per(rss0, rss1),
        "pss_per_conn_kib": per(pss0, pss1),
        "server_fds": fds,
    }))
}

fn c_finish_idle(mut c: Client) -> Result<()> {
    drop(c.stdin.take());
    if wait_timeout(&mut c.child, Duration::from_secs(30))?.is_none() {
        bail!("an idle client (pid {}) did not exit within 30 s", c.pid);
    }
    Ok(())
}

// ----------------------------------------------------------- statistics

fn stats(values: &[f64]) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    json!({"median": median, "min": v[0], "max": v[n - 1], "n": n, "values": values})
}

fn summarize(runs: &[Value], scenarios: &[&ScenarioDef]) -> Vec<Value> {
    let value = |scenario: &str, server: &str, round: u64, field: &str| -> Option<f64> {
        runs.iter()
            .find(|r| r["scenario"] == scenario && r["server"] == server && r["round"] == round)
            .and_then(|r| r["result"][field].as_f64())
    };
    let rounds = runs
        .iter()
        .filter_map(|r| r["round"].as_u64())
        .max()
        .map_or(0, |m| m + 1);
    let mut out = Vec::new();
    for m in METRICS {
        if !scenarios.iter().any(|s| s.id == m.scenario) {
            continue;
        }
        let mut base = Vec::new();
        let mut prov = Vec::new();
        let mut ratio = Vec::new();
        for r in 0..rounds {
            let b = value(m.scenario, Kind::Baseline.name(), r, m.field);
            let p = value(m.scenario, Kind::Provider.name(), r, m.field);
            base.extend(b);
            prov.extend(p);
            if let (true, Some(b), Some(p)) = (m.ratio, b, p)
                && b > 0.0
            {
                ratio.push(p / b);
            }
        }
        let ratio_stats = stats(&ratio);
        let prov_stats = stats(&prov);
        let verdict = m.goal.and_then(|g| {
            let (x, ok) = match g {
                Goal::RatioAtMost(t) => {
                    let x = ratio_stats["median"].as_f64()?;
                    (x, x <= t)
                }
                Goal::RatioAtLeast(t) => {
                    let x = ratio_stats["median"].as_f64()?;
                    (x, x >= t)
                }
                Goal::AtMost(t) => {
                    let x = prov_stats["median"].as_f64()?;
                    (x, x <= t)
                }
                Goal::AtLeast(t) => {
                    let x = prov_stats["median"].as_f64()?;
                    (x, x >= t)
                }
            };
            Some(json!({"goal": g.describe(), "value": x, "met": ok}))
        });
        out.push(json!({
            "id": m.id,
            "scenario": m.scenario,
            "label": m.label,
            "unit": m.unit,
            "better": match m.better { Better::Lower => "lower", Better::Higher => "higher" },
            "baseline": stats(&base),
            "ws_provider": prov_stats,
            "ratio": ratio_stats,
            "target": verdict,
            "goal": m.goal.map(Goal::describe),
        }));
    }
    out
}

// --------------------------------------------------------------- output

fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a >= 10_000.0 {
        let s = format!("{:.0}", x);
        // Thousands separators for readability.
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn fmt_stats(s: &Value, suffix: &str) -> String {
    match (s["median"].as_f64(), s["min"].as_f64(), s["max"].as_f64()) {
        (Some(m), Some(lo), Some(hi)) => {
            format!("{}{suffix} [{}–{}]", fmt_num(m), fmt_num(lo), fmt_num(hi))
        }
        _ => "-".to_owned(),
    }
}

fn render_table(report: &Value) -> String {
    let mut t = String::new();
    let m = &report["machine"];
    let _ = writeln!(
        t,
        "\nws-provider vs baseline (tokio-tungstenite 0.30, tuned) — {} run, {} round(s) each, interleaved",
        report["mode"].as_str().unwrap_or("?"),
        report["rounds"]
    );
    let _ = writeln!(
        t,
        "machine: {} core(s), {}; {}; load average at start {}",
        m["cores"],
        m["cpu"].as_str().unwrap_or("?"),
        m["pinning"].as_str().unwrap_or("?"),
        m["load_before"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        t,
        "figures: median [min–max] over rounds; ratio = ws-provider ÷ baseline of the same round\n"
    );
    let rows: Vec<[String; 5]> = report["metrics"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|x| {
                    let na_base = report["scenarios"]
                        .as_array()
                        .and_then(|ss| ss.iter().find(|s| s["id"] == x["scenario"]))
                        .is_some_and(|s| s["baseline"] != "measured");
                    let unavailable = report["scenarios"]
                        .as_array()
                        .and_then(|ss| ss.iter().find(|s| s["id"] == x["scenario"]))
                        .is_some_and(|s| !s["unavailable"].is_null());
                    let arrow = if x["better"] == "lower" { "↓" } else { "↑" };
                    [
                        format!("{} {arrow}", x["label"].as_str().unwrap_or("")),
                        x["unit"].as_str().unwrap_or("").to_owned(),
                        if na_base {
                            "n/a for baseline".to_owned()
                        } else {
                            fmt_stats(&x["baseline"], "")
                        },
                        if unavailable {
                            "not available (no route)".to_owned()
                        } else {
                            fmt_stats(&x["ws_provider"], "")
                        },
                        fmt_stats(&x["ratio"], "×"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let header = [
        "metric (↓ lower is better, ↑ higher)".to_owned(),
        "unit".to_owned(),
        "baseline".to_owned(),
        "ws-provider".to_owned(),
        "ratio".to_owned(),
    ];
    let mut width = [0usize; 5];
    for r in std::iter::once(&header).chain(rows.iter()) {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |r: &[String; 5]| -> String {
        let mut s = String::new();
        for (i, (c, w)) in r.iter().zip(width).enumerate() {
            let pad = w - c.chars().count();
            if i >= 2 {
                let _ = write!(s, "  {}{c}", " ".repeat(pad));
            } else {
                let _ = write!(s, "{}{c}{}", if i > 0 { "  " } else { "" }, " ".repeat(pad));
            }
        }
        s.trim_end().to_owned()
    };
    let _ = writeln!(t, "{}", line(&header));
    let _ = writeln!(t, "{}", "-".repeat(width.iter().sum::<usize>() + 8));
    for r in &rows {
        let _ = writeln!(t, "{}", line(r));
    }
    let _ = writeln!(t, "\ntargets (issue 7):");
    if let Some(ms) = report["metrics"].as_array() {
        for x in ms {
            let g = &x["target"];
            if g.is_null() {
                if let Some(goal) = x["goal"].as_str() {
                    let _ = writeln!(
                        t,
                        "  {:<50} {:<18} no data",
                        x["label"].as_str().unwrap_or(""),
                        goal
                    );
                }
                continue;
            }
            let val = g["value"].as_f64().unwrap_or(f64::NAN);
            let goal = g["goal"].as_str().unwrap_or("");
            let shown = if goal.contains('×') {
                format!("{}×", fmt_num(val))
            } else {
                format!("{} {}", fmt_num(val), x["unit"].as_str().unwrap_or(""))
            };
            let _ = writeln!(
                t,
                "  {:<50} {:<18} {:<14} {}",
                x["label"].as_str().unwrap_or(""),
                goal,
                shown,
                if g["met"] == true { "met" } else { "MISSED" }
            );
        }
    }
    if let Some(ss) = report["scenarios"].as_array() {
        for s in ss {
            if let Some(u) = s["unavailable"].as_str() {
                let _ = writeln!(t, "\n{}: {u}", s["id"].as_str().unwrap_or(""));
            }
        }
    }
    let cfg = &report["provider_config"];
    let _ = writeln!(
        t,
        "\nws-provider config: {}",
        cfg["file"].as_str().unwrap_or("")
    );
    for a in cfg["applied"].as_array().into_iter().flatten() {
        let _ = writeln!(t, "  on:      {}", a.as_str().unwrap_or(""));
    }
    for a in cfg["missing"].as_array().into_iter().flatten() {
        let _ = writeln!(t, "  not on:  {}", a.as_str().unwrap_or(""));
    }
    if let Some(f) = report["failures"].as_array().filter(|f| !f.is_empty()) {
        let _ = writeln!(t, "\nFAILED runs:");
        for x in f {
            let _ = writeln!(t, "  {}", x.as_str().unwrap_or(""));
        }
    }
    t
}

fn draw_chart(path: &Path, report: &Value) -> Result<()> {
    use plotters::prelude::*;

    let bars: Vec<(String, f64, f64, f64, bool)> = report["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let r = &m["ratio"];
            let (med, lo, hi) = (
                r["median"].as_f64()?,
                r["min"].as_f64()?,
                r["max"].as_f64()?,
            );
            let good = if m["better"] == "lower" {
                med <= 1.0
            } else {
                med >= 1.0
            };
            let arrow = if m["better"] == "lower" { "↓" } else { "↑" };
            Some((
                format!("{} {arrow}", m["label"].as_str().unwrap_or("")),
                med,
                lo,
                hi,
                good,
            ))
        })
        .collect();
    if bars.is_empty() {
        bail!("no ratios to draw");
    }
    let n = bars.len();
    // Far outliers (latency tails on a busy machine) would squash every
    // other bar: the axis stops at 4× and longer bars are cut there.
    let xmax = bars.iter().map(|b| b.3).fold(1.5f64, f64::max).min(4.0) * 1.1;
    let height = 90 + 34 * u32::try_from(n).unwrap_or(20);
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<std::io::Error>| anyhow::anyhow!("{e:?}");
    root.fill(&WHITE).map_err(e)?;
    let title = format!(
        "ws-provider ÷ baseline ({} run, {} rounds; bar = median, whisker = min–max)",
        report["mode"].as_str().unwrap_or("?"),
        report["rounds"]
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(380)
        .build_cartesian_2d(0f64..xmax, (0..n).into_segmented())
        .map_err(e)?;
    // The first metric at the top.
    let row = |i: usize| n - 1 - i;
    let labels: Vec<String> = bars.iter().rev().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("ratio (1.0 = same as baseline; green = ws-provider better or equal, red = worse)")
        .draw()
        .map_err(e)?;
    let green = RGBColor(46, 139, 87);
    let red = RGBColor(200, 60, 50);
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let color = if b.4 { green } else { red };
            let mut r = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(row(i))),
                    (b.1.min(xmax), SegmentValue::Exact(row(i) + 1)),
                ],
                color.mix(0.75).filled(),
            );
            r.set_margin(5, 5, 0, 0);
            r
        }))
        .map_err(e)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            PathElement::new(
                vec![
                    (b.2.min(xmax), SegmentValue::CenterOf(row(i))),
                    (b.3.min(xmax), SegmentValue::CenterOf(row(i))),
                ],
                BLACK.stroke_width(2),
            )
        }))
        .map_err(e)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            Text::new(
                format!("{:.2}×", b.1),
                (
                    (b.3.max(b.1) + xmax * 0.01).min(xmax * 0.93),
                    SegmentValue::CenterOf(row(i)),
                ),
                ("sans-serif", 12),
            )
        }))
        .map_err(e)?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Exact(n))],
            BLACK.stroke_width(1),
        )))
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

// -------------------------------------------------------------- machine

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine_info(cores: usize, pin: Option<(usize, usize)>) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let rustc = Command::new("rustc")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(util::root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    let _ = std::io::stderr().flush();
    json!({
        "cores": cores,
        "cpu": cpu,
        "memory_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": kernel,
        "rustc": rustc,
        "commit": commit,
        "dirty": dirty,
        "pinning": match pin {
            Some((s, c)) => format!("server on core {s}, load generator on core {c}"),
            None => "not pinned".to_owned(),
        },
        "load_before": loadavg(),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn token_verifies_with_the_written_secret() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("bench-jwt.secret");
        let token = make_token(&key_file).unwrap();
        let secret = std::fs::read(&key_file).unwrap();
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        // A second run makes a new secret.
        let again = make_token(&key_file).unwrap();
        let secret2 = std::fs::read(&key_file).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(secret.len(), 64);
        assert_ne!(secret, secret2);
        assert_ne!(token, again);
        let decoded = jsonwebtoken::decode::<Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(&secret),
            &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
        )
        .unwrap();
        let c = decoded.claims;
        assert_eq!(c["sub"], TOKEN_SUB);
        assert_eq!(c["name"], TOKEN_NAME);
        let (iat, exp) = (c["iat"].as_u64().unwrap(), c["exp"].as_u64().unwrap());
        assert_eq!(exp - iat, TOKEN_LIFETIME.as_secs());
        // The token goes into a cookie as is.
        assert!(
            token
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        );
    }

    #[test]
    fn aspect_table_names_the_key_file_and_cookie() {
        let t = aspect_toml(Path::new("/tmp/b \"x\"/bench-jwt.secret")).unwrap();
        assert!(t.contains("[[aspect]]\nname = \"bench.user\"\n"), "{t}");
        assert!(
            t.contains("credential = { cookie = \"bench_token\" }"),
            "{t}"
        );
        assert!(t.contains("[aspect.jwt]\nalgorithm = \"HS256\"\n"), "{t}");
        assert!(
            t.contains(r#"key_file = "/tmp/b \"x\"/bench-jwt.secret""#),
            "{t}"
        );
        assert!(t.contains("[aspect.jwt.claims]\nid = \"sub\"\nusername = \"name\"\n"));
    }

    #[test]
    fn whoami_answers_are_judged() {
        // What ws-provider answered with a good and with a bad token.
        let good = r#"{"aspects":{"bench.user":{"groups":[],"id":"bench","logged_in":true,"username":"ws-bench"}},"connection":1}"#;
        let bad = r#"{"aspects":{"bench.user":{"groups":[],"id":null,"logged_in":false,"username":null}},"connection":1}"#;
        assert_eq!(logged_in_aspect(good).unwrap()["username"], "ws-bench");
        let e = format!("{:#}", logged_in_aspect(bad).unwrap_err());
        assert!(
            e.contains("does not resolve") && e.contains("\"logged_in\":false"),
            "{e}"
        );
        let other = r#"{"aspects":{"other":{"id":"bench","logged_in":true}}}"#;
        assert!(logged_in_aspect(other).is_err());
        assert!(logged_in_aspect("not json").is_err());
    }

    #[test]
    fn out_option() {
        let o = parse_opts(&["--quick".into(), "--out".into(), "/tmp/x".into()]).unwrap();
        assert_eq!(o.out, Some(PathBuf::from("/tmp/x")));
        assert!(parse_opts(&["--out".into()]).is_err());
    }
}
