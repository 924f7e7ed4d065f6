//! Test helpers: a real `redis-server` on a free loopback port in a temporary
//! directory (stopped on drop), two-server set-ups, and connection helpers.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ws_broker::BrokerConfig;
use ws_core::__runtime::{self, Outbox, Outgoing, RegisteredOutbox};
use ws_core::{Connection, HandshakeInfo, Hub, Message, UserAspect};

/// A `redis-server` process of our own.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    binary: PathBuf,
    dir: tempfile::TempDir,
}

fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            "/usr/sbin".into(),
            "/usr/bin".into(),
            "/usr/local/bin".into(),
        ])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `redis-cli`, when installed (it comes with `redis-server` on Debian).
pub fn redis_cli() -> Option<PathBuf> {
    find("redis-cli")
}

impl RedisServer {
    /// Starts one; `None` (after a notice) when `redis-server` is not
    /// installed, except under `CI=true`, where that fails the test.
    pub fn start() -> Option<Self> {
        let Some(binary) = find("redis-server") else {
            let hint = "redis-server not found: install the Debian package `redis-server` \
                        (apt-get install -y redis-server)";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{hint} (CI=true: the broker tests must run)"
            );
            eprintln!("SKIPPED: {hint}");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("ws-broker-redis-")
            .tempdir()
            .expect("temp dir");
        let mut s = Self {
            child: None,
            port: 0,
            binary,
            dir,
        };
        for _ in 0..5 {
            s.port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            if s.spawn() {
                return Some(s);
            }
        }
        panic!("redis-server did not start on a free port after 5 attempts");
    }

    /// Starts the process on `self.port`; whether it answers PING.
    fn spawn(&mut self) -> bool {
        let log = self.dir.path().join("redis.log");
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return false; // exited: the port was taken
            }
            if ping(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the process with SIGKILL (no goodbye to clients) and waits.
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Starts a fresh process on the same port (empty data).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGSTOP: the process hangs, its connections stay open and nothing
    /// is answered (unlike a crash, which clients notice at once).
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("redis-server is running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        nix::sys::signal::kill(pid, sig).expect("signal redis-server");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a Redis answers PING on `port`.
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// The prefix the tests use.
pub const PREFIX: &str = "ws-test";

/// A configuration with short timers: heartbeat 100 ms, expiry 400 ms.
pub fn config(url: &str) -> BrokerConfig {
    BrokerConfig {
        prefix: PREFIX.to_owned(),
        presence_heartbeat: Duration::from_millis(100),
        presence_expiry: Duration::from_millis(400),
        reconnect_max_delay: Duration::from_millis(400),
        command_timeout: Duration::from_secs(2),
        ..BrokerConfig::with_url(url)
    }
}

/// A connection on `hub`, logged in as `user` (id, name) when given.
pub fn open(hub: &Hub, user: Option<(&str, &str)>, cap: usize) -> (Connection, RegisteredOutbox) {
    let mut info = HandshakeInfo::new(([127, 0, 0, 1], 40000).into(), "/chat");
    if let Some((id, name)) = user {
        info.aspects
            .insert("frontend.user", UserAspect::user(id).with_username(name));
    }
    __runtime::open_registered(info, cap, hub.clone())
}

/// Waits for `n` messages, for at most `limit`.
pub async fn recv_n(outbox: &mut Outbox, n: usize, limit: Duration) -> Vec<Message> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Vec::with_capacity(n);
    while buf.len() < n {
        let want = n - buf.len();
        match tokio::time::timeout_at(deadline, outbox.recv(&mut buf, want)).await {
            Ok(Some(Outgoing::Messages(_))) => {}
            Ok(other) => panic!("unexpected {other:?} after {} messages", buf.len()),
            Err(_) => panic!(
                "only {} of {n} messages within {limit:?}: {buf:?}",
                buf.len()
            ),
        }
    }
    buf
}

/// Asserts nothing more arrives within `wait`.
pub async fn assert_quiet(outbox: &mut Outbox, wait: Duration) {
    let mut buf = Vec::new();
    if let Ok(got) = tokio::time::timeout(wait, outbox.recv(&mut buf, 16)).await {
        panic!("expected nothing more, got {got:?}: {buf:?}");
    }
}

/// Polls `check` every 10 ms until it holds; returns how long that took.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
