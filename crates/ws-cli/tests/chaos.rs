//! Chaos with the real stores, each against a real `ws-cli start` driven
//! by real WebSocket clients and the admin API:
//!
//! - Redis stopped with SIGSTOP (it hangs, it does not refuse): handshakes
//!   with a Redis aspect still finish within the aspect's `timeout` under
//!   its `on_error` policy, publications are refused with 503 within the
//!   broker's `command_timeout`, and everything works again after SIGCONT;
//! - PostgreSQL restarted while handshakes keep coming;
//! - an HTTP session callback that answers only after 30 s;
//! - the state directory read-only at start (a clear error and exit code 1)
//!   and while the server runs (it keeps serving; `list` and `stop` behave).
//!
//! Redis and PostgreSQL come from their Debian packages (`redis-server`,
//! `postgresql`), started per test on free loopback ports; without them the
//! tests are skipped with a notice, except under `CI=true`. A read-only
//! directory is a read-only tmpfs where mounting is allowed (root with
//! CAP_SYS_ADMIN), else a directory without write permission (for root
//! without mount rights, the server then runs without CAP_DAC_OVERRIDE).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Running, eventually};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use ws_test_support::{Postgres, Redis, TempDir};

/// The admin API's key in these tests.
const KEY: &str = "chaos-test-key";
/// The aspects' `timeout` in these tests.
const ASPECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The broker's `command_timeout` in these tests.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// What scheduling on a loaded 2-core machine may add to a deadline.
const SLACK: Duration = Duration::from_millis(700);
const WHOAMI: &str = "/demo_echo_Whoami";

/// Connection and message limits off: the tests make many handshakes.
const OPEN_LIMITS: &str = "[server]
max_connections_per_address = 0
max_connections_per_address_per_second = 0
max_messages_per_second = 0
";

/// A configuration file in `dir`, and the `--config` arguments for it.
fn write_config(dir: &TempDir, text: &str) -> Vec<String> {
    let path = dir.join("ws.toml");
    std::fs::write(&path, text).unwrap();
    vec!["--config".into(), path.to_str().unwrap().to_owned()]
}

fn start(dir: &TempDir, text: &str) -> Running {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let args = write_config(dir, text);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Running::start_logged(&state, &args, &dir.join("server.log"))
}

/// How a handshake on `/demo_echo_Whoami` with `cookie` ended, and how long
/// it took: `Ok(aspects)` (what `whoami` says) or `Err(status)`.
async fn handshake(server: SocketAddr, cookie: &str) -> (Result<Value, u16>, Duration) {
    let started = Instant::now();
    let url = format!("ws://{server}{WHOAMI}");
    let r = ws_tests::connect_with(&url, &[("cookie", cookie)]).await;
    let took = started.elapsed();
    match r {
        Ok(mut ws) => {
            ws_tests::send(&mut ws, "?").await;
            let v: Value = serde_json::from_str(&ws_tests::next_text(&mut ws).await).unwrap();
            let _ = ws.close(None).await;
            (Ok(v["aspects"].clone()), took)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            (Err(resp.status().as_u16()), took)
        }
        Err(e) => panic!("handshake with {cookie:?}: {e}"),
    }
}

