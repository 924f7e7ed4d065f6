//! Resource exhaustion against the real `ws-cli start` binary.
//!
//! - Out of file descriptors: the server runs under `prlimit --nofile=256`
//!   and a flood of 100 more connections than that arrives. It does not crash,
//!   does not spin (its CPU time while at the limit is measured from
//!   `/proc/PID/stat`), logs the episode once, keeps serving the clients it
//!   has, and serves new ones again once descriptors free up.
//! - Slow consumers: clients that never read while the server sends to them
//!   directly (the admin API's `connection` target) and by broadcast (the
//!   `broadcast` channel) are closed with 1013 once their outgoing queue is
//!   full, and a client that never reads its echoes is dropped at
//!   `write_timeout`. The server's memory stays bounded by the queues and
//!   write buffers meanwhile, and the other clients are served: a reader of
//!   the channel gets every message, and the ping-pong latency of an echo
//!   client is printed before and during (a report, not an assertion:
//!   performance is measured by `cargo xtask bench`).
//!
//! Every count and wait is bounded; everything runs on 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::Running;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use ws_test_support::TempDir;
use ws_tests::{WAIT, expect_close, next_text, send};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A state directory with `config.toml` holding `toml`.
struct Scenario {
    dir: TempDir,
    config: PathBuf,
    log: PathBuf,
}

impl Scenario {
    fn new(name: &str, toml: &str) -> Self {
        let dir = TempDir::new(&format!("exhaustion-{name}"));
        let config = dir.join("config.toml");
        std::fs::write(&config, toml).unwrap();
        let log = dir.join("stderr.log");
        Self { dir, config, log }
    }

    /// `ws-cli start --config FILE` (run by `wrapper`, if any), stderr
    /// into a log shown on failure.
    fn start(&self, wrapper: &[&str]) -> Running {
        let config = self.config.to_str().unwrap();
        Running::start_wrapped(self.dir.path(), &["--config", config], &self.log, wrapper)
    }

    /// The server's log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

// ------------------------------------------------------------- /proc --

/// CPU time (user + system) of `pid` so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which may hold spaces): utime is the
    // 14th field of stat(5), stime the 15th.
    let rest = stat.rsplit_once(')').expect("stat format").1;
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().expect("utime/stime"))
        .collect();
    let ticks = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    };
    (f[0] + f[1]) as f64 / ticks
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("/proc/PID/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// Open file descriptors of `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count()
}

// ------------------------------------------------------------ clients --

/// One echo round trip on `ws`; how long it took.
async fn round_trip<S>(ws: &mut WebSocketStream<S>, text: &str) -> Duration
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let started = Instant::now();
    send(ws, text).await;
    assert_eq!(next_text(ws).await, text);
    started.elapsed()
}

/// A WebSocket client whose socket receive buffer is fixed at a few KiB
/// (no autotuning), so that not reading fills it soon.
async fn small_buffer_client(addr: SocketAddr, path: &str) -> WebSocketStream<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    let stream = tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("connect within the wait limit")
        .expect("connect");
    let url = format!("ws://{addr}{path}");
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("handshake within the wait limit")
        .expect("handshake");
    ws
}

/// `POST /publish` with `key`; the status and the JSON answer.
async fn publish(admin: SocketAddr, key: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let req = format!(
        "POST /publish HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = ws_tests::raw_exchange(admin, req.as_bytes(), WAIT).await;
    let status = ws_tests::status_of(&resp);
    let json = serde_json::from_str(ws_tests::body_of(&resp))
        .unwrap_or_else(|e| panic!("answer body is not JSON ({e}): {resp:?}"));
    (status, json)
}

/// An echo client doing round trips one after the other on a task of its
/// own, timing each, until stopped.
struct Pinger {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<(Vec<Duration>, ws_tests::Client)>,
}

impl Pinger {
    fn start(mut ws: ws_tests::Client) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut times = Vec::new();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                times.push(round_trip(&mut ws, "ping").await);
            }
            (times, ws)
        });
        Self { stop, task }
    }

    /// The round-trip times, and the client back.
    async fn stop(self) -> (Vec<Duration>, ws_tests::Client) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.expect("pinger task")
    }
}

