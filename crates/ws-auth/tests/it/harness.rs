//! Real servers for the tests: Redis and PostgreSQL from their Debian
//! packages on free loopback ports, each in its own temporary directory and
//! stopped when dropped, plus an in-process HTTP application.
//!
//! A missing binary skips the test with a notice, except under `CI=true`,
//! where it fails and says which Debian package to install. PostgreSQL
//! refuses to run as root, so as root `initdb` and `postgres` run as
//! `nobody` through `setpriv` (util-linux). Servers are started on the test's
//! own thread with a parent-death signal, so a test process that dies
//! leaves none behind.

use std::convert::Infallible;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tempfile::TempDir;

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

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `cmd` wrapped in `setpriv` with a parent-death signal (and, for `user`,
/// that user's ids), when setpriv exists.
fn guarded(program: &Path, user: Option<&nix::unistd::User>) -> Command {
    match find_in_path("setpriv") {
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            if let Some(u) = user {
                c.args([
                    "--reuid",
                    &u.uid.to_string(),
                    "--regid",
                    &u.gid.to_string(),
                    "--clear-groups",
                ]);
            }
            c.args(["--pdeathsig", "SIGKILL", "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn log_file(dir: &Path, name: &str) -> (File, File) {
    let f = File::create(dir.join(name)).expect("create log file");
    let g = f.try_clone().expect("clone log file");
    (f, g)
}

fn read_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

fn stop_child(child: &mut Child, signal: nix::sys::signal::Signal, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A real `redis-server` on a free loopback port, without persistence.
pub(crate) struct Redis {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl Redis {
    /// Starts one; `None` when `redis-server` is missing (outside CI).
    pub(crate) fn start() -> Option<Self> {
        let Some(bin) = find_in_path("redis-server") else {
            return missing("redis-server", "redis-server");
        };
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("ws-auth-redis")
                .tempdir()
                .expect("temp dir");
            let port = free_port();
            let (out, err) = log_file(dir.path(), "redis.log");
            let child = guarded(&bin, None)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
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
            last_log = read_log(redis.dir.path(), "redis.log");
        }
        panic!("redis-server did not start: {last_log}");
    }

    fn wait_ready(&mut self, limit: Duration) -> bool {
        use std::io::{Read as _, Write as _};
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && c.try_wait().ok().flatten().is_some()
            {
                return false;
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 16];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf)
                        .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
                {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// `redis://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A connection for setting up sessions.
    pub(crate) async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis")
    }

    /// Stops the server now (the "store down" case).
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(
                &mut c,
                nix::sys::signal::Signal::SIGKILL,
                Duration::from_secs(2),
            );
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real PostgreSQL cluster (`initdb` + `postgres`) on a free loopback
/// port, trust authentication, user `postgres`.
pub(crate) struct Postgres {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl Postgres {
    fn bin_dir() -> Option<PathBuf> {
        let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                    .then_some((version, bin))
            })
            .collect();
        dirs.sort();
        dirs.pop().map(|(_, bin)| bin)
    }

    /// Starts one; `None` when PostgreSQL is missing (outside CI). Must run
    /// on the test's own thread (the server dies with that thread).
    pub(crate) async fn start() -> Option<Self> {
        let Some(bin) = Self::bin_dir() else {
            return missing(
                "PostgreSQL (/usr/lib/postgresql/*/bin/initdb)",
                "postgresql",
            );
        };
        let user = if is_root() {
            if find_in_path("setpriv").is_none() {
                return missing("setpriv (to run PostgreSQL as nobody)", "util-linux");
            }
            Some(
                nix::unistd::User::from_name("nobody")
                    .ok()
                    .flatten()
                    .expect("user `nobody` (PostgreSQL refuses to run as root)"),
            )
        } else {
            None
        };
        // As root, the server's user must reach the directory: use /tmp
        // unless the temp dir is reachable by everyone.
        let base = if user.is_some() && !world_traversable(&std::env::temp_dir()) {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("ws-auth-pg")
            .tempdir_in(base)
            .expect("temp dir");
        if let Some(u) = &user {
            std::os::unix::fs::chown(dir.path(), Some(u.uid.as_raw()), Some(u.gid.as_raw()))
                .expect("chown the PostgreSQL directory to nobody");
        }
        let data = dir.path().join("data");
        let (out, err) = log_file(dir.path(), "initdb.log");
        let status = guarded(&bin.join("initdb"), user.as_ref())
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .current_dir(dir.path())
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .expect("run initdb");
        assert!(
            status.success(),
            "initdb failed: {}",
            read_log(dir.path(), "initdb.log")
        );
        let port = free_port();
        let (out, err) = log_file(dir.path(), "postgres.log");
        let child = guarded(&bin.join("postgres"), user.as_ref())
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-k")
            .arg(dir.path())
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=30"])
            .current_dir(dir.path())
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn postgres");
        let mut pg = Self {
            child: Some(child),
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            use sqlx::Connection as _;
            if let Ok(c) = sqlx::PgConnection::connect(&pg.url()).await {
                let _ = c.close().await;
                return Some(pg);
            }
            let exited = pg
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited || Instant::now() > deadline {
                pg.stop();
                panic!(
                    "postgres did not start: {}",
                    read_log(pg.dir.path(), "postgres.log")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server now (fast shutdown; the "store down" case).
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(
                &mut c,
                nix::sys::signal::Signal::SIGINT,
                Duration::from_secs(5),
            );
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn world_traversable(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    dir.ancestors()
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// What the in-process application saw of one request.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) method: http::Method,
    pub(crate) uri: http::Uri,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

/// The application's answer: status and body.
pub(crate) type Answer = (StatusCode, String);

/// A real HTTP/1.1 application on a free loopback port, answering with
/// `handler`; counts requests. Stops when dropped.
pub(crate) struct App {
    pub(crate) addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    pub(crate) async fn start<F>(handler: F) -> Self
    where
        F: Fn(&Seen) -> Answer + Send + Sync + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the app");
        let addr = listener.local_addr().expect("app address");
        let hits = Arc::new(AtomicUsize::new(0));
        let handler = Arc::new(handler);
        let counter = Arc::clone(&hits);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = Arc::clone(&handler);
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let handler = Arc::clone(&handler);
                        let counter = Arc::clone(&counter);
                        async move {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let seen = Seen {
                                method: parts.method,
                                uri: parts.uri,
                                headers: parts.headers,
                                body,
                            };
                            let (status, text) = handler(&seen);
                            if status == StatusCode::GATEWAY_TIMEOUT {
                                // "Slow": answer long after any timeout.
                                tokio::time::sleep(Duration::from_secs(5)).await;
                            }
                            let mut resp = Response::new(Full::new(Bytes::from(text)));
                            *resp.status_mut() = status;
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, hits, task }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests served so far.
    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Logs of the code under test, shown for failing tests.
pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "ws_auth=debug".into()),
        )
        .with_test_writer()
        .try_init();
}
