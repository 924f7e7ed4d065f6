//! A real `redis-server` for the tests (the Debian package), on a free
//! loopback port in a temporary directory, without persistence, stopped
//! when dropped; plus a minimal RESP client for setting up sessions.
//!
//! A missing binary skips the test with a notice, except under `CI=true`,
//! where it fails and says which package to install. The server is started
//! under `setpriv --pdeathsig` when available, so a test process that dies
//! leaves none behind.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Skips (prints why, returns `None`) or, under `CI=true`, fails.
fn missing<T>(what: &str, package: &str) -> Option<T> {
    let msg = format!(
        "{what} not found: install the Debian package `{package}` \
         (apt-get install -y {package})"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            "/usr/bin".into(),
            "/usr/sbin".into(),
            "/usr/local/bin".into(),
        ])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A running `redis-server`.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    /// Starts one; `None` (after a notice) when `redis-server` is missing,
    /// outside CI.
    pub fn start() -> Option<Self> {
        let Some(bin) = find_in_path("redis-server") else {
            return missing("redis-server", "redis-server");
        };
        let mut last_log = String::new();
        for attempt in 0..5 {
            let dir = std::env::temp_dir().join(format!(
                "ws-tests-redis-{}-{}-{attempt}",
                std::process::id(),
                crate::free_port()
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let port = crate::free_port();
            let log = std::fs::File::create(dir.join("redis.log")).expect("log file");
            let mut cmd = match find_in_path("setpriv") {
                Some(setpriv) => {
                    let mut c = Command::new(setpriv);
                    c.args(["--pdeathsig", "SIGKILL", "--"]).arg(&bin);
                    c
                }
                None => Command::new(&bin),
            };
            let child = cmd
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file"))
                .stderr(log)
                .spawn()
                .expect("spawn redis-server");
            let mut redis = Self {
                child: Some(child),
                port,
                dir,
            };
            if redis.wait_ready(Duration::from_secs(5)) {
                return Some(redis);
            }
            // Most likely the port was taken meanwhile: try another.
            redis.stop();
            last_log = std::fs::read_to_string(redis.dir.join("redis.log")).unwrap_or_default();
        }
        panic!("redis-server did not start: {last_log}");
    }

    fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && c.try_wait().ok().flatten().is_some()
            {
                return false;
            }
            if self.try_command(&["PING"]).is_ok_and(|r| r == "+PONG") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one command and returns the first line of the answer
    /// (`+OK`, `:1`, …); panics when Redis cannot be reached.
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
        let mut line = String::new();
        let mut reader = BufReader::new(s);
        reader.read_line(&mut line)?;
        // A bulk answer: read its body too, so the server is not left
        // writing to a closed socket.
        if let Some(len) = line
            .strip_prefix('$')
            .and_then(|l| l.trim().parse::<usize>().ok())
        {
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body)?;
        }
        Ok(line.trim_end().to_owned())
    }

    /// SIGSTOP: the server hangs with its connections open (it neither
    /// answers nor refuses), until [`Redis::resume`].
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// SIGCONT after [`Redis::pause`].
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = self.child.as_ref().expect("redis-server runs").id();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
        nix::sys::signal::kill(pid, sig).unwrap_or_else(|e| panic!("{sig} to {pid}: {e}"));
    }

    /// Stops the server now (the "store down" case).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