/// The `p`th percentile of `samples` (sorted in place).
fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let i = ((samples.len() as f64 * p / 100.0).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i]
}

// ------------------------------------------------- file descriptors --

/// The server's descriptor limit in the test.
const NOFILE: usize = 256;

/// Connections in the flood: more than the limit, by fewer than the listen
/// backlog holds (beyond it, the kernel drops their SYNs and they would
/// wait for its retries).
const FLOOD: usize = NOFILE + 100;

/// CPU the server may use while at the limit, as a share of one core: a
/// busy accept loop uses all of it.
const MAX_CPU_AT_LIMIT: f64 = 0.2;

/// How long the server's CPU time is measured at the limit.
const MEASURED: Duration = Duration::from_secs(2);

/// What the server logs once when `accept` starts failing.
const EXHAUSTED: &str = "accept failed (out of file descriptors or memory?)";

/// The soft and hard descriptor limits of `pid`.
fn nofile_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files in /proc/PID/limits");
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (v[0], v[1])
}

#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_one_and_a_short_one_is_named() {
    // A soft limit below the hard one, as shells and most service managers
    // hand it out: raised at start, no warning for the default
    // max_connections (1,000).
    let sc = Scenario::new("nofile-raise", "");
    let srv = sc.start(&["prlimit", "--nofile=256:4096", "--"]);
    assert_eq!(nofile_limits(srv.pid), (4096, 4096), "{}", sc.log());
    let log = sc.log();
    assert!(!log.contains("LimitNOFILE"), "{log}");
    drop(srv);
    // A hard limit too low for max_connections: one warning naming the
    // setting and how to raise the limit; the server serves anyway.
    let sc = Scenario::new("nofile-short", "");
    let srv = sc.start(&["prlimit", "--nofile=256:256", "--"]);
    assert_eq!(nofile_limits(srv.pid), (256, 256));
    rt().block_on(async {
        let mut ws = ws_tests::connect(&srv.url("/echo")).await;
        round_trip(&mut ws, "served").await;
    });
    let log = sc.log();
    assert_eq!(log.matches("LimitNOFILE").count(), 1, "{log}");
    assert!(log.contains("server.max_connections"), "{log}");
}

#[test]
fn a_flood_beyond_the_descriptor_limit_is_held_off_without_spinning_and_serving_resumes() {
    let sc = Scenario::new(
        "nofile",
        "[server]\n\
         max_connections = 0\n\
         max_connections_per_address = 0\n\
         max_connections_per_address_per_second = 0\n\
         handshake_timeout = \"30s\"\n",
    );
    let nofile = format!("--nofile={NOFILE}:{NOFILE}");
    let srv = sc.start(&["prlimit", &nofile, "--"]);
    let pid = srv.pid;
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(&format!(" {NOFILE} "))),
        "the server runs with {NOFILE} descriptors:\n{limits}"
    );
    rt().block_on(async {
        // A client from before the flood.
        let mut before = ws_tests::connect(&srv.url("/echo")).await;
        round_trip(&mut before, "before").await;
        let idle_fds = fds(pid);

        // The flood: every connection sends its upgrade request; those the
        // server accepts become sessions holding a descriptor each, the
        // rest wait in the listen backlog.
        let request = ws_tests::upgrade_request("/echo", "");
        let mut flood = Vec::with_capacity(FLOOD);
        for i in 0..FLOOD {
            let mut s = tokio::time::timeout(WAIT, TcpStream::connect(srv.addr))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "connection {i} connects within the wait limit (the backlog has room); \
                         server descriptors: {}",
                        fds(pid)
                    )
                })
                .expect("connect");
            s.write_all(request.as_bytes()).await.expect("write");
            flood.push(s);
        }
        ws_tests::eventually("the server logs that accept fails", || {
            sc.log().contains(EXHAUSTED)
        })
        .await;
        let at_limit = fds(pid);
        assert!(
            at_limit + 8 >= NOFILE,
            "the server is at its limit: {at_limit} descriptors (idle: {idle_fds})"
        );

        // At the limit: nearly idle.
        let cpu = cpu_seconds(pid);
        let started = Instant::now();
        tokio::time::sleep(MEASURED).await;
        let used = cpu_seconds(pid) - cpu;
        let share = used / started.elapsed().as_secs_f64();
        println!(
            "at the limit ({at_limit} descriptors, {FLOOD} connections in the flood): \
             server CPU {used:.3} s in {:?} ({:.1}% of one core)",
            started.elapsed(),
            share * 100.0
        );
        assert!(
            share < MAX_CPU_AT_LIMIT,
            "the server used {:.0}% of a core while at its descriptor limit (busy accept loop?)",
            share * 100.0
        );
        // About 40 failed attempts by now, one line in the log.
        let log = sc.log();
        assert_eq!(
            log.matches(EXHAUSTED).count(),
            1,
            "one log line per episode, not per failed attempt:\n{log}"
        );
        // The client it already had is still served.
        round_trip(&mut before, "during").await;
        assert!(
            std::fs::metadata(format!("/proc/{pid}")).is_ok(),
            "the server is alive"
        );

        // The flood goes away: descriptors free up, and the server serves
        // new clients again (after the backlog of closed connections).
        drop(flood);
        let freed = Instant::now();
        let mut after = ws_tests::connect(&srv.url("/echo")).await;
        round_trip(&mut after, "after").await;
        println!(
            "a new client echoed {:?} after the flood closed",
            freed.elapsed()
        );
        round_trip(&mut before, "still").await;
        ws_tests::eventually("the server logs that it accepts again", || {
            sc.log().contains("accepting connections again")
        })
        .await;
        drop((before, after));
        ws_tests::eventually("the flood's descriptors are released", || {
            fds(pid) <= idle_fds
        })
        .await;
    });
}

