//! The handshake guards from a real client: origin check (403), connection
//! limits (429 + `Retry-After`), trusted proxies, the message rate (1008),
//! per-route policy, and the user's own layers, in pipeline order.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use ws_core::{BoxError, CloseReason, Component, Connection};
use ws_runtime::{
    BuildError, ClientAddr, HandshakeRequest, Next, RoutePolicy, Server, ServerConfig,
    handshake_fn, refusal,
};
use ws_tests::{
    TestServer, body_of, connect_with, eventually, expect_close, header_of, next_text,
    raw_exchange, send, status_of, upgrade_request,
};

const LIMIT: Duration = Duration::from_secs(5);

/// Echoes, counts opens and closes, and answers `who` with the client
/// address the server determined.
#[derive(Default)]
struct Probe {
    route: &'static str,
    opened: AtomicUsize,
    closed: AtomicUsize,
}

impl Probe {
    fn on(route: &'static str) -> Arc<Self> {
        Arc::new(Self {
            route,
            ..Self::default()
        })
    }
}

#[ws_core::async_trait]
impl Component for Probe {
    fn name(&self) -> Cow<'static, str> {
        "guards::Probe".into()
    }

    fn route(&self) -> Option<Cow<'static, str>> {
        Some(self.route.into())
    }

    async fn on_open(&self, _conn: &Connection) -> Result<(), BoxError> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn on_message(&self, conn: &Connection, msg: ws_core::Message) -> Result<(), BoxError> {
        if msg.as_text() == Some("who") {
            conn.send(conn.client_addr().to_string())?;
        } else {
            conn.send(msg)?;
        }
        Ok(())
    }

    async fn on_close(&self, _conn: &Connection, _reason: CloseReason) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

fn config(f: impl FnOnce(&mut ServerConfig)) -> ServerConfig {
    let mut c = ServerConfig::default();
    f(&mut c);
    c
}

async fn start(probe: &Arc<Probe>, config: ServerConfig) -> TestServer {
    TestServer::start(
        Server::builder()
            .component_arc(Arc::clone(probe) as Arc<dyn Component>)
            .config(config),
    )
    .await
}

/// A raw upgrade request with extra headers; the whole answer.
async fn raw_upgrade(srv: &TestServer, path: &str, extra: &str) -> String {
    raw_exchange(
        srv.addr,
        upgrade_request(path, extra).as_bytes(),
        Duration::from_millis(300),
    )
    .await
}

