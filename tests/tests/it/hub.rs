//! Channels over real sockets: the chat demo, and pushing from the web
//! application through the admin listener.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use ws_runtime::{AdminConfig, Server, ServerConfig, serve_admin};
use ws_tests::{Client, TestServer, body_of, next_text, raw_exchange, send, status_of};

async fn next_json(ws: &mut Client) -> Value {
    serde_json::from_str(&next_text(ws).await).expect("JSON message")
}

async fn chat_server() -> TestServer {
    let mut config = ServerConfig::default();
    config.max_connections_per_address = 0;
    config.max_connections_per_address_per_second = 0;
    TestServer::start(Server::builder().component(demo_echo::Chat).config(config)).await
}

#[tokio::test]
async fn chat_rooms_over_real_sockets() {
    let srv = chat_server().await;
    let mut a = srv.connect("/chat/lobby").await;
    assert_eq!(next_json(&mut a).await["type"], "presence");
    assert_eq!(next_json(&mut a).await["type"], "join");
    let mut b = srv.connect("/chat/lobby").await;
    let p = next_json(&mut b).await;
    assert_eq!(p["members"].as_array().unwrap().len(), 2, "{p}");
    assert_eq!(next_json(&mut b).await["type"], "join");
    assert_eq!(next_json(&mut a).await["type"], "join");
    let mut elsewhere = srv.connect("/chat/other").await;
    let _ = next_json(&mut elsewhere).await;
    let _ = next_json(&mut elsewhere).await;

    send(&mut a, "hi all").await;
    for ws in [&mut a, &mut b] {
        let m = next_json(ws).await;
        assert_eq!(
            (m["type"].as_str(), m["text"].as_str()),
            (Some("message"), Some("hi all"))
        );
    }
    drop(b);
    let leave = next_json(&mut a).await;
    assert_eq!(leave["type"], "leave", "{leave}");
    // The other room heard nothing of it.
    send(&mut elsewhere, "here?").await;
    assert_eq!(next_json(&mut elsewhere).await["text"], "here?");
    drop((a, elsewhere));
    srv.shutdown().await;
}

async fn admin(
    srv: &TestServer,
    key: &str,
    max_body: usize,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = AdminConfig::new(key);
    config.max_body = max_body;
    tokio::spawn(serve_admin(
        listener,
        srv.server.hub().clone(),
        config,
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}

fn post(path: &str, key: Option<&str>, body: &str) -> String {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn publish_from_the_application() {
    let srv = chat_server().await;
    let (addr, stop) = admin(&srv, "s3cret", 1024).await;
    let mut a = srv.connect("/chat/news").await;
    let _ = next_json(&mut a).await;
    let _ = next_json(&mut a).await;
    let limit = Duration::from_secs(5);

    let ok = raw_exchange(
        addr,
        post(
            "/publish",
            Some("s3cret"),
            r#"{"channel":"chat:news","data":{"type":"notice","text":"from php"}}"#,
        )
        .as_bytes(),
        limit,
    )
    .await;
    assert_eq!(status_of(&ok), 202, "{ok}");
    assert_eq!(
        serde_json::from_str::<Value>(body_of(&ok)).unwrap()["delivered"],
        1
    );
    let m = next_json(&mut a).await;
    assert_eq!(
        (m["type"].as_str(), m["text"].as_str()),
        (Some("notice"), Some("from php"))
    );

    let cases = [
        (post("/publish", None, "{}"), 401, "Authorization"),
        (post("/publish", Some("wrong"), "{}"), 401, "Authorization"),
        (post("/publish", Some("s3cret"), "{nope"), 400, "valid JSON"),
        (
            post("/publish", Some("s3cret"), r#"{"data":"x"}"#),
            400,
            "required",
        ),
        (
            post(
                "/publish",
                Some("s3cret"),
                &format!(r#"{{"channel":"c","data":"{}"}}"#, "x".repeat(2000)),
            ),
            413,
            "exceeds",
        ),
        (post("/other", Some("s3cret"), "{}"), 404, "/publish"),
        (
            "GET /publish HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_owned(),
            405,
            "POST",
        ),
    ];
    for (req, status, needle) in cases {
        let resp = raw_exchange(addr, req.as_bytes(), limit).await;
        assert_eq!(status_of(&resp), status, "{req:.60?}: {resp}");
        let err: Value = serde_json::from_str(body_of(&resp)).expect("JSON error body");
        assert!(
            err["error"].as_str().unwrap().contains(needle),
            "{needle:?} in {err}"
        );
    }
    let _ = stop.send(());
    drop(a);
    srv.shutdown().await;
}