// ----------------------------------------------------- slow consumers --

const KEY: &str = "exhaustion-test-key";

/// Outgoing queue of the slow-consumer servers, in messages.
const QUEUE: usize = 16;

/// Size of each message sent to the slow consumers.
const MESSAGE: usize = 64 * 1024;

/// `write_buffer_size` of the slow-consumer servers.
const WRITE_BUFFER: usize = 64 * 1024;

/// Slow consumers of each kind.
const SLOW: usize = 4;

/// Rounds of publications in the control phase, without slow consumers:
/// about as many as it takes to close them all.
const CONTROL_ROUNDS: usize = 64;

fn slow_config(write_timeout: &str) -> String {
    format!(
        "[server]\n\
         max_connections_per_address = 0\n\
         max_connections_per_address_per_second = 0\n\
         max_messages_per_second = 0\n\
         [websocket]\n\
         outgoing_queue = {QUEUE}\n\
         write_timeout = \"{write_timeout}\"\n\
         write_buffer_size = {WRITE_BUFFER}\n\
         [admin]\n\
         listen = \"127.0.0.1:0\"\n\
         key = \"{KEY}\"\n"
    )
}

#[test]
fn clients_that_never_read_are_closed_with_1013_and_memory_stays_bounded() {
    let sc = Scenario::new("slow-1013", &slow_config("60s"));
    let srv = sc.start(&[]);
    let admin = srv.admin_addr();
    let pid = srv.pid;
    rt().block_on(async {
        // Others: a reader of the channel and an echo client.
        let mut reader = ws_tests::connect(&srv.url("/broadcast")).await;
        let echo = ws_tests::connect(&srv.url("/echo")).await;
        let pinging = Pinger::start(echo);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (mut quiet, echo) = pinging.stop().await;
        // Warm up the publication path, then take the baseline.
        let (status, _) =
            publish(admin, KEY, &json!({"channel": "broadcast", "data": "warm"})).await;
        assert_eq!(status, 202);
        assert_eq!(next_text(&mut reader).await, "warm");
        // The reader reads everything from here on.
        let reading = tokio::spawn(async move {
            let mut got = 0usize;
            loop {
                match tokio::time::timeout(WAIT, reader.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "done" => {
                        return (got, reader);
                    }
                    Ok(Some(Ok(Message::Text(_)))) => got += 1,
                    other => panic!("the reader lost its connection: {other:?}"),
                }
            }
        });

        // The control: the same publishing traffic with no slow consumer
        // (the direct sends go to no connection), timed the same way.
        let data = "x".repeat(MESSAGE);
        let pinging = Pinger::start(echo);
        for _ in 0..CONTROL_ROUNDS {
            let (status, _) =
                publish(admin, KEY, &json!({"channel": "broadcast", "data": data})).await;
            assert_eq!(status, 202);
            for _ in 0..SLOW {
                let (status, answer) = publish(
                    admin,
                    KEY,
                    &json!({"connection": "999999999", "data": data}),
                )
                .await;
                assert_eq!((status, &answer["delivered"]), (202, &json!(0)));
            }
        }
        let (mut control, echo) = pinging.stop().await;
        let mut published = CONTROL_ROUNDS;
        // After the control: the publication path is warm.
        let baseline = rss_kib(pid);

        // Slow consumers: some only subscribed to the channel, some that
        // learn their connection id (one read) and then never read again.
        let mut subscribers = Vec::new();
        for _ in 0..SLOW {
            subscribers.push(small_buffer_client(srv.addr, "/broadcast").await);
        }
        let mut direct = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..SLOW {
            let mut ws = small_buffer_client(srv.addr, "/demo_echo_Whoami").await;
            send(&mut ws, "who").await;
            let me: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
            ids.push(me["connection"].to_string());
            direct.push(ws);
        }

        // Publish until every slow consumer is closed, by broadcast and
        // directly; the echo client keeps measuring meanwhile.
        let mut direct_open: Vec<bool> = vec![true; SLOW];
        let mut peak = baseline;
        let pinging = Pinger::start(echo);
        let limit = 2000;
        for round in 0..limit {
            let (status, answer) =
                publish(admin, KEY, &json!({"channel": "broadcast", "data": data})).await;
            assert_eq!(status, 202, "{answer}");
            published += 1;
            let broadcast_reached = answer["delivered"].as_u64().unwrap();
            for (id, open) in ids.iter().zip(&mut direct_open) {
                if *open {
                    let (status, answer) =
                        publish(admin, KEY, &json!({"connection": id, "data": data})).await;
                    assert_eq!(status, 202, "{answer}");
                    *open = answer["delivered"] == 1;
                }
            }
            peak = peak.max(rss_kib(pid));
            // Only the reader is left on the channel.
            if broadcast_reached == 1 && direct_open.iter().all(|o| !o) {
                break;
            }
            assert!(
                round + 1 < limit,
                "slow consumers still open after {limit} rounds"
            );
        }
        let (mut during, mut echo) = pinging.stop().await;
        let (status, _) =
            publish(admin, KEY, &json!({"channel": "broadcast", "data": "done"})).await;
        assert_eq!(status, 202);
        let (got, reader) = reading.await.expect("reader task");
        assert_eq!(got, published, "the reader got every publication");

        // Each slow consumer, reading at last, finds its queue's messages
        // and then the close: 1013.
        for ws in subscribers.iter_mut().chain(direct.iter_mut()) {
            let (code, reason) = expect_close(ws).await;
            assert_eq!(code, 1013, "{reason}");
        }
        let pushed = (published - CONTROL_ROUNDS) * MESSAGE;
        let bound = 2 * SLOW * (QUEUE * MESSAGE + WRITE_BUFFER) / 1024;
        println!(
            "{} publications of {} KiB ({} MiB per slow consumer) before all {} slow \
             consumers were closed; server VmRSS baseline {baseline} KiB, peak {peak} KiB \
             (+{} KiB; queues and write buffers: {bound} KiB)",
            published - CONTROL_ROUNDS,
            MESSAGE / 1024,
            pushed >> 20,
            2 * SLOW,
            peak - baseline,
        );
        assert!(
            peak <= baseline + bound as u64 + 16 * 1024,
            "server memory grew by {} KiB, beyond the queues and write buffers ({bound} KiB)",
            peak - baseline
        );
        let c = percentile(&mut control, 50.0);
        let c99 = percentile(&mut control, 99.0);
        let q = percentile(&mut quiet, 50.0);
        let q99 = percentile(&mut quiet, 99.0);
        let d = percentile(&mut during, 50.0);
        let d99 = percentile(&mut during, 99.0);
        println!(
            "echo round trip of another client (report only): quiet (1 s) p50 {q:?} p99 {q99:?} \
             ({} samples); publishing, no slow consumer p50 {c:?} p99 {c99:?} ({} samples); \
             publishing while slow consumers fill up p50 {d:?} p99 {d99:?} ({} samples)",
            quiet.len(),
            control.len(),
            during.len()
        );
        // The others are still served.
        round_trip(&mut echo, "still here").await;
        drop((reader, echo));
    });
}

