//! Servers and clients: started pinned, read line by line, stopped by pid.

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::Env;
use super::config::clear_ws_env;
use super::results::Figures;
use super::scenarios::{Generator, Kind};
use crate::util::wait_timeout;

/// A command run through `sh` so that its soft limit of open files is
/// raised to the hard limit first, pinned to `core` with `taskset` when
/// given. `exec` keeps the pid: the child's pid is the program's.
pub(crate) fn pinned(core: Option<usize>, exe: &Path) -> Command {
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
pub(crate) fn lines_of(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
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

pub(crate) fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
    }
}

/// A running server, stopped by pid when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
    name: &'static str,
}

impl Server {
    pub(crate) fn start(env: &Env, kind: Kind, log: &Path) -> Result<Self> {
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
    pub(crate) fn stop(&mut self) -> Result<()> {
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
pub(crate) struct Client {
    pub(crate) child: Child,
    pub(crate) pid: u32,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) lines: mpsc::Receiver<String>,
    pub(crate) stderr: mpsc::Receiver<String>,
    name: &'static str,
}

impl Client {
    /// ws-bench with `args`, pinned to the client core.
    pub(crate) fn start(env: &Env, args: &[String], stdin: bool) -> Result<Self> {
        Self::start_generator(env, Generator::WsBench, args, stdin)
    }

    /// The load generator `generator` with `args`, pinned to the client core.
    pub(crate) fn start_generator(
        env: &Env,
        generator: Generator,
        args: &[String],
        stdin: bool,
    ) -> Result<Self> {
        let exe = match generator {
            Generator::WsBench => &env.bins.bench,
            Generator::Peer => &env.bins.peer,
        };
        let name = generator.name();
        let mut cmd = pinned(env.pin.map(|p| p.1), exe);
        cmd.args(args)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
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
            name,
        })
    }

    /// Waits for the client to end within `limit`; its last stdout line as JSON.
    pub(crate) fn finish(mut self, limit: Duration) -> Result<Figures> {
        let name = self.name;
        drop(self.stdin.take());
        let status = match wait_timeout(&mut self.child, limit)? {
            Some(s) => s,
            None => {
                signal(self.pid, nix::sys::signal::Signal::SIGKILL);
                let _ = self.child.wait();
                bail!("{name} (pid {}) did not finish within {limit:?}", self.pid);
            }
        };
        let err: Vec<String> = self.stderr.try_iter().collect();
        if !status.success() {
            bail!("{name} failed ({status}): {}", err.join(" | "));
        }
        let out: Vec<String> = self
            .lines
            .recv_timeout(Duration::from_secs(2))
            .into_iter()
            .chain(self.lines.try_iter())
            .collect();
        let last = out
            .last()
            .with_context(|| format!("{name} printed no result"))?;
        serde_json::from_str(last).with_context(|| format!("{name} printed {last:?}"))
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