/// `POST /publish` of `data` to `channel`; the status, the answer and how
/// long it took.
async fn publish(admin: SocketAddr, channel: &str, data: &str) -> (u16, Value, Duration) {
    let body = json!({"channel": channel, "data": data}).to_string();
    let req = format!(
        "POST /publish HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let resp = ws_tests::raw_exchange(admin, req.as_bytes(), Duration::from_secs(10)).await;
    let took = started.elapsed();
    let v = serde_json::from_str(ws_tests::body_of(&resp)).unwrap_or(Value::Null);
    (ws_tests::status_of(&resp), v, took)
}

// ---------------------------------------------------------- Redis hangs --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_holds_neither_handshakes_nor_publications() {
    let Some(redis) = Redis::start() else { return };
    redis.command(&["SET", "sess:abc", r#"{"id": 7, "username": "ann"}"#]);
    let url = redis.url();
    let dir = TempDir::new("chaos-redis");
    let server = start(
        &dir,
        &format!(
            r#"{OPEN_LIMITS}
[broker]
redis_url = "{url}"
command_timeout = "{}ms"
presence_heartbeat = "200ms"
presence_expiry = "600ms"
reconnect_max_delay = "500ms"

[admin]
listen = "127.0.0.1:0"
key = "{KEY}"

[[aspect]]
name = "frontend.user"
credential = {{ cookie = "sid" }}
on_error = "anonymous"
[aspect.redis]
url = "{url}"
timeout = "{}ms"

[[aspect]]
name = "backend.user"
credential = {{ cookie = "bsid" }}
on_error = "reject"
[aspect.redis]
url = "{url}"
timeout = "{}ms"
"#,
            COMMAND_TIMEOUT.as_millis(),
            ASPECT_TIMEOUT.as_millis(),
            ASPECT_TIMEOUT.as_millis()
        ),
    );
    let admin = server.admin_addr();
    let (me, _) = handshake(server.addr, "sid=abc").await;
    assert_eq!(me.unwrap()["frontend.user"]["logged_in"], true);
    let mut chat = ws_tests::connect(&server.url("/chat/hang")).await;
    // In the room once its presence list came.
    while !serde_json::from_str::<Value>(&ws_tests::next_text(&mut chat).await)
        .is_ok_and(|v| v["type"] == "presence")
    {}
    let (status, answer, _) = publish(admin, "chat:hang", "before").await;
    assert_eq!(status, 202, "{answer}");
    let got = next_pushed(&mut chat).await;
    assert_eq!(got, "before");

    redis.pause();
    let paused = Instant::now();
    // Handshakes: the anonymous policy lets them in as anonymous, the
    // reject policy answers 503; either within the aspect's timeout, many
    // at once as fast as one.
    let (tasks_anon, tasks_reject): (Vec<_>, Vec<_>) = (0..8)
        .map(|_| {
            (
                handshake(server.addr, "sid=abc"),
                handshake(server.addr, "bsid=abc"),
            )
        })
        .unzip();
    let started = Instant::now();
    let (anon, reject) = tokio::join!(
        futures_util::future::join_all(tasks_anon),
        futures_util::future::join_all(tasks_reject)
    );
    let all_took = started.elapsed();
    let mut slowest = Duration::ZERO;
    for (r, took) in anon {
        let aspects = r.expect("on_error = anonymous lets the handshake in");
        assert_eq!(aspects["frontend.user"]["logged_in"], false, "{aspects}");
        slowest = slowest.max(took);
    }
    for (r, took) in reject {
        assert_eq!(r, Err(503), "on_error = reject");
        slowest = slowest.max(took);
    }
    assert!(
        slowest <= ASPECT_TIMEOUT + SLACK,
        "a handshake took {slowest:?} (aspect timeout {ASPECT_TIMEOUT:?})"
    );
    assert!(all_took <= ASPECT_TIMEOUT + SLACK, "{all_took:?}");
    // A handshake that needs no look-up is not held at all.
    let (r, plain_took) = handshake(server.addr, "other=1").await;
    assert_eq!(r.unwrap()["frontend.user"]["logged_in"], false);
    assert!(plain_took < ASPECT_TIMEOUT, "{plain_took:?}");

    // Publications: 503 within command_timeout, every time (on a channel
    // nobody is in: the local deliveries of thousands of refusals would
    // fill the chat client's queue).
    let mut slowest_publish = Duration::ZERO;
    let mut refused = 0;
    while paused.elapsed() < COMMAND_TIMEOUT * 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (status, answer, took) = publish(admin, "nobody-here", "during").await;
        assert_eq!(status, 503, "Redis is stopped: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.contains("broker unavailable")),
            "{answer}"
        );
        assert!(
            took <= COMMAND_TIMEOUT + SLACK,
            "refused after {took:?} (command_timeout {COMMAND_TIMEOUT:?})"
        );
        slowest_publish = slowest_publish.max(took);
        refused += 1;
    }

    redis.resume();
    let resumed = Instant::now();
    let logged_in_again = eventually(Duration::from_secs(10), "logged in again", || async {
        handshake(server.addr, "sid=abc")
            .await
            .0
            .is_ok_and(|a| a["frontend.user"]["logged_in"] == true)
    })
    .await;
    let (r, _) = handshake(server.addr, "bsid=abc").await;
    assert_eq!(r.unwrap()["backend.user"]["logged_in"], true);
    eventually(Duration::from_secs(10), "202 again", || async {
        publish(admin, "chat:hang", "after").await.0 == 202
    })
    .await;
    let accepted_again = resumed.elapsed();
    assert_eq!(next_pushed(&mut chat).await, "after");
    eprintln!(
        "chaos: Redis SIGSTOPped: 16 concurrent handshakes done in {all_took:?} (slowest {slowest:?}, \
         aspect timeout {ASPECT_TIMEOUT:?}); {refused} publications refused with 503, slowest in \
         {slowest_publish:?} (command_timeout {COMMAND_TIMEOUT:?}); after SIGCONT logged in again \
         within {logged_in_again:?}, 202 again within {accepted_again:?}"
    );
    let _ = chat.close(None).await;
    stop(server);
}

/// The next text message that is not a chat notice (a pushed payload).
async fn next_pushed(ws: &mut ws_tests::Client) -> String {
    loop {
        let t = ws_tests::next_text(ws).await;
        if serde_json::from_str::<Value>(&t).is_ok_and(|v| v.get("type").is_some()) {
            continue;
        }
        return t;
    }
}

fn stop(mut server: Running) {
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(server.wait(Duration::from_secs(15)), Some(0));
}

// ---------------------------------------------------- a slow callback --

/// An HTTP application that reads each request and answers after 30 s.
async fn slow_application() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = vec![0; 4096];
                let _ = s.read(&mut buf).await;
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(30)).await;
                let body = r#"{"id": 1, "username": "late"}"#;
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (addr, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_callback_answering_after_30s_holds_no_handshake_past_the_timeout() {
    let (app, requests) = slow_application().await;
    let dir = TempDir::new("chaos-http");
    let server = start(
        &dir,
        &format!(
            r#"{OPEN_LIMITS}
[[aspect]]
name = "frontend.user"
credential = {{ cookie = "sid" }}
[aspect.http]
url = "http://{app}/session"
timeout = "{ms}ms"

[[aspect]]
name = "backend.user"
credential = {{ cookie = "bsid" }}
on_error = "reject"
[aspect.http]
url = "http://{app}/session"
timeout = "{ms}ms"
"#,
            ms = ASPECT_TIMEOUT.as_millis()
        ),
    );
    let started = Instant::now();
    let anon: Vec<_> = (0..10)
        .map(|i| {
            let cookie = format!("sid=s{i}");
            let server = &server;
            async move { handshake(server.addr, &cookie).await }
        })
        .collect();
    let reject: Vec<_> = (0..5)
        .map(|i| {
            let cookie = format!("bsid=b{i}");
            let server = &server;
            async move { handshake(server.addr, &cookie).await }
        })
        .collect();
    let (anon, reject) = tokio::join!(
        futures_util::future::join_all(anon),
        futures_util::future::join_all(reject)
    );
    let all_took = started.elapsed();
    let mut slowest = Duration::ZERO;
    for (r, took) in anon {
        let aspects = r.expect("the default on_error lets the handshake in");
        assert_eq!(aspects["frontend.user"]["logged_in"], false, "{aspects}");
        slowest = slowest.max(took);
    }
    for (r, took) in reject {
        assert_eq!(r, Err(503));
        slowest = slowest.max(took);
    }
    assert!(
        slowest <= ASPECT_TIMEOUT + SLACK,
        "{slowest:?} (timeout {ASPECT_TIMEOUT:?})"
    );
    assert!(all_took <= ASPECT_TIMEOUT + SLACK, "{all_took:?}");
    // The callback was really asked (and is still sitting on the requests).
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 15);
    // The server serves on: a handshake without a credential asks nobody.
    let (r, took) = handshake(server.addr, "x=1").await;
    assert!(r.is_ok() && took < ASPECT_TIMEOUT, "{took:?}");
    eprintln!(
        "chaos: session callback answering after 30 s: 15 concurrent handshakes done in {all_took:?} \
         (slowest {slowest:?}, timeout {ASPECT_TIMEOUT:?})"
    );
    stop(server);
}

