//! `cargo xtask bench [--quick] [--json] [--rounds N] [--only LIST]`:
//! ws-provider against a baseline, in interleaved A/B rounds.
//!
//! It builds, in release, `ws-cli` (ws-provider with the demo components),
//! `ws-bench-baseline` (a minimal tuned tokio-tungstenite echo server kept
//! in the repo as the yardstick), `ws-bench` (our load generator) and
//! `ws-bench-peer` (a second one, on tokio-websockets, which we did not
//! write: issue 18). For
//! every round and scenario it starts a fresh baseline, runs the scenario,
//! stops it, then does the same with ws-provider — so the two are measured
//! back to back under the same machine conditions. Servers run pinned to
//! core 0 and the load generator to core 1 when there are two cores or
//! more. Every figure of ws-provider is reported as a ratio to the baseline
//! of the same round, with the median and min–max over rounds; the results
//! go to `target/bench/results.json`, a chart of every ratio to
//! `target/bench/chart.svg` and one of the size sweep (the CPU-per-message
//! ratio against message size, both load generators) to
//! `target/bench/sweep.svg`.
//!
//! The size sweep (`--only sweep`): pipelined echo and ping-pong, binary
//! and text, at 64 B, 256 B, 1 KiB, 4 KiB, 16 KiB and 64 KiB, each a
//! scenario of its own in the same interleaved rounds; ws-provider's
//! message and frame limits are raised to 128 KiB for it. The second
//! generator's cells (`--only peer`): pipelined binary 64 B, 1 KiB, 4 KiB,
//! 16 KiB, text 1 KiB, ping-pong 64 B and 1 KiB.
//!
//! Modules: `scenarios` (what runs and what is read from it), `config`
//! (ws-provider's configuration and the JWT), `build`, `process` (servers
//! and clients by pid), `drive` (one scenario against one server),
//! `results` (the typed results), `render` (tables and charts), `soak`,
//! `machine`.
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

mod build;
mod config;
mod drive;
mod machine;
mod process;
mod render;
mod results;
mod scenarios;
mod soak;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

pub(crate) use self::build::{BASELINE_MANIFEST, PEER_MANIFEST};
use self::build::{Bins, build};
pub(crate) use self::config::write_pipeline_config;
use self::config::{WHOAMI_PATH, check_aspect, write_provider_config};
use self::drive::run_one;
use self::machine::{loadavg, machine_info};
use self::render::{brief, draw_chart, draw_sweep_chart, render_table};
use self::results::{PlanInfo, ProviderConfig, Report, Run, ScenarioInfo, summarize};
use self::scenarios::{Driver, Generator, Kind, ScenarioDef, metrics, scenarios};
use crate::util;