#[tokio::test]
async fn origin_refusals_are_403_and_never_reach_the_component() {
    let probe = Probe::on("/o");
    let srv = start(
        &probe,
        config(|c| {
            c.allowed_origins = vec![
                "example.com".into(),
                "https://app.test:8443".into(),
                "*.example.org".into(),
            ];
        }),
    )
    .await;
    let url = srv.url("/o");
    for origin in [
        "https://example.com",
        "http://example.com:8080",
        "https://app.test:8443",
        "https://a.b.example.org",
    ] {
        let mut ws = connect_with(&url, &[("Origin", origin)])
            .await
            .unwrap_or_else(|e| panic!("{origin}: {e}"));
        send(&mut ws, "hi").await;
        assert_eq!(next_text(&mut ws).await, "hi");
    }
    // No Origin header (a non-browser client) passes.
    let mut ws = srv.connect("/o").await;
    send(&mut ws, "x").await;
    assert_eq!(next_text(&mut ws).await, "x");
    let opened = probe.opened.load(Ordering::SeqCst);
    assert_eq!(opened, 5);

    for origin in [
        "https://evil.org",
        "https://app.test",
        "http://app.test:8443",
        "https://example.org",
        "null",
    ] {
        let resp = raw_upgrade(&srv, "/o", &format!("Origin: {origin}\r\n")).await;
        assert_eq!(status_of(&resp), 403, "{origin}: {resp}");
        assert_eq!(
            body_of(&resp),
            format!("origin `{origin}` is not allowed (allowed_origins)\n")
        );
    }
    let err = connect_with(&url, &[("Origin", "https://evil.org")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    assert_eq!(
        probe.opened.load(Ordering::SeqCst),
        opened,
        "no refused open"
    );
    drop(ws);
    srv.shutdown().await;
}

#[tokio::test]
async fn require_origin_refuses_clients_without_one() {
    let probe = Probe::on("/o");
    let srv = start(&probe, config(|c| c.require_origin = true)).await;
    let resp = raw_upgrade(&srv, "/o", "").await;
    assert_eq!(status_of(&resp), 403, "{resp}");
    assert!(body_of(&resp).contains("missing header `Origin` (require_origin = true)"));
    // Any origin passes when the list is empty.
    let ws = connect_with(&srv.url("/o"), &[("Origin", "https://anything.test")])
        .await
        .unwrap();
    drop(ws);
    srv.shutdown().await;
}

#[tokio::test]
async fn per_address_limit_is_429_with_retry_after_until_a_connection_closes() {
    let probe = Probe::on("/l");
    let srv = start(
        &probe,
        config(|c| {
            c.max_connections_per_address = 2;
            c.max_connections_per_address_per_second = 0;
        }),
    )
    .await;
    let a = srv.connect("/l").await;
    let b = srv.connect("/l").await;
    let resp = raw_upgrade(&srv, "/l", "").await;
    assert_eq!(status_of(&resp), 429, "{resp}");
    assert_eq!(header_of(&resp, "retry-after").as_deref(), Some("1"));
    assert_eq!(
        body_of(&resp),
        "too many connections from 127.0.0.1/32 (max_connections_per_address = 2)\n"
    );
    assert_eq!(srv.server.admitted_connections(), 2);
    drop(a);
    let server = srv.server.clone();
    eventually("the closed connection's place is released", || {
        server.admitted_connections() == 1
    })
    .await;
    let c = srv.connect("/l").await;
    drop((b, c));
    srv.shutdown().await;
}

#[tokio::test]
async fn per_second_and_total_limits_are_429_naming_their_key() {
    let probe = Probe::on("/l");
    let srv = start(
        &probe,
        config(|c| {
            c.max_connections_per_address = 0;
            c.max_connections_per_address_per_second = 3;
        }),
    )
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(srv.connect("/l").await);
    }
    let resp = raw_upgrade(&srv, "/l", "").await;
    assert_eq!(status_of(&resp), 429, "{resp}");
    let retry: u64 = header_of(&resp, "retry-after").unwrap().parse().unwrap();
    assert_eq!(
        retry, 1,
        "one new connection every 333 ms: retry within 1 s"
    );
    assert!(
        body_of(&resp).contains("(max_connections_per_address_per_second = 3)"),
        "{resp}"
    );
    drop(open);
    srv.shutdown().await;

    let srv = start(
        &probe,
        config(|c| {
            c.max_connections = 1;
        }),
    )
    .await;
    let ws = srv.connect("/l").await;
    let resp = raw_upgrade(&srv, "/l", "").await;
    assert_eq!(status_of(&resp), 429, "{resp}");
    assert_eq!(header_of(&resp, "retry-after").as_deref(), Some("1"));
    assert_eq!(
        body_of(&resp),
        "too many connections (max_connections = 1)\n"
    );
    drop(ws);
    srv.shutdown().await;
}

#[tokio::test]
async fn refusals_after_admission_release_the_place() {
    let probe = Probe::on("/l");
    let srv = TestServer::start(
        Server::builder()
            .component_arc(Arc::clone(&probe) as Arc<dyn Component>)
            .layer(handshake_fn(
                |req: HandshakeRequest, next: Next| async move {
                    if req.uri().query() == Some("deny") {
                        return refusal(StatusCode::UNAUTHORIZED, "denied by the test layer");
                    }
                    next.run(req).await
                },
            ))
            .config(config(|c| {
                c.max_connections_per_address = 1;
                c.max_connections_per_address_per_second = 0;
            })),
    )
    .await;
    // 404 (route) and 401 (user layer) come after the limiter: each was
    // admitted, and must not keep its place.
    for _ in 0..3 {
        let resp = raw_upgrade(&srv, "/nowhere", "").await;
        assert_eq!(status_of(&resp), 404, "{resp}");
        assert_eq!(body_of(&resp), "no WebSocket route for `/nowhere`\n");
        let resp = raw_upgrade(&srv, "/l?deny", "").await;
        assert_eq!(status_of(&resp), 401, "{resp}");
    }
    assert_eq!(srv.server.admitted_connections(), 0);
    // A client that vanishes mid-session, and one closed for its message
    // rate, both give their place back.
    let ws = srv.connect("/l").await;
    assert_eq!(srv.server.admitted_connections(), 1);
    drop(ws);
    let server = srv.server.clone();
    eventually("dropped client released", || {
        server.admitted_connections() == 0
    })
    .await;
    let mut ws = srv.connect("/l").await;
    send(&mut ws, "still admitted").await;
    assert_eq!(next_text(&mut ws).await, "still admitted");
    drop(ws);
    eventually("closed client released", || {
        server.admitted_connections() == 0
    })
    .await;
    srv.shutdown().await;
}

#[tokio::test]
async fn clients_gone_during_the_upgrade_and_shutdown_release_every_place() {
    let probe = Probe::on("/l");
    let srv = start(
        &probe,
        config(|c| {
            c.max_connections_per_address = 0;
            c.max_connections_per_address_per_second = 0;
            c.shutdown_timeout = Duration::from_millis(200);
        }),
    )
    .await;
    // Admitted, then gone before (or while) the 101 is written.
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, upgrade_request("/l", "").as_bytes())
            .await
            .unwrap();
        drop(s);
    }
    let server = srv.server.clone();
    eventually("vanished clients released", || {
        server.admitted_connections() == 0
    })
    .await;
    // Open sessions at shutdown (clients that never answer the 1001).
    let open: Vec<_> = futures_util::future::join_all((0..5).map(|_| srv.connect("/l"))).await;
    assert_eq!(server.admitted_connections(), 5);
    srv.shutdown().await;
    assert_eq!(server.admitted_connections(), 0);
    assert_eq!(server.open_connections(), 0);
    drop(open);
}

