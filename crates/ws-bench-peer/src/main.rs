//! `ws-bench-peer`: the second load generator of `cargo xtask bench`.
//!
//! ws-bench, the first, is ours: it pre-encodes masked frames and parses
//! replies in place, so that it costs far less than the server it drives.
//! A result that holds only under our own load generator is not yet a
//! result (issue 18), so this one drives the same scenarios the way an
//! application would, through a WebSocket library we did not write
//! (tokio-websockets, from crates.io): its handshake, its framing and
//! masking, one `send` (write and flush) per message.
//!
//! ```text
//! ws-bench-peer echo     --addr A [--path P] [--server-pid PID] [--warmup S] [--duration S]
//!                        [--conns N] [--window W] [--size BYTES] [--text] [--cookie NAME=VALUE]
//! ws-bench-peer pingpong (the same options; one message in flight per connection)
//! ```
//!
//! `echo` keeps `window` messages in flight on each of `conns` connections:
//! every echo received is answered by one new message. `pingpong` has one
//! in flight and times each round trip. The result is one JSON object on
//! standard output with the fields ws-bench reports for the same scenario
//! (`count`, `secs`, `rate`, `server_cpu_us_per_event`, `p50_us`, …); the
//! server's CPU time (user + system) comes from `/proc/PID/stat` of
//! `--server-pid`, read around the measured window. Loopback only; every
//! run ends by itself after `warmup + duration`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{HeaderName, HeaderValue};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_websockets::{ClientBuilder, Limits, Message};

/// What to run, from the command line.
#[derive(Clone, Debug)]
struct Opts {
    scenario: Scenario,
    addr: SocketAddr,
    path: String,
    server_pid: Option<u32>,
    warmup: Duration,
    duration: Duration,
    conns: usize,
    window: usize,
    size: usize,
    text: bool,
    cookies: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Echo,
    PingPong,
}

fn usage() -> String {
    "usage: ws-bench-peer echo|pingpong --addr ADDR [--path /echo] [--server-pid PID] \
     [--warmup SECS] [--duration SECS] [--conns N] [--window N] [--size BYTES] [--text] \
     [--cookie NAME=VALUE]"
        .to_owned()
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let scenario = match args.first().map(String::as_str) {
        Some("echo") => Scenario::Echo,
        Some("pingpong") => Scenario::PingPong,
        Some(other) => return Err(format!("unknown scenario `{other}`\n{}", usage())),
        None => return Err(usage()),
    };
    let mut o = Opts {
        scenario,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        path: "/echo".to_owned(),
        server_pid: None,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(5),
        conns: if scenario == Scenario::Echo { 100 } else { 16 },
        window: 16,
        size: 64,
        text: false,
        cookies: Vec::new(),
    };
    let mut addr = None;
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        let number = |v: String| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("{a}: `{v}` is not a non-negative number"))
        };
        match a.as_str() {
            "--addr" => {
                let v = value()?;
                addr = Some(
                    v.parse::<SocketAddr>()
                        .map_err(|e| format!("--addr {v}: {e}"))?,
                );
            }
            "--path" => o.path = value()?,
            "--server-pid" => {
                let v = value()?;
                o.server_pid = Some(
                    v.parse()
                        .map_err(|_| format!("--server-pid {v}: not a pid"))?,
                );
            }
            "--warmup" => o.warmup = Duration::from_secs_f64(number(value()?)?),
            "--duration" => o.duration = Duration::from_secs_f64(number(value()?)?),
            // Counts: whole numbers within what a test runs.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            "--conns" => o.conns = number(value()?)? as usize,
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            "--window" => o.window = number(value()?)? as usize,
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            "--size" => o.size = number(value()?)? as usize,
            "--text" => o.text = true,
            "--cookie" => {
                let v = value()?;
                if !v.contains('=') || v.contains([';', '\r', '\n']) {
                    return Err(format!("--cookie {v:?}: expected NAME=VALUE"));
                }
                o.cookies.push(v);
            }
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown option `{other}`\n{}", usage())),
        }
    }
    o.addr = addr.ok_or("--addr is required")?;
    if !o.addr.ip().is_loopback() {
        return Err(format!(
            "--addr {}: not a loopback address; ws-bench-peer only loads local servers",
            o.addr
        ));
    }
    if o.conns == 0 || o.window == 0 {
        return Err("--conns and --window must be at least 1".to_owned());
    }
    if o.duration.is_zero() {
        return Err("--duration must be above 0".to_owned());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ws-bench-peer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ws-bench-peer: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&rt, run(opts)) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ws-bench-peer: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the connections share: the phase of the run and the counters.