/// Run options from the command line.
#[derive(Debug)]
struct Opts {
    quick: bool,
    json: bool,
    rounds: Option<usize>,
    /// Scenario ids, `sweep` or `peer`.
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
                let all = scenarios();
                for n in &names {
                    if !all.iter().any(|s| selected(s, n)) {
                        bail!(
                            "unknown scenario `{n}`; known: sweep, peer, {}",
                            all.iter()
                                .map(|s| s.id.as_str())
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
                     \x20      cargo xtask bench --report RESULTS.json   (table and charts again)\n\
                     scenarios: sweep (every sweep cell), peer (every ws-bench-peer cell), {}",
                    scenarios()
                        .iter()
                        .map(|s| s.id.as_str())
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

/// Whether `--only NAME` selects `s`: its id, or its group.
fn selected(s: &ScenarioDef, name: &str) -> bool {
    s.id == name
        || match s.driver {
            Driver::Cell(c) => match c.generator {
                Generator::WsBench => name == "sweep",
                Generator::Peer => name == "peer",
            },
            _ => false,
        }
}

/// Durations and sizes of one mode (quick or full).
#[derive(Clone, Debug)]
struct Plan {
    rounds: usize,
    warmup: f64,
    duration: f64,
    /// The sweep's and the second generator's cells: shorter, there are 31.
    cell_warmup: f64,
    cell_duration: f64,
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
                cell_warmup: 0.3,
                cell_duration: 1.0,
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
                cell_warmup: 0.5,
                cell_duration: 3.0,
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
        return soak::soak(&env, minutes, machine, &hooks, started);
    }
    let scenarios: Vec<ScenarioDef> = scenarios()
        .into_iter()
        .filter(|s| {
            opts.only
                .as_ref()
                .is_none_or(|o| o.iter().any(|n| selected(s, n)))
        })
        .collect();
    let metric_defs = metrics();
    eprintln!(
        "xtask bench: {} mode, {} round(s), scenarios: {}",
        if opts.quick { "quick" } else { "full" },
        env.plan.rounds,
        scenarios
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut runs: Vec<Run> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut unavailable: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..env.plan.rounds {
        for s in &scenarios {
            for kind in [Kind::Baseline, Kind::Provider] {
                if s.provider_only && kind == Kind::Baseline {
                    continue;
                }
                if unavailable.contains_key(&s.id) {
                    continue;
                }
                let t = Instant::now();
                let result = run_one(&env, s, kind, round);
                let secs = t.elapsed().as_secs_f64();
                match result {
                    Ok(v) => {
                        if v.available == Some(false) {
                            let why = format!(
                                "not available: {} answered HTTP {} (the route does not exist yet)",
                                kind.name(),
                                v.status.clone().unwrap_or(Value::Null)
                            );
                            eprintln!("xtask bench: {}: {why}", s.id);
                            unavailable.insert(s.id.clone(), why);
                        } else {
                            eprintln!(
                                "xtask bench: round {} {:<9} {:<11} {}",
                                round + 1,
                                s.id,
                                kind.name(),
                                brief(s, &v)
                            );
                        }
                        if let Some(n) = v.errors.filter(|&n| n > 0) {
                            eprintln!(
                                "xtask bench:   {n} client error(s), first: {}",
                                v.first_error.as_deref().unwrap_or("?")
                            );
                        }
                        runs.push(Run {
                            scenario: s.id.clone(),
                            server: kind.name().to_owned(),
                            round,
                            wall_secs: secs,
                            result: Some(v),
                            error: None,
                        });
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
                        runs.push(Run {
                            scenario: s.id.clone(),
                            server: kind.name().to_owned(),
                            round,
                            wall_secs: secs,
                            result: None,
                            error: Some(format!("{e:#}")),
                        });
                    }
                }
            }
        }
    }

    let metrics = summarize(&runs, &metric_defs);
    let report = Report {
        mode: if opts.quick { "quick" } else { "full" }.to_owned(),
        rounds: env.plan.rounds,
        plan: PlanInfo {
            warmup_secs: env.plan.warmup,
            duration_secs: env.plan.duration,
            sweep_warmup_secs: Some(env.plan.cell_warmup),
            sweep_duration_secs: Some(env.plan.cell_duration),
            churn_secs: env.plan.churn_secs,
            idle_conns: env.plan.idle_conns,
            fanout_subscribers: env.plan.fanout_subscribers,
        },
        machine,
        load_after: loadavg(),
        wall_secs: started.elapsed().as_secs_f64(),
        provider_config: ProviderConfig {
            file: env.config.display().to_string(),
            applied: hooks.applied,
            missing: hooks.missing,
            aspect_check,
        },
        scenarios: scenarios
            .iter()
            .map(|s| ScenarioInfo {
                id: s.id.clone(),
                title: s.title.clone(),
                unavailable: unavailable.get(&s.id).cloned(),
                baseline: if s.provider_only {
                    "n/a for baseline"
                } else {
                    "measured"
                }
                .to_owned(),
            })
            .collect(),
        metrics,
        failures: failures.clone(),
        runs,
    };
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
    let sweep_chart = env.out.join("sweep.svg");
    let has_cells = scenarios
        .iter()
        .any(|s| matches!(s.driver, Driver::Cell(_)));
    if has_cells && let Err(e) = draw_sweep_chart(&sweep_chart, &report) {
        eprintln!("xtask bench: no sweep chart: {e:#}");
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
        util::human(started.elapsed())
    );
    if !failures.is_empty() {
        bail!("{} run(s) failed: {}", failures.len(), failures.join("; "));
    }
    Ok(())
}

/// `--report FILE`: the table and the chart (next to the file) of a
/// results JSON written by an earlier run.
fn report_again(file: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let report: Report = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a results JSON of the bench", file.display()))?;
    let chart = file.with_extension("svg");
    draw_chart(&chart, &report)?;
    let sweep = file.with_extension("sweep.svg");
    let swept = draw_sweep_chart(&sweep, &report).is_ok();
    print!("{}", render_table(&report));
    eprintln!(
        "xtask bench: chart in {}{}",
        chart.display(),
        if swept {
            format!(", sweep chart in {}", sweep.display())
        } else {
            String::new()
        }
    );
    Ok(())
}