// ------------------------------------------------- PostgreSQL restarts --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_handshakes() {
    const CLIENTS: usize = 4;
    let Some(mut pg) = Postgres::start() else {
        return;
    };
    pg.psql(
        "CREATE TABLE sessions (ses_id text PRIMARY KEY, uid integer, name text); \
         INSERT INTO sessions VALUES ('abc', 7, 'ann');",
    );
    let dir = TempDir::new("chaos-pg");
    let server = start(
        &dir,
        &format!(
            r#"{OPEN_LIMITS}
[[aspect]]
name = "frontend.user"
credential = {{ cookie = "sid" }}
[aspect.sql]
url = "{}"
query = "SELECT uid AS id, name AS username FROM sessions WHERE ses_id = $1"
timeout = "{}ms"
max_connections = 4
"#,
            pg.url(),
            ASPECT_TIMEOUT.as_millis()
        ),
    );
    let addr = server.addr;
    let (me, _) = handshake(server.addr, "sid=abc").await;
    assert_eq!(me.unwrap()["frontend.user"]["logged_in"], true);

    // Clients make handshakes one after the other while PostgreSQL restarts;
    // each records (when it started, logged in?, how long it took).
    let stop_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let stop_flag = Arc::clone(&stop_flag);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop_flag.load(std::sync::atomic::Ordering::Acquire) {
                    let at = Instant::now();
                    let (r, took) = handshake(addr, "sid=abc").await;
                    let aspects = r.expect("on_error = anonymous: every handshake gets in");
                    seen.push((at, aspects["frontend.user"]["logged_in"] == true, took));
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = Instant::now();
    pg.stop();
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.restart();
    let restarted = Instant::now();
    // Handshakes log in again (the pool drops its dead connections).
    let back = eventually(
        Duration::from_secs(15),
        "logged in after the restart",
        || async {
            let (r, _) = handshake(server.addr, "sid=abc").await;
            r.is_ok_and(|a| a["frontend.user"]["logged_in"] == true)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_flag.store(true, std::sync::atomic::Ordering::Release);
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.expect("client"));
    }
    let slowest = all.iter().map(|(_, _, t)| *t).max().unwrap();
    assert!(
        slowest <= ASPECT_TIMEOUT + SLACK,
        "a handshake took {slowest:?} (timeout {ASPECT_TIMEOUT:?})"
    );
    let done_before = |(at, _, took): &&(Instant, bool, Duration)| *at + *took < stopping;
    assert!(all.iter().filter(done_before).count() > 0);
    assert!(
        all.iter().filter(done_before).all(|(_, ok, _)| *ok),
        "logged in before the restart"
    );
    let during = all
        .iter()
        .filter(|(at, _, _)| *at >= stopped && *at < restarted)
        .count();
    let anonymous = all.iter().filter(|(_, ok, _)| !*ok).count();
    let settled = restarted + back + Duration::from_millis(100);
    let late: Vec<_> = all
        .iter()
        .filter(|(at, ok, _)| *at >= settled && !*ok)
        .collect();
    assert!(late.is_empty(), "anonymous after recovery: {late:?}");
    eprintln!(
        "chaos: PostgreSQL restarted under {CLIENTS} handshaking clients: {} handshakes, slowest {slowest:?} \
         (timeout {ASPECT_TIMEOUT:?}); {during} while it was down, {anonymous} anonymous in all; \
         logged in again {back:?} after the restart",
        all.len()
    );
    stop(server);
}

