//! A real `redis-server` (Debian package `redis-server`) and a minimal RESP
//! client for setting up and inspecting its data.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::process::{ChildGuard, dying_with_parent};
use crate::{TempDir, free_port, skip_or_fail};

/// How long a start (or restart) may take before it counts as failed.
const READY_LIMIT: Duration = Duration::from_secs(5);

/// A `redis-server` of the test's own on a free loopback port, in a
/// temporary directory, without persistence; killed when dropped.
#[derive(Debug)]
pub struct Redis {
    child: Option<ChildGuard>,
    port: u16,
    binary: PathBuf,
    dir: TempDir,
}

impl Redis {
    /// Starts one; `None` (after a notice) when `redis-server` is not
    /// installed, outside CI (see [`skip_or_fail`]).
    ///
    /// # Panics
    /// Under `CI=true` without `redis-server`; when it does not start on
    /// any of five free ports (its log is shown).
    pub fn start() -> Option<Self> {
        let Some(binary) = crate::find_in_path("redis-server") else {
            return skip_or_fail("redis-server", "redis-server");
        };
        let mut redis = Self {
            child: None,
            port: 0,
            binary,
            dir: TempDir::new("redis"),
        };
        for _attempt in 0..5 {
            redis.port = free_port();
            if redis.spawn() {
                return Some(redis);
            }
            // Most likely the port was taken meanwhile: try another.
        }
        panic!("redis-server did not start: {}", redis.log());
    }

    /// Starts the process on `self.port`; whether it answers PING in time.
    fn spawn(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.join("redis.log")).expect("create redis.log");
        let child = dying_with_parent(self.binary.as_os_str(), None)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("redis.log"))
            .stderr(log)
            .spawn()
            .expect("spawn redis-server");
        let mut child = ChildGuard::new(child);
        let up = child.until_ready(READY_LIMIT, Duration::from_millis(10), || {
            self.try_command(&["PING"]).is_ok_and(|r| r == "+PONG")
        });
        self.child = up.then_some(child);
        up
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs one command on a connection of its own and returns the answer:
    /// a status, an error or an integer as its line (`+OK`, `-ERR …`,
    /// `:1`), a bulk string as its content (`$-1` for none). Arrays are
    /// not read: their first line (`*2`) is returned.
    ///
    /// # Panics
    /// When Redis cannot be reached or does not answer within 2 s.
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    fn try_command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req)?;
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        match line.strip_prefix('$').and_then(|l| l.parse::<usize>().ok()) {
            Some(len) => {
                let mut body = vec![0; len + 2];
                reader.read_exact(&mut body)?;
                body.truncate(len);
                Ok(String::from_utf8_lossy(&body).into_owned())
            }
            None => Ok(line.to_owned()),
        }
    }

    /// SIGSTOP: the server hangs with its connections open (it neither
    /// answers nor refuses, unlike a crash, which clients notice at once),
    /// until [`Redis::resume`].
    ///
    /// # Panics
    /// When it is not running.
    pub fn pause(&self) {
        self.running().signal(Signal::SIGSTOP);
    }

    /// SIGCONT after [`Redis::pause`].
    ///
    /// # Panics
    /// When it is not running.
    pub fn resume(&self) {
        self.running().signal(Signal::SIGCONT);
    }

    fn running(&self) -> &ChildGuard {
        self.child.as_ref().expect("redis-server is running")
    }

    /// SIGKILL (no goodbye to its clients: the "store down" case), and
    /// waits for the exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }

    /// A fresh, empty process on the same port (killing the running one
    /// first, if any).
    ///
    /// # Panics
    /// When it does not start within 5 s.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + READY_LIMIT;
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_answers_then_stops_and_restarts() {
        let Some(mut redis) = Redis::start() else {
            return;
        };
        assert_eq!(redis.command(&["SET", "k", "v"]), "+OK");
        assert_eq!(redis.command(&["GET", "k"]), "v");
        assert_eq!(redis.command(&["GET", "none"]), "$-1");
        assert_eq!(redis.command(&["DEL", "k"]), ":1");
        assert!(redis.command(&["NOSUCHCOMMAND"]).starts_with("-ERR"));
        redis.command(&["SET", "k", "v"]);
        redis.kill();
        assert!(TcpStream::connect(("127.0.0.1", redis.port())).is_err());
        redis.restart();
        assert_eq!(redis.command(&["EXISTS", "k"]), ":0", "a fresh server");
        let dir = redis.dir.path().to_path_buf();
        drop(redis);
        assert!(!dir.exists());
    }
}