#[test]
fn a_client_that_never_reads_its_echoes_is_closed_with_1013_or_dropped_at_write_timeout() {
    let sc = Scenario::new("slow-echo", &slow_config("2s"));
    // The session's debug lines say how each connection ended.
    let srv = sc.start(&["env", "RUST_LOG=warn,ws_runtime::session=debug"]);
    let pid = srv.pid;
    rt().block_on(async {
        let mut echo = ws_tests::connect(&srv.url("/echo")).await;
        round_trip(&mut echo, "warm").await;
        let idle_fds = fds(pid);
        let baseline = rss_kib(pid);
        let mut stalled = tokio::task::JoinSet::new();
        for _ in 0..SLOW {
            let mut ws = small_buffer_client(srv.addr, "/echo").await;
            // Sends until the server drops it; never reads.
            stalled.spawn(async move {
                let started = Instant::now();
                let chunk = vec![7u8; MESSAGE];
                let mut sent = 0usize;
                loop {
                    let sending = ws.send(Message::binary(chunk.clone()));
                    match tokio::time::timeout(Duration::from_secs(30), sending).await {
                        Ok(Ok(())) => sent += 1,
                        Ok(Err(_)) => return (sent, started.elapsed()),
                        Err(_) => panic!("still not dropped after 30 s"),
                    }
                }
            });
        }
        let mut peak = baseline;
        let mut results = Vec::new();
        loop {
            tokio::select! {
                joined = stalled.join_next() => match joined {
                    Some(r) => results.push(r.expect("stalled client task")),
                    None => break,
                },
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    peak = peak.max(rss_kib(pid));
                    round_trip(&mut echo, "meanwhile").await;
                }
            }
        }
        for (sent, after) in &results {
            println!(
                "a client that never read was dropped after {after:?} ({sent} messages of {} KiB sent)",
                MESSAGE / 1024
            );
        }
        // Each was closed per policy: 1013 once its queue was full (a
        // close frame it never reads: dropped after the close grace), or
        // dropped when a write blocked for write_timeout.
        // The last closes may still be under way (the close grace): the
        // log is read until every one is there, within the wait limit.
        let closed_lines = |log: &str| {
            log.lines()
                .filter(|l| l.contains("connection closed") && l.contains("route=/echo"))
                .filter(|l| !l.contains("initiator=Client"))
                .count()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let mut log = sc.log();
        while closed_lines(&log) < SLOW && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            log = sc.log();
        }
        let ended: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("connection closed") && l.contains("route=/echo"))
            .filter(|l| !l.contains("initiator=Client"))
            .collect();
        assert_eq!(ended.len(), SLOW, "{log}");
        for l in &ended {
            assert!(
                l.contains("code=1013") || l.contains("initiator=Transport"),
                "closed with 1013 or dropped at write_timeout: {l}"
            );
        }
        let bound = SLOW * (QUEUE * MESSAGE + WRITE_BUFFER) / 1024;
        println!(
            "server VmRSS baseline {baseline} KiB, peak {peak} KiB (+{} KiB; queues and write \
             buffers: {bound} KiB)",
            peak - baseline
        );
        assert!(peak <= baseline + bound as u64 + 16 * 1024);
        ws_tests::eventually("the dropped clients' descriptors are released", || {
            fds(pid) <= idle_fds
        })
        .await;
        round_trip(&mut echo, "still here").await;
    });
}