#[derive(Default)]
struct Shared {
    measuring: AtomicBool,
    stopped: AtomicBool,
    /// Echoes (echo) or round trips (pingpong) completed.
    done: AtomicU64,
    errors: AtomicU64,
    first_error: std::cell::RefCell<Option<String>>,
}

impl Shared {
    fn error(&self, what: impl std::fmt::Display) {
        if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
            *self.first_error.borrow_mut() = Some(what.to_string());
        }
    }
}

type Ws = tokio_websockets::WebSocketStream<TcpStream>;

/// One connection through tokio-websockets' client: TCP with `TCP_NODELAY`
/// (as ws-bench and browsers), then the library's own upgrade.
async fn open(o: &Opts) -> Result<Ws, String> {
    let stream = TcpStream::connect(o.addr)
        .await
        .map_err(|e| format!("connect to {}: {e}", o.addr))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let uri = format!("ws://{}{}", o.addr, o.path);
    let mut b = ClientBuilder::new()
        .uri(&uri)
        .map_err(|e| format!("{uri}: {e}"))?
        // Messages up to the sweep's 64 KiB and more.
        .limits(Limits::default().max_payload_len(Some(16 << 20)));
    // The same request ws-bench sends: an Origin the bench's allow-list
    // accepts and the login cookie.
    b = b
        .add_header(
            HeaderName::from_static("origin"),
            HeaderValue::from_static("http://localhost"),
        )
        .map_err(|e| format!("Origin header: {e}"))?;
    if !o.cookies.is_empty() {
        let v = HeaderValue::from_str(&o.cookies.join("; "))
            .map_err(|e| format!("Cookie header: {e}"))?;
        b = b
            .add_header(HeaderName::from_static("cookie"), v)
            .map_err(|e| format!("Cookie header: {e}"))?;
    }
    let (ws, _) = b
        .connect_on(stream)
        .await
        .map_err(|e| format!("upgrade of {uri}: {e}"))?;
    Ok(ws)
}

fn message(o: &Opts, payload: &Bytes) -> Message {
    if o.text {
        // The payload is ASCII, so valid UTF-8.
        Message::text(payload.clone())
    } else {
        Message::binary(payload.clone())
    }
}

async fn run(o: Opts) -> Result<Value, String> {
    let payload: Bytes = (0..o.size)
        .map(|i| b'a' + u8::try_from(i % 26).unwrap_or(0))
        .collect::<Vec<u8>>()
        .into();
    let mut conns = Vec::with_capacity(o.conns);
    for i in 0..o.conns {
        conns.push(
            open(&o)
                .await
                .map_err(|e| format!("opening connection {}: {e}", i + 1))?,
        );
    }
    let shared = Rc::new(Shared::default());
    let mut tasks = JoinSet::new();
    for ws in conns {
        let (o, p, s) = (o.clone(), payload.clone(), Rc::clone(&shared));
        match o.scenario {
            Scenario::Echo => tasks.spawn_local(async move {
                echo(ws, &o, &p, &s).await;
                Vec::new()
            }),
            Scenario::PingPong => tasks.spawn_local(async move { pingpong(ws, &o, &p, &s).await }),
        };
    }
    tokio::time::sleep(o.warmup).await;
    let cpu0 = o.server_pid.map(cpu_seconds).transpose()?;
    let n0 = shared.done.load(Ordering::Relaxed);
    let t0 = Instant::now();
    shared.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(o.duration).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let n1 = shared.done.load(Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = o.server_pid.map(cpu_seconds).transpose()?;
    shared.stopped.store(true, Ordering::Relaxed);
    let mut trips: Vec<u64> = Vec::new();
    // Ping-pong loops end after their round trip in flight; echo loops may
    // wait on a reply forever once the others stopped: a bounded wait.
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(r) = tasks.join_next().await {
            if let Ok(t) = r {
                trips.extend(t);
            }
        }
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
    }
    let count = n1 - n0;
    let cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let mut out = json!({
        "generator": "ws-bench-peer (tokio-websockets 0.13)",
        "secs": secs,
        "count": count,
        "rate": count as f64 / secs,
        "server_cpu_us_per_event": cpu.filter(|_| count > 0).map(|c| c * 1e6 / count as f64),
        "server_util": cpu.map(|c| c / secs),
        "errors": shared.errors.load(Ordering::Relaxed),
        "first_error": shared.first_error.borrow().clone(),
        "params": {"conns": o.conns, "window": o.window, "size": o.size, "text": o.text},
    });
    if o.scenario == Scenario::PingPong {
        trips.sort_unstable();
        let q = |p: f64| -> Value {
            if trips.is_empty() {
                return Value::Null;
            }
            // Nearest rank.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let i = ((p * trips.len() as f64).ceil() as usize).clamp(1, trips.len()) - 1;
            (trips[i] as f64 / 1000.0).into()
        };
        if let Some(m) = out.as_object_mut() {
            m.insert("p50_us".into(), q(0.5));
            m.insert("p90_us".into(), q(0.9));
            m.insert("p99_us".into(), q(0.99));
            m.insert("p999_us".into(), q(0.999));
            m.insert("max_us".into(), q(1.0));
            m.insert("samples".into(), trips.len().into());
        }
    }
    Ok(out)
}