#[tokio::test]
async fn message_rate_closes_with_1008() {
    let probe = Probe::on("/m");
    let srv = start(&probe, config(|c| c.max_messages_per_second = 5)).await;
    let mut ws = srv.connect("/m").await;
    for i in 0..20 {
        // The server may close before all are written.
        let _ = futures_util::SinkExt::send(&mut ws, Message::text(i.to_string())).await;
    }
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 1008, "{reason}");
    assert_eq!(
        reason,
        "message rate exceeded (max_messages_per_second = 5)"
    );
    let server = srv.server.clone();
    eventually("the closed client's place is released", || {
        server.admitted_connections() == 0
    })
    .await;
    eventually("on_close ran", || probe.closed.load(Ordering::SeqCst) == 1).await;
    // A client within the rate is never closed.
    let mut ws = srv.connect("/m").await;
    for i in 0..4 {
        send(&mut ws, i.to_string()).await;
        assert_eq!(next_text(&mut ws).await, i.to_string());
    }
    drop(ws);
    srv.shutdown().await;
}

#[tokio::test]
async fn message_rate_per_address_spans_connections() {
    let probe = Probe::on("/m");
    let srv = start(
        &probe,
        config(|c| {
            c.max_messages_per_second = 0;
            c.max_messages_per_address_per_second = 4;
        }),
    )
    .await;
    let mut a = srv.connect("/m").await;
    let mut b = srv.connect("/m").await;
    for ws in [&mut a, &mut b] {
        for _ in 0..2 {
            send(ws, "ok").await;
            assert_eq!(next_text(ws).await, "ok");
        }
    }
    // The address's budget of 4 is spent: the next message closes b.
    send(&mut b, "one too many").await;
    let (code, reason) = expect_close(&mut b).await;
    assert_eq!(code, 1008);
    assert!(
        reason.contains("max_messages_per_address_per_second = 4"),
        "{reason}"
    );
    drop(a);
    srv.shutdown().await;
}

