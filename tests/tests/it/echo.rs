//! Messages round-trip unchanged and in order.

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use ws_runtime::Server;
use ws_tests::{TestServer, next, send};

async fn echo_server() -> TestServer {
    TestServer::start(Server::builder().component(demo_echo::Echo)).await
}

#[tokio::test]
async fn text_and_binary_of_every_length_class() {
    let srv = echo_server().await;
    let mut ws = srv.connect("/echo").await;
    for len in [0usize, 125, 126, 65535, 65536, 1 << 20] {
        let text: String = (0..len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        send(&mut ws, Message::text(text.clone())).await;
        assert_eq!(
            next(&mut ws).await,
            Message::text(text),
            "text of {len} bytes"
        );
        let bin: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        send(&mut ws, Message::binary(bin.clone())).await;
        assert_eq!(
            next(&mut ws).await,
            Message::binary(bin),
            "binary of {len} bytes"
        );
    }
    drop(ws);
    srv.shutdown().await;
}

#[tokio::test]
async fn order_is_kept_over_ten_thousand_pipelined_messages() {
    // A flood by design: the message-rate limit (100/s by default) is off.
    let mut config = ws_runtime::ServerConfig::default();
    config.max_messages_per_second = 0;
    let srv = TestServer::start(Server::builder().component(demo_echo::Echo).config(config)).await;
    let ws = srv.connect("/echo").await;
    let (mut tx, mut rx) = ws.split();
    let writer = tokio::spawn(async move {
        for i in 0..10_000u32 {
            tx.feed(Message::text(i.to_string())).await.unwrap();
            if i % 100 == 99 {
                tx.flush().await.unwrap();
            }
        }
        tx.flush().await.unwrap();
        tx
    });
    for i in 0..10_000u32 {
        let m = tokio::time::timeout(ws_tests::WAIT, rx.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(m, Message::text(i.to_string()));
    }
    drop((writer.await.unwrap(), rx));
    srv.shutdown().await;
}

#[tokio::test]
async fn default_route_and_prefix() {
    let srv = TestServer::start(
        Server::builder()
            .component(demo_echo::Echo)
            .component(demo_echo::Reverse)
            .config({
                let mut c = ws_runtime::ServerConfig::default();
                c.route_prefix = "socket.io/".into();
                c
            }),
    )
    .await;
    let paths: Vec<String> = srv.server.routes().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/socket.io/echo", "/socket.io/demo_echo_Reverse"]);
    let mut ws = srv.connect("/socket.io/demo_echo_Reverse").await;
    send(&mut ws, Message::text("abc")).await;
    assert_eq!(next(&mut ws).await, Message::text("cba"));
    drop(ws);
    let mut ws = srv.connect("/socket.io/echo").await;
    send(&mut ws, Message::text("x")).await;
    assert_eq!(next(&mut ws).await, Message::text("x"));
    // Without the prefix, or with a look-alike prefix, there is no route.
    for path in ["/echo", "/socket.iox/echo"] {
        let err = tokio_tungstenite::connect_async(srv.url(path))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("404"), "{path}: {err}");
    }
    drop(ws);
    srv.shutdown().await;
}
