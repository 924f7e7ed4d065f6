//! One scenario against one server: the server started, the load
//! generator run with the scenario's arguments, both stopped by pid.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::Env;
use super::config::cookie_args;
use super::process::{Client, Server};
use super::results::Figures;
use super::scenarios::{Driver, Generator, Kind, ScenarioDef, Traffic};
use crate::util::wait_timeout;

/// Connections per idle client process: below the 20,000 open files one
/// process may have here, with room to spare.
const IDLE_PER_PROCESS: usize = 15_000;
/// Source addresses (127.0.0.x) per idle client process.
const IDLE_SOURCES: usize = 8;

/// Runs scenario `s` against a fresh server of `kind`, stopped after it.
pub(crate) fn run_one(env: &Env, s: &ScenarioDef, kind: Kind, round: usize) -> Result<Figures> {
    let log = env
        .logs
        .join(format!("{}-{}-{}.log", s.id, kind.name(), round + 1));
    let mut server = Server::start(env, kind, &log)?;
    let result = drive(env, s, &server);
    let stopped = server.stop();
    let mut v = result?;
    stopped?;
    v.server_pid = Some(server.pid);
    Ok(v)
}

fn drive(env: &Env, s: &ScenarioDef, server: &Server) -> Result<Figures> {
    let p = &env.plan;
    let (warmup, duration) = match s.driver {
        Driver::Cell(_) => (p.cell_warmup, p.cell_duration),
        Driver::Fixed | Driver::Idle => (p.warmup, p.duration),
    };
    let mut args: Vec<String> = vec![
        s.id.clone(),
        "--addr".into(),
        server.addr.to_string(),
        "--server-pid".into(),
        server.pid.to_string(),
        "--warmup".into(),
        warmup.to_string(),
        "--duration".into(),
        duration.to_string(),
    ];
    let generator = match s.driver {
        Driver::Cell(c) => c.generator,
        Driver::Fixed | Driver::Idle => Generator::WsBench,
    };
    if let (Some((core, _)), Generator::WsBench) = (env.pin, generator) {
        args.extend(["--server-core".into(), core.to_string()]);
    }
    // The same request to both servers: the baseline ignores the cookie.
    args.extend(cookie_args(env));
    let owned: Vec<String>;
    let extra: &[&str] = match (s.driver, s.id.as_str()) {
        (Driver::Idle, _) => return idle(env, server),
        (Driver::Cell(c), _) => {
            let (conns, window) = c.load();
            args[0] = match c.traffic {
                Traffic::Pipelined => "echo",
                Traffic::PingPong => "pingpong",
            }
            .into();
            owned = [
                "--conns".to_owned(),
                conns.to_string(),
                "--size".to_owned(),
                c.size.to_string(),
            ]
            .into_iter()
            .chain(
                (c.traffic == Traffic::Pipelined)
                    .then(|| ["--window".to_owned(), window.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .chain(c.text.then(|| "--text".to_owned()))
            .collect();
            &owned.iter().map(String::as_str).collect::<Vec<_>>()
        }
        (_, "echo64") => &["--conns", "100", "--window", "16", "--size", "64"],
        (_, "echo16k") => &["--conns", "50", "--window", "4", "--size", "16384"],
        (_, "pingpong") => &["--conns", "16", "--size", "64"],
        (_, "handshake") => &["--concurrency", "16"],
        (_, "fanout") => &["--path", "/broadcast", "--size", "64", "--sources", "8"],
        (_, "churn") => &["--concurrency", "32", "--burst", "500", "--sources", "8"],
        (_, other) => bail!("no driver for scenario {other}"),
    };
    if matches!(s.id.as_str(), "echo64" | "echo16k") {
        args[0] = "echo".into();
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let mut limit = warmup + duration + 60.0;
    match s.id.as_str() {
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
    let client = Client::start_generator(env, generator, &args, false)?;
    let mut v = client.finish(Duration::from_secs_f64(limit))?;
    check_errors(&s.id, &v)?;
    if s.id == "churn"
        && let (Some(a), Some(b)) = (v.fds_after, v.fds_before)
    {
        v.fd_delta = Some(a - b);
    }
    Ok(v)
}

/// A run whose connections were refused or broke measured something else:
/// it fails. Loops of whole connection lives (handshake, churn) may see a
/// rare error (a reset under load) and pass up to one in a thousand.
pub(crate) fn check_errors(scenario: &str, v: &Figures) -> Result<()> {
    let errors = v.errors.unwrap_or(0);
    let refused = v.refused.unwrap_or(0);
    let first = v.first_error.as_deref().unwrap_or("");
    if refused > 0 || first.contains("HTTP 429") {
        bail!("the server refused {refused} handshake(s) (first error: {first})");
    }
    // Counts: whole numbers.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let allowed = match scenario {
        "handshake" | "churn" => v.count.or(v.cycles).unwrap_or(0.0) as u64 / 1000,
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
fn idle(env: &Env, server: &Server) -> Result<Figures> {
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
    let mut rest = std::collections::BTreeMap::new();
    rest.insert("conns".to_owned(), n.into());
    rest.insert("client_processes".to_owned(), procs.into());
    rest.insert("opening_secs".to_owned(), opening_secs.into());
    rest.insert("pss_before_kib".to_owned(), pss0.into());
    rest.insert("pss_after_kib".to_owned(), pss1.into());
    rest.insert("server_fds".to_owned(), fds.into());
    Ok(Figures {
        rss_before_kib: Some(rss0),
        rss_after_kib: Some(rss1),
        rss_per_conn_kib: Some(per(rss0, rss1)),
        pss_per_conn_kib: Some(per(pss0, pss1)),
        rest,
        ..Figures::default()
    })
}

fn c_finish_idle(mut c: Client) -> Result<()> {
    drop(c.stdin.take());
    if wait_timeout(&mut c.child, Duration::from_secs(30))?.is_none() {
        bail!("an idle client (pid {}) did not exit within 30 s", c.pid);
    }
    Ok(())
}