/// Keeps `window` messages in flight: one new message per echo received,
/// sent as an application sends (`send`: written and flushed).
async fn echo(mut ws: Ws, o: &Opts, payload: &Bytes, s: &Shared) {
    for _ in 0..o.window {
        if let Err(e) = ws.send(message(o, payload)).await {
            s.error(format!("send: {e}"));
            return;
        }
    }
    while !s.stopped.load(Ordering::Relaxed) {
        match ws.next().await {
            Some(Ok(m)) if m.is_text() || m.is_binary() => {
                let len = m.as_payload().len();
                if len != o.size {
                    s.error(format!("echo of {len} bytes, sent {}", o.size));
                }
                s.done.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = ws.send(message(o, payload)).await {
                    s.error(format!("send: {e}"));
                    return;
                }
            }
            Some(Ok(m)) if m.is_close() => {
                s.error(format!("server closed: {:?}", m.as_close()));
                return;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                s.error(format!("receive: {e}"));
                return;
            }
            None => {
                s.error("server closed the connection");
                return;
            }
        }
    }
}

/// One message in flight; the round trips of the measured window in
/// nanoseconds.
async fn pingpong(mut ws: Ws, o: &Opts, payload: &Bytes, s: &Shared) -> Vec<u64> {
    let mut trips = Vec::new();
    while !s.stopped.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        if let Err(e) = ws.send(message(o, payload)).await {
            s.error(format!("send: {e}"));
            break;
        }
        loop {
            match ws.next().await {
                Some(Ok(m)) if m.is_text() || m.is_binary() => break,
                Some(Ok(m)) if m.is_close() => {
                    s.error(format!("server closed: {:?}", m.as_close()));
                    return trips;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    s.error(format!("receive: {e}"));
                    return trips;
                }
                None => {
                    s.error("server closed the connection");
                    return trips;
                }
            }
        }
        let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        s.done.fetch_add(1, Ordering::Relaxed);
        if s.measuring.load(Ordering::Relaxed) {
            trips.push(ns);
        }
    }
    trips
}

/// CPU seconds (user + system) the process `pid` has used, from
/// `/proc/PID/stat` (fields 14 and 15, in clock ticks).
fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("/proc/{pid}/stat: malformed"))?;
    let mut f = rest.split_whitespace().skip(11);
    let mut tick = |what: &str| -> Result<u64, String> {
        f.next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("/proc/{pid}/stat: no {what}"))
    };
    let (utime, stime) = (tick("utime")?, tick("stime")?);
    #[allow(clippy::cast_precision_loss)]
    Ok((utime + stime) as f64 / ticks_per_second())
}

/// `getconf CLK_TCK` (100 on Linux everywhere in practice).
fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_are_checked() {
        let o = parse(&args(
            "echo --addr 127.0.0.1:9 --size 1024 --text --window 4 --cookie a=b",
        ))
        .unwrap();
        assert_eq!((o.size, o.window, o.conns, o.text), (1024, 4, 100, true));
        assert_eq!(o.cookies, ["a=b"]);
        assert!(
            parse(&args("echo --addr 10.0.0.1:9"))
                .unwrap_err()
                .contains("loopback")
        );
        assert!(parse(&args("echo")).unwrap_err().contains("--addr"));
        assert!(parse(&args("echo --addr 127.0.0.1:9 --size x")).is_err());
        assert!(parse(&args("echo --addr 127.0.0.1:9 --cookie x")).is_err());
        assert!(parse(&args("fly --addr 127.0.0.1:9")).is_err());
        assert_eq!(
            parse(&args("pingpong --addr 127.0.0.1:9")).unwrap().conns,
            16
        );
    }

    #[test]
    fn reads_its_own_cpu_time() {
        let t = cpu_seconds(std::process::id()).unwrap();
        assert!(t >= 0.0);
    }
}
