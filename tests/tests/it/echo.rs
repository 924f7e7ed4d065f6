//! Messages round-trip unchanged and in order.

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use ws_runtime::{Server, ServerConfig};
use ws_tests::{TestServer, next, send};

/// The demo echo, with room for messages of 1 MiB (the default limit is
/// 64 KiB).
async fn echo_server() -> TestServer {
    let mut config = ServerConfig::default();
    config.websocket.max_message_size = 1 << 20;
    config.websocket.max_frame_size = 1 << 20;
    TestServer::start(Server::builder().component(demo_echo::Echo).config(config)).await
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

/// A client that pings without reading fills the socket until the
/// server's pong cannot be written; tungstenite retries such a pong only on
/// its next read. Once the client reads again, the pong of its last ping
/// must arrive although it sends nothing more.
#[tokio::test]
async fn a_pong_blocked_by_a_client_that_did_not_read_goes_out_once_it_reads() {
    let srv = echo_server().await;
    let ws = srv.connect("/echo").await;
    let (mut tx, mut rx) = ws.split();
    const PINGS: u32 = 100_000;
    let payload = |i: u32| {
        let mut p = vec![0u8; 125];
        p[..4].copy_from_slice(&i.to_be_bytes());
        bytes::Bytes::from(p)
    };
    for i in 0..PINGS {
        tx.feed(Message::Ping(payload(i)))
            .await
            .expect("send a ping");
    }
    tx.flush().await.expect("flush the pings");
    let last = payload(PINGS - 1);
    let got = tokio::time::timeout(ws_tests::WAIT, async {
        loop {
            match rx.next().await {
                Some(Ok(Message::Pong(p))) if p == last => return true,
                Some(Ok(_)) => {}
                other => panic!("the connection ended: {other:?}"),
            }
        }
    })
    .await;
    assert!(
        got.is_ok(),
        "no pong for the last ping within {:?}",
        ws_tests::WAIT
    );
}