async fn who(srv: &TestServer, forwarded_for: &str) -> Result<(ws_tests::Client, String), String> {
    let mut ws = connect_with(&srv.url("/who"), &[("X-Forwarded-For", forwarded_for)])
        .await
        .map_err(|e| e.to_string())?;
    send(&mut ws, "who").await;
    let addr = next_text(&mut ws).await;
    Ok((ws, addr))
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_budget() {
    let probe = Probe::on("/who");
    let srv = start(
        &probe,
        config(|c| {
            // The test client plays the proxy on 127.0.0.1.
            c.trusted_proxies = vec!["127.0.0.1".into(), "10.0.0.0/8".into()];
            c.max_connections_per_address = 1;
            c.max_connections_per_address_per_second = 0;
        }),
    )
    .await;
    let (a, addr_a) = who(&srv, "203.0.113.1").await.unwrap();
    assert_eq!(addr_a, "203.0.113.1:0");
    // Spoofed left part, a second trusted proxy on the right: the right-most
    // untrusted hop counts.
    let (b, addr_b) = who(&srv, "6.6.6.6, 203.0.113.2, 10.1.2.3").await.unwrap();
    assert_eq!(addr_b, "203.0.113.2:0");
    // 203.0.113.1 has used its budget of one; 203.0.113.2 too.
    let resp = raw_upgrade(&srv, "/who", "X-Forwarded-For: 203.0.113.1\r\n").await;
    assert_eq!(status_of(&resp), 429, "{resp}");
    assert!(body_of(&resp).contains("from 203.0.113.1/32"), "{resp}");
    let err = who(&srv, "203.0.113.2").await.unwrap_err();
    assert!(err.contains("429"), "{err}");
    // A third client is fine.
    let (c, addr_c) = who(&srv, "2001:db8::5").await.unwrap();
    assert_eq!(addr_c, "[2001:db8::5]:0");
    // Garbage where the client should be: 400 naming the header.
    let resp = raw_upgrade(&srv, "/who", "X-Forwarded-For: 1.1.1.1, bogus\r\n").await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert!(body_of(&resp).contains("`X-Forwarded-For`"), "{resp}");
    assert!(body_of(&resp).contains("`bogus`"), "{resp}");
    drop((a, b, c));
    srv.shutdown().await;
}

#[tokio::test]
async fn from_an_untrusted_peer_forwarding_headers_are_ignored() {
    let probe = Probe::on("/who");
    let srv = start(
        &probe,
        config(|c| {
            c.trusted_proxies = vec!["10.0.0.0/8".into()];
            c.max_connections_per_address = 1;
            c.max_connections_per_address_per_second = 0;
        }),
    )
    .await;
    let (a, addr) = who(&srv, "203.0.113.1").await.unwrap();
    let peer: std::net::SocketAddr = addr.parse().unwrap();
    assert_eq!(peer.ip().to_string(), "127.0.0.1");
    assert_ne!(peer.port(), 0, "the TCP peer's own port");
    // A different header does not buy a second budget.
    let resp = raw_upgrade(&srv, "/who", "X-Forwarded-For: 203.0.113.2\r\n").await;
    assert_eq!(status_of(&resp), 429, "{resp}");
    assert!(body_of(&resp).contains("from 127.0.0.1/32"), "{resp}");
    drop(a);
    srv.shutdown().await;
}

#[tokio::test]
async fn per_route_policy_overrides_the_server_settings() {
    let open = Probe::on("/open");
    let strict = Probe::on("/strict");
    let mut entry = RoutePolicy::new("/strict"); // without the prefix
    entry.allowed_origins = Some(vec!["example.com".into()]);
    entry.max_messages_per_second = Some(2);
    entry.max_message_size = Some(1024);
    entry.max_connections = Some(1);
    let srv = TestServer::start(
        Server::builder()
            .component_arc(Arc::clone(&open) as Arc<dyn Component>)
            .component_arc(Arc::clone(&strict) as Arc<dyn Component>)
            .config(config(|c| {
                c.route_prefix = "/ws".into();
                c.routes = vec![entry];
            })),
    )
    .await;
    let routes = srv.server.routes();
    assert_eq!(routes[0].path, "/ws/open");
    assert!(!routes[0].has_policy);
    assert_eq!(routes[0].max_messages_per_second, 100);
    assert_eq!(routes[0].max_connections, 0);
    assert!(routes[0].allowed_origins.is_empty());
    assert_eq!(routes[1].path, "/ws/strict");
    assert!(routes[1].has_policy);
    assert_eq!(routes[1].allowed_origins, ["example.com"]);
    assert_eq!(routes[1].max_messages_per_second, 2);
    assert_eq!(
        (routes[1].max_message_size, routes[1].max_frame_size),
        (1024, 1024)
    );
    assert_eq!(routes[1].max_connections, 1);

    // Origins: only the strict route checks them.
    let evil = [("Origin", "https://evil.org")];
    let good = [("Origin", "https://example.com")];
    let ws_open = connect_with(&srv.url("/ws/open"), &evil).await.unwrap();
    let resp = raw_upgrade(&srv, "/ws/strict", "Origin: https://evil.org\r\n").await;
    assert_eq!(status_of(&resp), 403, "{resp}");
    assert_eq!(
        body_of(&resp),
        "origin `https://evil.org` is not allowed (this route's allowed_origins)\n"
    );
    // The route's own connection cap.
    let mut ws = connect_with(&srv.url("/ws/strict"), &good).await.unwrap();
    let resp = raw_upgrade(&srv, "/ws/strict", "Origin: https://example.com\r\n").await;
    assert_eq!(status_of(&resp), 429, "{resp}");
    assert_eq!(header_of(&resp, "retry-after").as_deref(), Some("1"));
    assert_eq!(
        body_of(&resp),
        "too many connections on route `/ws/strict` (max_connections = 1 in its [[route]] entry)\n"
    );
    // The route's message size.
    send(&mut ws, Message::binary(vec![0u8; 2000])).await;
    let (code, _) = expect_close(&mut ws).await;
    assert_eq!(code, 1009);
    // Its message rate, once the first connection's place is free.
    let server = srv.server.clone();
    eventually("the route's place is released", || {
        server.admitted_connections() == 1
    })
    .await;
    let mut ws = connect_with(&srv.url("/ws/strict"), &good).await.unwrap();
    for _ in 0..3 {
        let _ = futures_util::SinkExt::send(&mut ws, Message::text("x")).await;
    }
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(
        (code, reason.as_str()),
        (1008, "message rate exceeded (max_messages_per_second = 2)")
    );
    // The other route keeps the server-wide settings.
    let mut ws_open = ws_open;
    for _ in 0..10 {
        send(&mut ws_open, Message::binary(vec![0u8; 2000])).await;
        assert_eq!(ws_tests::next(&mut ws_open).await.len(), 2000);
    }
    drop(ws_open);
    srv.shutdown().await;
}

#[test]
fn route_entries_must_name_a_mounted_route() {
    let probe = Probe::on("/echo");
    let build = |path: &str| {
        Server::builder()
            .component_arc(Arc::clone(&probe) as Arc<dyn Component>)
            .config(config(|c| {
                c.route_prefix = "/ws".into();
                c.routes = vec![RoutePolicy::new(path)];
            }))
            .build()
    };
    assert!(build("/ws/echo").is_ok());
    assert!(build("echo").is_ok());
    let Err(BuildError::Config(e)) = build("/chat") else {
        panic!("an entry for no route must fail the build");
    };
    assert_eq!(e.route.as_deref(), Some("/chat"));
    assert_eq!(
        e.to_string(),
        "invalid setting `path` of the route \"/chat\": names no mounted route; \
         the routes are: /ws/echo"
    );
}

#[tokio::test]
async fn user_layers_run_after_the_guards_and_see_the_client_address() {
    let probe = Probe::on("/u");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let srv = TestServer::start(
        Server::builder()
            .component_arc(Arc::clone(&probe) as Arc<dyn Component>)
            .layer(handshake_fn(move |req: HandshakeRequest, next: Next| {
                let record = Arc::clone(&record);
                async move {
                    let client = req.extensions().get::<ClientAddr>().map(|c| c.0);
                    record.lock().unwrap().push(client);
                    if req.headers().get("x-api-key").is_none() {
                        return refusal(StatusCode::UNAUTHORIZED, "missing header `X-Api-Key`");
                    }
                    next.run(req).await
                }
            }))
            // A plain tower layer works too.
            .layer(ws_runtime::tower::util::MapRequestLayer::new(
                |mut req: HandshakeRequest| {
                    req.headers_mut()
                        .insert("x-tagged", http::HeaderValue::from_static("yes"));
                    req
                },
            ))
            .config(config(|c| c.allowed_origins = vec!["example.com".into()])),
    )
    .await;
    // The origin check runs first: the layer never sees this one.
    let resp = raw_upgrade(&srv, "/u", "Origin: https://evil.org\r\nX-Api-Key: k\r\n").await;
    assert_eq!(status_of(&resp), 403, "{resp}");
    assert!(seen.lock().unwrap().is_empty());
    let resp = raw_upgrade(&srv, "/u", "").await;
    assert_eq!(status_of(&resp), 401, "{resp}");
    assert_eq!(body_of(&resp), "missing header `X-Api-Key`\n");
    let mut ws = connect_with(&srv.url("/u"), &[("X-Api-Key", "k")])
        .await
        .unwrap();
    send(&mut ws, "who").await;
    let addr = next_text(&mut ws).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].map(|a| a.to_string()), Some(addr));
    assert_eq!(probe.opened.load(Ordering::SeqCst), 1);
    drop(ws);
    srv.shutdown().await;
}

#[tokio::test]
async fn every_refusal_is_fast_and_closes_the_connection() {
    let probe = Probe::on("/o");
    let srv = start(
        &probe,
        config(|c| c.allowed_origins = vec!["example.com".into()]),
    )
    .await;
    let started = std::time::Instant::now();
    let resp = raw_exchange(
        srv.addr,
        upgrade_request("/o", "Origin: https://evil.org\r\n").as_bytes(),
        LIMIT,
    )
    .await;
    assert_eq!(status_of(&resp), 403);
    assert_eq!(header_of(&resp, "connection").as_deref(), Some("close"));
    assert!(
        started.elapsed() < LIMIT,
        "the server closed the connection"
    );
    srv.shutdown().await;
}