// ----------------------------------------------- read-only state dir --

/// A directory the server cannot write to: a tmpfs mounted there and
/// remounted read-only when we may mount, else one without write
/// permission (and, as root, a server without CAP_DAC_OVERRIDE).
struct ReadOnlyDir {
    path: PathBuf,
    mounted: bool,
    /// Prepended to the server's command line (setpriv dropping the
    /// capability that lets root ignore permissions).
    wrapper: Vec<String>,
}

impl ReadOnlyDir {
    /// A writable directory that [`ReadOnlyDir::make_read_only`] turns
    /// read-only later.
    fn new(parent: &Path) -> Self {
        let path = parent.join("state");
        std::fs::create_dir_all(&path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let wrapper = if !mounted && nix::unistd::geteuid().is_root() {
            [
                "setpriv",
                "--inh-caps=-dac_override,-dac_read_search",
                "--bounding-set=-dac_override,-dac_read_search",
                "--",
            ]
            .map(String::from)
            .to_vec()
        } else {
            Vec::new()
        };
        eprintln!(
            "read-only state directory by {}",
            if mounted {
                "a read-only tmpfs"
            } else {
                "permissions"
            }
        );
        Self {
            path,
            mounted,
            wrapper,
        }
    }

    fn make_read_only(&self) {
        if self.mounted {
            let ok = Command::new("mount")
                .args(["-o", "remount,ro"])
                .arg(&self.path)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "remount read-only");
        } else {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        assert!(
            std::fs::write(self.path.join("probe"), "x").is_err() || !self.wrapper.is_empty(),
            "the directory is still writable"
        );
    }

    /// `ws-cli ARGS --state-dir DIR`, run as the server would be.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ws-cli")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(common::bin());
                c
            }
            None => Command::new(common::bin()),
        };
        c.args(args)
            .arg("--state-dir")
            .arg(&self.path)
            .env_remove("WS_CONFIG")
            .env_remove("WS_PORT")
            .env("RUST_LOG", "warn");
        c
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.path).status();
        } else {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o755));
        }
    }
}

