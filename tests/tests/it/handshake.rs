//! Every malformed or non-upgrade request gets a precise HTTP answer, and a
//! client too slow to send its head is dropped.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt as _;
use ws_runtime::{Server, ServerConfig};
use ws_tests::{TestServer, next_text, raw_exchange, status_of, upgrade_request};

const LIMIT: Duration = Duration::from_secs(5);

async fn server() -> TestServer {
    TestServer::start(
        Server::builder()
            .component(demo_echo::Echo)
            .component(greeter::Greeter),
    )
    .await
}

#[tokio::test]
async fn plain_requests() {
    let srv = server().await;
    let health = raw_exchange(
        srv.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    assert_eq!(status_of(&health), 200);
    assert!(health.ends_with("ok\n"), "{health}");
    let plain = raw_exchange(
        srv.addr,
        b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    assert_eq!(status_of(&plain), 426);
    assert!(
        plain
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{plain}"
    );
    let missing = raw_exchange(
        srv.addr,
        b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    assert_eq!(status_of(&missing), 404);
    assert!(missing.contains("/nope"), "{missing}");
    srv.shutdown().await;
}

#[tokio::test]
async fn host_is_required_once() {
    let srv = server().await;
    let no_host = "GET /echo HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let answer = raw_exchange(srv.addr, no_host.as_bytes(), LIMIT).await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert!(answer.contains("missing header `Host`"), "{answer}");
    let two = upgrade_request("/echo", "Host: other\r\n");
    let answer = raw_exchange(srv.addr, two.as_bytes(), LIMIT).await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert!(answer.contains("more than once"), "{answer}");
    let health = raw_exchange(srv.addr, b"GET /healthz HTTP/1.1\r\n\r\n", LIMIT).await;
    assert_eq!(status_of(&health), 400, "{health}");
    // With one Host the same request is upgraded.
    let ok = raw_exchange(
        srv.addr,
        upgrade_request("/echo", "").as_bytes(),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(status_of(&ok), 101, "{ok}");
    srv.shutdown().await;
}

#[tokio::test]
async fn malformed_upgrades() {
    let srv = server().await;
    let cases: Vec<(String, u16, &str)> = vec![
        (upgrade_request("/nope", ""), 404, "no WebSocket route"),
        (
            upgrade_request("/echo", "").replacen("GET", "POST", 1),
            405,
            "must use GET",
        ),
        (
            upgrade_request("/echo", "")
                .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            426,
            "Sec-WebSocket-Version",
        ),
        (
            upgrade_request("/echo", "")
                .replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            400,
            "missing header `Sec-WebSocket-Key`",
        ),
        (
            upgrade_request("/echo", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "not-base64"),
            400,
            "16 bytes in base64",
        ),
        (
            upgrade_request("/echo", "").replace("Connection: Upgrade", "Connection: close"),
            400,
            "`Connection` must contain `Upgrade`",
        ),
        (
            upgrade_request("/echo", "").replace("Upgrade: websocket", "Upgrade: h2c"),
            400,
            "`Upgrade` must be `websocket`",
        ),
        (
            upgrade_request("/echo", "").replace("HTTP/1.1", "HTTP/1.0"),
            400,
            "HTTP/1.1",
        ),
        (
            upgrade_request("/echo", &format!("X-Big: {}\r\n", "a".repeat(5000))),
            431,
            "max_request_size_in_kb",
        ),
        (
            upgrade_request("/echo", &format!("X-Huge: {}\r\n", "a".repeat(20000))),
            431,
            "",
        ),
        ("NOT HTTP AT ALL\r\n\r\n".to_owned(), 400, ""),
    ];
    for (req, status, needle) in cases {
        let resp = raw_exchange(srv.addr, req.as_bytes(), LIMIT).await;
        assert_eq!(status_of(&resp), status, "request {req:.80?} got {resp}");
        assert!(resp.contains(needle), "{needle:?} not in {resp}");
    }
    // The server still serves after all of that.
    let mut ws = srv.connect("/greet/ann").await;
    assert_eq!(next_text(&mut ws).await, "hello ann");
    drop(ws);
    srv.shutdown().await;
}

#[tokio::test]
async fn slow_request_heads_are_dropped() {
    let mut config = ServerConfig::default();
    config.handshake_timeout = Duration::from_millis(500);
    let srv = TestServer::start(Server::builder().component(demo_echo::Echo).config(config)).await;
    let started = Instant::now();
    let mut slow = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    slow.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let mut buf = Vec::new();
    for s in [&mut slow, &mut silent] {
        let n = tokio::time::timeout(LIMIT, tokio::io::AsyncReadExt::read_to_end(s, &mut buf))
            .await
            .expect("server closes the slow connection");
        assert!(n.is_ok() || n.is_err());
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "dropped after {took:?}");
    srv.shutdown().await;
}

#[tokio::test]
async fn subprotocol_uses_server_preference() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let srv = server().await;
    let mut req = srv.url("/greet/bo?x=1").into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "greet.v1, greet.v2".parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "greet.v2");
    assert_eq!(next_text(&mut ws).await, "hello bo");
    ws_tests::send(&mut ws, "?").await;
    assert_eq!(
        next_text(&mut ws).await,
        "path=/greet/bo route=/greet/{name} query=x=1 protocol=greet.v2"
    );
    // No common protocol: the connection opens without one (RFC 6455 4.2.2).
    let resp = raw_exchange(
        srv.addr,
        upgrade_request("/greet/cy", "Sec-WebSocket-Protocol: other\r\n").as_bytes(),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(status_of(&resp), 101, "{resp}");
    assert!(
        !resp.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "{resp}"
    );
    drop(ws);
    srv.shutdown().await;
}

#[tokio::test]
async fn route_params_are_percent_decoded() {
    let srv = server().await;
    let mut ws = srv.connect("/greet/caf%C3%A9").await;
    assert_eq!(next_text(&mut ws).await, "hello café");
    drop(ws);
    srv.shutdown().await;
}
