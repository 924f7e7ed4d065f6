//! Each handshake and connection guard, set in a config file, changes what
//! the real `ws-cli start` binary does, as websocket.example.toml documents:
//! origins, connection limits, request head size, trusted proxies, message
//! rate, message size and a per-route policy (also shown by `ws-cli routes`).
//!
//! One config file and one server per scenario; every wait is bounded.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{Running, cli, stderr};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use ws_test_support::TempDir;

/// The longest any single exchange may take.
const LIMIT: Duration = Duration::from_secs(5);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A state directory with `config.toml` holding `toml`.
struct Scenario {
    dir: TempDir,
    config: PathBuf,
}

impl Scenario {
    fn new(name: &str, toml: &str) -> Self {
        let dir = TempDir::new(&format!("guards-{name}"));
        let config = dir.join("config.toml");
        std::fs::write(&config, toml).unwrap();
        Self { dir, config }
    }

    /// `ws-cli start --config FILE`, stderr into a log shown on failure.
    fn start(&self) -> Running {
        let config = self.config.to_str().unwrap();
        Running::start_logged(
            self.dir.path(),
            &["--config", config],
            &self.dir.join("stderr.log"),
        )
    }
}

/// Sends `request` on a new connection and reads the answer's head (up to
/// the blank line, or until the server closes); the connection stays open
/// for as long as the returned stream lives.
async fn exchange(addr: SocketAddr, request: &str) -> (String, TcpStream) {
    let mut s = tokio::time::timeout(LIMIT, TcpStream::connect(addr))
        .await
        .expect("connect within the limit")
        .expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(LIMIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    head.extend_from_slice(&buf[..n]);
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within {LIMIT:?}: {head:?}");
    (String::from_utf8_lossy(&head).into_owned(), s)
}

/// The status of an upgrade request for `path` with extra header lines.
async fn upgrade_status(addr: SocketAddr, path: &str, extra: &str) -> u16 {
    let (head, _s) = exchange(addr, &ws_tests::upgrade_request(path, extra)).await;
    ws_tests::status_of(&head)
}

#[test]
fn allowed_origins_and_require_origin() {
    let sc = Scenario::new(
        "origins",
        "[server]\nallowed_origins = [\"example.com\"]\nrequire_origin = true\n",
    );
    let srv = sc.start();
    rt().block_on(async {
        let a = srv.addr;
        assert_eq!(
            upgrade_status(a, "/echo", "Origin: https://evil.test\r\n").await,
            403
        );
        assert_eq!(
            upgrade_status(a, "/echo", "Origin: https://example.com\r\n").await,
            101
        );
        assert_eq!(upgrade_status(a, "/echo", "").await, 403);
    });
}

#[test]
fn default_config_allows_any_origin_and_none() {
    let sc = Scenario::new("origins-default", "[server]\n");
    let srv = sc.start();
    rt().block_on(async {
        let a = srv.addr;
        assert_eq!(
            upgrade_status(a, "/echo", "Origin: https://evil.test\r\n").await,
            101
        );
        assert_eq!(upgrade_status(a, "/echo", "").await, 101);
    });
}

#[test]
fn max_connections_per_address() {
    let sc = Scenario::new(
        "per-address",
        "[server]\nmax_connections_per_address = 2\n\
         max_connections_per_address_per_second = 100\n",
    );
    let srv = sc.start();
    rt().block_on(async {
        let req = ws_tests::upgrade_request("/echo", "");
        let (h1, _c1) = exchange(srv.addr, &req).await;
        let (h2, _c2) = exchange(srv.addr, &req).await;
        assert_eq!(ws_tests::status_of(&h1), 101, "{h1}");
        assert_eq!(ws_tests::status_of(&h2), 101, "{h2}");
        let (h3, _c3) = exchange(srv.addr, &req).await;
        assert_eq!(ws_tests::status_of(&h3), 429, "{h3}");
        let retry = ws_tests::header_of(&h3, "retry-after").expect("Retry-After on 429");
        assert!(retry.parse::<u64>().is_ok(), "Retry-After: {retry:?}");
    });
}

#[test]
fn max_connections_per_address_per_second() {
    let sc = Scenario::new(
        "per-second",
        "[server]\nmax_connections_per_address = 100\n\
         max_connections_per_address_per_second = 3\n",
    );
    let srv = sc.start();
    rt().block_on(async {
        let req = ws_tests::upgrade_request("/echo", "");
        let mut statuses = Vec::new();
        let mut last = String::new();
        for _ in 0..6 {
            let (h, _s) = exchange(srv.addr, &req).await;
            statuses.push(ws_tests::status_of(&h));
            last = h;
        }
        assert_eq!(&statuses[..3], [101, 101, 101], "{statuses:?}");
        assert_eq!(statuses[5], 429, "{statuses:?}");
        assert!(
            ws_tests::header_of(&last, "retry-after").is_some(),
            "Retry-After on 429: {last}"
        );
    });
}

#[test]
fn max_request_size_in_kb() {
    let sc = Scenario::new("head-size", "[server]\nmax_request_size_in_kb = 1\n");
    let srv = sc.start();
    rt().block_on(async {
        let big = format!("X-Padding: {}\r\n", "a".repeat(2048));
        assert_eq!(upgrade_status(srv.addr, "/echo", &big).await, 431);
        // A small head still passes.
        let small = format!("X-Padding: {}\r\n", "a".repeat(100));
        assert_eq!(upgrade_status(srv.addr, "/echo", &small).await, 101);
    });
}

/// The `client` the Whoami component reports, connecting with `headers`.
async fn whoami_client(srv: &Running, headers: &[(&str, &str)]) -> String {
    let mut ws = ws_tests::connect_with(&srv.url("/demo_echo_Whoami"), headers)
        .await
        .expect("upgrade");
    ws_tests::send(&mut ws, Message::text("who")).await;
    let text = ws_tests::next_text(&mut ws).await;
    let _ = tokio::time::timeout(LIMIT, ws.close(None)).await;
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    v["client"].as_str().expect("client field").to_owned()
}

fn ip_of(client: &str) -> &str {
    client.rsplit_once(':').map_or(client, |(ip, _)| ip)
}

#[test]
fn trusted_proxies_decide_whether_x_forwarded_for_counts() {
    let trusted = Scenario::new("proxy", "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    let untrusted = Scenario::new("no-proxy", "[server]\ntrusted_proxies = []\n");
    let (t, u) = (trusted.start(), untrusted.start());
    rt().block_on(async {
        let xff = [("X-Forwarded-For", "203.0.113.7")];
        let c = whoami_client(&t, &xff).await;
        assert_eq!(ip_of(&c), "203.0.113.7", "{c}");
        let c = whoami_client(&u, &xff).await;
        assert_eq!(ip_of(&c), "127.0.0.1", "{c}");
        // Trusted proxy, no header: the peer itself.
        let c = whoami_client(&t, &[]).await;
        assert_eq!(ip_of(&c), "127.0.0.1", "{c}");
    });
}

#[test]
fn max_messages_per_second_closes_with_1008() {
    let sc = Scenario::new("msg-rate", "[server]\nmax_messages_per_second = 5\n");
    let srv = sc.start();
    rt().block_on(async {
        let mut ws = ws_tests::connect(&srv.url("/echo")).await;
        for i in 0..20 {
            // The server may close mid-way; later sends may then fail.
            if tokio::time::timeout(
                LIMIT,
                futures_util::SinkExt::send(&mut ws, Message::text(format!("m{i}"))),
            )
            .await
            .map_or(true, |r| r.is_err())
            {
                break;
            }
        }
        let (code, reason) = ws_tests::expect_close(&mut ws).await;
        assert_eq!(code, 1008, "{reason}");
    });
}

#[test]
fn max_message_size_closes_with_1009() {
    let sc = Scenario::new(
        "msg-size",
        "[websocket]\nmax_message_size_in_kb = 1\nmax_frame_size_in_kb = 1\n",
    );
    let srv = sc.start();
    rt().block_on(async {
        let mut ws = ws_tests::connect(&srv.url("/echo")).await;
        // Under the limit: echoed.
        ws_tests::send(&mut ws, Message::text("a".repeat(512))).await;
        assert_eq!(ws_tests::next_text(&mut ws).await.len(), 512);
        ws_tests::send(&mut ws, Message::text("b".repeat(2048))).await;
        let (code, reason) = ws_tests::expect_close(&mut ws).await;
        assert_eq!(code, 1009, "{reason}");
    });
}

#[test]
fn route_policy_require_origin() {
    let sc = Scenario::new(
        "route",
        "[[route]]\npath = \"/echo\"\nrequire_origin = true\n",
    );
    let srv = sc.start();
    rt().block_on(async {
        let a = srv.addr;
        assert_eq!(upgrade_status(a, "/echo", "").await, 403);
        assert_eq!(
            upgrade_status(a, "/echo", "Origin: https://example.com\r\n").await,
            101
        );
        assert_eq!(upgrade_status(a, "/demo_echo_Reverse", "").await, 101);
    });

    let out = cli(
        sc.dir.path(),
        &["routes", "--json", "--config", sc.config.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let routes: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let find = |path: &str| {
        routes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == path)
            .unwrap_or_else(|| panic!("{path} in {routes}"))
            .clone()
    };
    let echo = find("/echo");
    assert_eq!(echo["policy"]["require_origin"], true, "{echo}");
    assert_eq!(echo["policy"]["overridden"], true, "{echo}");
    let reverse = find("/demo_echo_Reverse");
    assert_eq!(reverse["policy"]["require_origin"], false, "{reverse}");
}