#[test]
fn a_read_only_state_dir_at_start_is_a_clear_error() {
    let dir = TempDir::new("chaos-ro-start");
    let ro = ReadOnlyDir::new(dir.path());
    ro.make_read_only();
    let started = Instant::now();
    let out = ro
        .command(&["start", "--host", "127.0.0.1", "--port", "0"])
        .stdin(Stdio::null())
        .output()
        .expect("run ws-cli start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("state directory") && err.contains(ro.path.to_str().unwrap()),
        "{err}"
    );
    assert!(err.contains("state_dir"), "names the setting: {err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("running on"),
        "nothing claims to run"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    eprintln!("chaos: read-only state directory at start: {}", err.trim());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_dir_turning_read_only_while_running_changes_nothing_for_clients() {
    let dir = TempDir::new("chaos-ro-run");
    let ro = ReadOnlyDir::new(dir.path());
    let mut child = ro
        .command(&["start", "--host", "127.0.0.1", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("server.log")).unwrap(),
        ))
        .spawn()
        .expect("spawn ws-cli start");
    let guard = KillOnDrop(child.id());
    let first = {
        use std::io::BufRead as _;
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("a first line").unwrap();
        // Keep reading, so the server never writes into a closed pipe.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        first
    };
    let addr: SocketAddr = first
        .split_whitespace()
        .nth(4)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{first:?}"));
    let mut before = ws_tests::connect(&format!("ws://{addr}/echo")).await;

    ro.make_read_only();
    // Open connections and new ones are served as before.
    ws_tests::send(&mut before, "still here").await;
    assert_eq!(ws_tests::next_text(&mut before).await, "still here");
    for i in 0..5 {
        let mut ws = ws_tests::connect(&format!("ws://{addr}/echo")).await;
        ws_tests::send(&mut ws, format!("new {i}")).await;
        assert_eq!(ws_tests::next_text(&mut ws).await, format!("new {i}"));
        let _ = ws.close(None).await;
    }
    // `list` still reads it.
    let list = ro.cli(&["list"]);
    let shown = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{list:?}");
    assert!(
        shown.contains(&child.id().to_string()) && shown.contains("running"),
        "{shown}"
    );
    // `stop` stops it; the server exits cleanly although it cannot remove
    // its info file, and says so.
    let stop = ro.cli(&["stop"]);
    let said = String::from_utf8_lossy(&stop.stdout);
    assert!(stop.status.success(), "{stop:?}");
    assert!(said.contains("stopped server"), "{said}");
    let status = wait_exit(&mut child, Duration::from_secs(10));
    drop(guard);
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    assert_eq!(status, Some(0), "{log}");
    assert!(log.contains("cannot remove info file"), "{log}");
    let _ = before.next().await;
    // The file stays behind: `list` calls it stale, `stop` says it cannot
    // remove it (and fails), naming the file.
    let list = ro.cli(&["list"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("stale"),
        "{list:?}"
    );
    let stop = ro.cli(&["stop"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stop.stdout),
        String::from_utf8_lossy(&stop.stderr)
    );
    assert_eq!(stop.status.code(), Some(1), "{text}");
    assert!(
        text.contains("cannot remove stale info file") && text.contains(".json"),
        "{text}"
    );
    eprintln!(
        "chaos: state directory read-only while running: served on, stopped with 0; {}",
        text.trim()
    );
}

/// Kills a pid we started if the test fails before it exited.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0 as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        assert!(Instant::now() < deadline, "did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The broker's queue counts against `max_buffered_memory_in_mb`: while
/// Redis hangs, publications wait in memory only up to the budget; the one
/// that would pass it is refused at once with 503 naming the setting, and
/// those accepted are confirmed once Redis answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_waiting_for_a_stopped_redis_stay_within_the_memory_budget() {
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let dir = TempDir::new("chaos-budget");
    let server = start(
        &dir,
        &format!(
            r#"{OPEN_LIMITS}
[websocket]
max_buffered_memory_in_mb = 1

[broker]
redis_url = "{url}"
command_timeout = "10s"

[admin]
listen = "127.0.0.1:0"
key = "{KEY}"
"#
        ),
    );
    let admin = server.admin_addr();
    let (status, answer, _) = publish(admin, "nobody", "warm-up").await;
    assert_eq!(status, 202, "{answer}");

    redis.pause();
    // Two of 450 kB wait for Redis (900 kB of the 1 MiB budget)...
    let big = "x".repeat(450_000);
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let big = big.clone();
            tokio::spawn(async move { publish(admin, "nobody", &big).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ...a third does not fit: refused now, not after command_timeout.
    let (status, answer, took) = publish(admin, "nobody", &big).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("max_buffered_memory_in_mb")),
        "{answer}"
    );
    assert!(took < Duration::from_secs(5), "refused after {took:?}");
    redis.resume();
    for w in waiting {
        let (status, answer, _) = w.await.unwrap();
        assert_eq!(status, 202, "accepted before the budget ran out: {answer}");
    }
    eprintln!(
        "chaos: Redis SIGSTOPped, 1 MiB budget: 2 × 450 kB waiting, the third refused in {took:?}: {answer}"
    );
    stop(server);
}
