//! The `ws-cli` binary driven as an operator would: start, list, routes,
//! clients, stop; two servers; a killed server; bad configs; a taken port.
//!
//! Runs against the debug binary under `cargo test`, and against the release
//! binary when `cargo xtask e2e` sets `WS_CLI_BIN`. `WS_PYTHON`, when set,
//! names a Python with the `websockets` package for a second, foreign client
//! (required under `CI=true`).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Running, bin, cli, stderr, stdout};
use tokio_tungstenite::tungstenite::Message;
use ws_test_support::TempDir;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn echo_once(url: &str, text: &str) {
    rt().block_on(async {
        let mut ws = ws_tests::connect(url).await;
        ws_tests::send(&mut ws, Message::text(text)).await;
        assert_eq!(ws_tests::next_text(&mut ws).await, text);
        ws.close(None).await.unwrap();
    });
}

fn python_echo(url: &str) {
    let python = match std::env::var_os("WS_PYTHON") {
        Some(p) => p,
        None if ws_test_support::on_ci() => {
            panic!("WS_PYTHON is not set under CI=true: run through `cargo xtask e2e`")
        }
        None => {
            eprintln!("WS_PYTHON not set: skipping the Python client outside CI");
            return;
        }
    };
    let script = "import sys\nfrom websockets.sync.client import connect\n\
                  with connect(sys.argv[1]) as ws:\n    ws.send('from python')\n    \
                  assert ws.recv(timeout=10) == 'from python'\n    ws.send(b'\\x00\\x01')\n    \
                  assert ws.recv(timeout=10) == b'\\x00\\x01'\nprint('ok')\n";
    let out = Command::new(python)
        .args(["-c", script, url])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python client failed: {}",
        stderr(&out)
    );
    assert_eq!(stdout(&out).trim(), "ok");
}

