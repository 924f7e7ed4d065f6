//! Helpers shared by the tests that drive the real `ws-cli` binary: which
//! binary, one-shot commands, and a `ws-cli start` child stopped by pid
//! when the test ends (temporary directories, Redis and PostgreSQL come
//! from `ws_test_support`).
//!
//! The binary is the debug one Cargo built for the test, or the one named
//! by `WS_CLI_BIN` (`cargo xtask e2e` sets it to the release binary).

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ws_test_support::ChildGuard;

/// The `ws-cli` binary under test.
pub fn bin() -> PathBuf {
    std::env::var_os("WS_CLI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ws-cli")))
}

/// Runs `ws-cli ARGS --state-dir STATE` to completion.
pub fn cli(state: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env_remove("WS_CONFIG")
        .env_remove("WS_PORT")
        .output()
        .expect("run ws-cli")
}

/// A command's stdout, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's stderr, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A `ws-cli start` child; killed (by its pid) if the test fails before
/// stopping it.
pub struct Running {
    child: ChildGuard,
    /// Where the WebSocket server listens.
    pub addr: SocketAddr,
    /// The child's pid, as `start` printed it.
    pub pid: u32,
    /// stdout lines after the first one.
    lines: mpsc::Receiver<String>,
    /// Where stderr goes, when not inherited: shown if the test fails.
    log: Option<PathBuf>,
}

impl Running {
    /// `ws-cli start --host 127.0.0.1 --port 0 --state-dir STATE EXTRA…`,
    /// stderr inherited; returns once the server listens.
    pub fn start(state: &Path, extra: &[&str]) -> Self {
        Self::spawn(state, extra, None)
    }

    /// Like [`Running::start`], with stderr written to `log` (its tail is
    /// printed when the test fails) instead of the test's own stderr.
    pub fn start_logged(state: &Path, extra: &[&str], log: &Path) -> Self {
        Self::spawn(state, extra, Some(log))
    }

    /// Like [`Running::start_logged`], run by `wrapper` (a command that
    /// execs its arguments in the same process, such as
    /// `prlimit --nofile=256:256 --` or `env RUST_LOG=debug`), so its pid is
    /// the server's.
    pub fn start_wrapped(state: &Path, extra: &[&str], log: &Path, wrapper: &[&str]) -> Self {
        Self::spawn_with(state, extra, Some(log), wrapper)
    }

    fn spawn(state: &Path, extra: &[&str], log: Option<&Path>) -> Self {
        Self::spawn_with(state, extra, log, &[])
    }

    fn spawn_with(state: &Path, extra: &[&str], log: Option<&Path>, wrapper: &[&str]) -> Self {
        let err = match log {
            Some(p) => Stdio::from(std::fs::File::create(p).expect("create log file")),
            None => Stdio::inherit(),
        };
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        let mut child = cmd
            .args(["start", "--host", "127.0.0.1", "--port", "0", "--state-dir"])
            .arg(state)
            .args(extra)
            .env_remove("WS_CONFIG")
            .env_remove("WS_PORT")
            .env_remove("WS_ADMIN_KEY")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("spawn ws-cli start");
        let stdout = child.stdout.take().unwrap();
        let mut child = ChildGuard::new(child);
        let mut lines = BufReader::new(stdout).lines();
        let first = match lines.next() {
            Some(Ok(l)) => l,
            other => {
                child.kill();
                let shown = log.map(tail).unwrap_or_default();
                panic!("`ws-cli start` printed no first line ({other:?}){shown}");
            }
        };
        // "WebSocket server running on ADDR with pid PID"
        let words: Vec<&str> = first.split_whitespace().collect();
        assert_eq!(
            &words[..4],
            ["WebSocket", "server", "running", "on"],
            "{first}"
        );
        let addr: SocketAddr = words[4].parse().unwrap();
        let pid: u32 = words[7].parse().unwrap();
        assert_eq!(pid, child.pid());
        // Keep draining stdout so the child never blocks on a full pipe;
        // the lines stay readable through `line_starting`.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Self {
            child,
            addr,
            pid,
            lines: rx,
            log: log.map(Path::to_path_buf),
        }
    }

    /// `ws://ADDR/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// The next stdout line starting with `prefix` (earlier lines are
    /// skipped), within `limit`.
    pub fn line_starting(&self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(e) => panic!("no stdout line starting with {prefix:?} within {limit:?}: {e}"),
            }
        }
    }

    /// The admin API's address, from `admin API on http://ADDR/publish`.
    pub fn admin_addr(&self) -> SocketAddr {
        let l = self.line_starting("admin API on ", Duration::from_secs(10));
        l.trim_start_matches("admin API on http://")
            .trim_end_matches("/publish")
            .parse()
            .unwrap_or_else(|e| panic!("{l:?}: {e}"))
    }

    /// Waits for the process to exit; its exit code (`None`: killed by a
    /// signal).
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        self.child.wait(limit).code()
    }

    /// Whether [`Running::wait`] saw the process exit.
    pub fn has_exited(&self) -> bool {
        self.child.exit_status().is_some()
    }

    /// Sends `sig` to the child, by pid.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), sig).unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // The guard kills the process (if still running) after this.
        if std::thread::panicking()
            && let Some(log) = &self.log
        {
            eprintln!("--- stderr of ws-cli pid {} ---{}", self.pid, tail(log));
        }
    }
}

/// The last 8 KiB of a log file, for failure messages.
pub fn tail(path: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(8192)));
    let mut s = Vec::new();
    let _ = f.read_to_end(&mut s);
    format!("\n{}", String::from_utf8_lossy(&s))
}

/// Polls `check` every 20 ms until it holds, failing the test after
/// `limit`; how long that took.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
