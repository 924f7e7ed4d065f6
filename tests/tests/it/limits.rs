//! Protocol limits and errors end with the right close code.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use ws_runtime::{Server, ServerConfig};
use ws_tests::{TestServer, expect_close, next, send};

async fn small_server() -> TestServer {
    let mut config = ServerConfig::default();
    config.max_message_size = 64 * 1024;
    config.max_frame_size = 16 * 1024;
    TestServer::start(Server::builder().component(demo_echo::Echo).config(config)).await
}

#[tokio::test]
async fn oversize_message_closes_with_1009() {
    let srv = small_server().await;
    let mut ws = srv.connect("/echo").await;
    // Within the limits: fine.
    send(&mut ws, Message::binary(vec![1u8; 16 * 1024])).await;
    assert_eq!(next(&mut ws).await.len(), 16 * 1024);
    // One frame above max_frame_size.
    send(&mut ws, Message::binary(vec![1u8; 16 * 1024 + 1])).await;
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 1009, "{reason}");
    drop(ws);
    srv.shutdown().await;
}

/// Writes one raw masked frame after a completed upgrade and returns the
/// server's close frame payload (code, reason).
async fn raw_frame_close(srv: &TestServer, frame: &[u8]) -> (u16, String) {
    let out = raw_frames(srv, frame).await;
    assert_eq!(out[0], 0x88, "close opcode expected: {out:?}");
    let len = (out[1] & 0x7f) as usize;
    let code = u16::from_be_bytes([out[2], out[3]]);
    (code, String::from_utf8_lossy(&out[4..2 + len]).into_owned())
}

/// Everything the server sends after the upgrade in answer to `frames`.
async fn raw_frames(srv: &TestServer, frame: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(ws_tests::upgrade_request("/echo", "").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s.write_all(frame).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(out.len() >= 4, "no close frame: {out:?}");
    out
}

fn masked(opcode_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![opcode_byte, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let srv = small_server().await;
    let (code, _) = raw_frame_close(&srv, &masked(0x81, &[0xff, 0xfe])).await;
    assert_eq!(code, 1007);
    srv.shutdown().await;
}

#[tokio::test]
async fn protocol_errors_close_with_1002() {
    let srv = small_server().await;
    // Reserved bits set.
    let (code, reason) = raw_frame_close(&srv, &masked(0xC1, b"x")).await;
    assert_eq!(code, 1002, "{reason}");
    // Unmasked client frame.
    let (code, _) = raw_frame_close(&srv, &[0x81, 0x01, b'x']).await;
    assert_eq!(code, 1002);
    // Unknown opcode.
    let (code, _) = raw_frame_close(&srv, &masked(0x83, b"x")).await;
    assert_eq!(code, 1002);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_grow_the_server() {
    // The component floods; the client never reads: sends start failing with
    // `Full` instead of buffering without bound, and the server still serves.
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let full = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&full);
    let flood = ws_core::component_fn("/flood", move |conn: ws_core::Connection, _msg| {
        let counter = Arc::clone(&counter);
        async move {
            let chunk = ws_core::Bytes::from(vec![0u8; 64 * 1024]);
            for _ in 0..20_000 {
                if let Err(ws_core::SendError::Full(_)) = conn.send(chunk.clone()) {
                    counter.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                tokio::task::yield_now().await;
            }
            Ok(())
        }
    });
    let mut config = ServerConfig::default();
    config.outgoing_queue = 64;
    config.write_timeout = Duration::from_millis(500);
    let srv = TestServer::start(
        Server::builder()
            .component(flood)
            .component(demo_echo::Echo)
            .config(config),
    )
    .await;
    let mut hog = srv.connect("/flood").await;
    send(&mut hog, "go").await;
    let deadline = tokio::time::Instant::now() + ws_tests::WAIT;
    while full.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "queue never filled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut other = srv.connect("/echo").await;
    send(&mut other, "hello").await;
    assert_eq!(next(&mut other).await, Message::text("hello"));
    drop((hog, other));
    srv.shutdown().await;
}

#[tokio::test]
async fn answers_before_a_protocol_error_are_still_sent() {
    // A valid message and a bad frame in one write: the echo goes out before
    // the 1002 close (Autobahn 3.2-3.4, 4.x, 5.15).
    let srv = small_server().await;
    let mut frames = masked(0x81, b"hi");
    frames.extend(masked(0xC1, b"x"));
    let out = raw_frames(&srv, &frames).await;
    assert_eq!(&out[..4], &[0x81, 0x02, b'h', b'i'], "echo first: {out:?}");
    assert_eq!(out[4], 0x88, "then the close: {out:?}");
    assert_eq!(u16::from_be_bytes([out[6], out[7]]), 1002);
    srv.shutdown().await;
}