fn list_json(state: &Path) -> Vec<serde_json::Value> {
    let out = cli(state, &["list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("list --json is JSON")
}

#[test]
fn start_list_routes_echo_stop() {
    let state = TempDir::new("main");
    let mut srv = Running::start(state.path(), &[]);

    // list shows it running, with the fields scripts rely on.
    let list = list_json(state.path());
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["pid"], srv.pid);
    assert_eq!(list[0]["state"], "running");
    assert_eq!(list[0]["address"], srv.addr.to_string());
    assert!(list[0]["started_at"].as_u64().unwrap() > 1_600_000_000);
    let table = stdout(&cli(state.path(), &["list"]));
    assert!(
        table.contains("running") && table.contains(&srv.pid.to_string()),
        "{table}"
    );

    // routes (no server needed) matches the server's own listing.
    let routes = cli(state.path(), &["routes", "--json"]);
    assert!(routes.status.success(), "{}", stderr(&routes));
    let routes: serde_json::Value = serde_json::from_slice(&routes.stdout).unwrap();
    assert_eq!(routes, list[0]["routes"]);
    let paths: Vec<&str> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/echo",
            "/demo_echo_Reverse",
            "/ticker",
            "/demo_echo_Whoami",
            "/chat/{room}",
            "/broadcast"
        ]
    );

    // Clients: Rust and Python.
    echo_once(&srv.url("/echo"), "hello");
    python_echo(&srv.url("/echo"));

    // An open client gets 1001 when the server is stopped.
    let (tx, rx) = std::sync::mpsc::channel();
    let url = srv.url("/echo");
    let watcher = std::thread::spawn(move || {
        rt().block_on(async {
            let mut ws = ws_tests::connect(&url).await;
            ws_tests::send(&mut ws, Message::text("x")).await;
            assert_eq!(ws_tests::next_text(&mut ws).await, "x");
            tx.send(()).unwrap();
            ws_tests::expect_close(&mut ws).await
        })
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();

    let started = Instant::now();
    let stop = cli(state.path(), &["stop", "--timeout", "10s"]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    assert!(
        stdout(&stop).contains(&format!("stopped server with pid {}", srv.pid)),
        "{}",
        stdout(&stop)
    );
    assert_eq!(srv.wait(Duration::from_secs(10)), Some(0));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(watcher.join().unwrap().0, 1001);
    assert!(list_json(state.path()).is_empty());
    assert_eq!(
        stdout(&cli(state.path(), &["list"])).trim(),
        "no server running"
    );
    assert_eq!(
        std::fs::read_dir(state.path()).unwrap().count(),
        0,
        "info file left behind"
    );
}

#[test]
fn prefix_and_sigterm() {
    let state = TempDir::new("prefix");
    let mut srv = Running::start(state.path(), &["--prefix", "/ws"]);
    echo_once(&srv.url("/ws/echo"), "prefixed");
    srv.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(srv.wait(Duration::from_secs(10)), Some(0));
}

#[test]
fn two_servers_stop_one_by_pid_and_a_killed_one_is_stale() {
    let state = TempDir::new("two");
    let mut a = Running::start(state.path(), &[]);
    let mut b = Running::start(state.path(), &[]);
    assert_eq!(list_json(state.path()).len(), 2);

    let stop = cli(state.path(), &["stop", &a.pid.to_string()]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    assert_eq!(a.wait(Duration::from_secs(10)), Some(0));
    echo_once(&b.url("/echo"), "b still serves");

    // SIGKILL: no cleanup, so the entry stays, marked stale.
    b.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(b.wait(Duration::from_secs(10)), None);
    let list = list_json(state.path());
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["state"], "stale");
    assert!(stdout(&cli(state.path(), &["list"])).contains("stale"));

    // stop cleans it without signalling anything.
    let stop = cli(state.path(), &["stop"]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    assert!(
        stdout(&stop).contains(&format!("removed stale entry for pid {}", b.pid)),
        "{}",
        stdout(&stop)
    );
    assert!(list_json(state.path()).is_empty());

    // Unknown pid: a clear message and exit code 2.
    let unknown = cli(state.path(), &["stop", "999999"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("no server with pid 999999"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn a_stale_entry_with_a_reused_pid_is_never_signalled() {
    // An info file naming a live process (this test) that holds no lock:
    // `stop` must treat it as stale and must not signal us.
    let state = TempDir::new("reuse");
    let me = std::process::id();
    std::fs::write(
        state.path().join(format!("{me}.json")),
        format!(
            r#"{{"pid":{me},"address":"127.0.0.1:1","routes":[],"started_at":1,"version":"0"}}"#
        ),
    )
    .unwrap();
    let stop = cli(state.path(), &["stop", &me.to_string()]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    assert!(
        stdout(&stop).contains("removed stale entry"),
        "{}",
        stdout(&stop)
    );
}

#[test]
fn bad_config_and_taken_port_fail_before_listening() {
    let state = TempDir::new("bad");
    let cfg = state.path().join("bad.toml");
    std::fs::write(&cfg, "[websocket]\nmax_frame_size_in_kb = 99999\n").unwrap();
    let out = cli(state.path(), &["start", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("bad.toml") && err.contains("websocket.max_frame_size_in_kb"),
        "{err}"
    );
    assert!(!stdout(&out).contains("running"));
    assert!(list_json(state.path()).is_empty());

    std::fs::write(&cfg, "[server]\nprot = 1\n").unwrap();
    let out = cli(
        state.path(),
        &["check-config", "--config", cfg.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("prot"), "{}", stderr(&out));

    let good = cli(state.path(), &["check-config"]);
    assert!(good.status.success());
    assert!(stdout(&good).contains("port = 18080"), "{}", stdout(&good));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = cli(
        state.path(),
        &["start", "--host", "127.0.0.1", "--port", &port],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("in use"), "{err}");
    assert!(list_json(state.path()).is_empty());
}

/// Output into a closed pipe (`ws-cli routes | head -1` once `head` is
/// gone) is dropped: no panic, the command's own exit code.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let state = TempDir::new("closed-stdout");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(bin())
        .args(["routes", "--state-dir"])
        .arg(state.path())
        .env_remove("WS_CONFIG")
        .env_remove("WS_PORT")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}
