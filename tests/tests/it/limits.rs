//! Protocol limits and errors end with the right close code.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use ws_runtime::{Server, ServerConfig};
use ws_tests::{TestServer, expect_close, next, send};

async fn small_server() -> TestServer {
    let mut config = ServerConfig::default();
    config.websocket.max_message_size = 64 * 1024;
    config.websocket.max_frame_size = 16 * 1024;
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
    let mut s = ws_tests::raw_websocket(srv.addr).await;
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
    config.websocket.outgoing_queue = 64;
    config.websocket.write_timeout = Duration::from_millis(500);
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

/// A masked frame of any length (mask 0: the payload goes as is).
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![first];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=65535 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// One text message of `n` one-byte frames: a first frame and `n - 1`
/// continuations, the last final.
fn fragmented(n: usize) -> Vec<u8> {
    let mut out = frame(0x01, b"a");
    for i in 1..n {
        out.extend(frame(if i + 1 == n { 0x80 } else { 0x00 }, b"a"));
    }
    out
}

#[tokio::test]
async fn a_message_in_too_many_frames_closes_with_1009() {
    let mut config = ServerConfig::default();
    config.websocket.max_frames_per_message = 100;
    config.max_connections_per_address_per_second = 0;
    let srv = TestServer::start(Server::builder().component(demo_echo::Echo).config(config)).await;
    // Exactly the limit: echoed whole.
    let mut s = ws_tests::raw_websocket(srv.addr).await;
    s.write_all(&fragmented(100)).await.unwrap();
    let mut echo = [0u8; 102];
    tokio::time::timeout(ws_tests::WAIT, s.read_exact(&mut echo))
        .await
        .expect("the echo within the wait limit")
        .unwrap();
    assert_eq!(&echo[..2], [0x81, 100], "the message is echoed: {echo:?}");
    assert_eq!(&echo[2..], [b'a'; 100]);
    drop(s);
    // One frame more: 1009, naming the setting; nothing is echoed.
    let (code, reason) = raw_frame_close(&srv, &fragmented(101)).await;
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.contains("max_frames_per_message"), "{reason}");
    // Empty continuation frames count the same.
    let mut empty = frame(0x01, b"");
    for _ in 0..200 {
        empty.extend(frame(0x00, b""));
    }
    let (code, _) = raw_frame_close(&srv, &empty).await;
    assert_eq!(code, 1009);
    // The default limit allows a message of 1024 frames.
    assert_eq!(
        ServerConfig::default().websocket.max_frames_per_message,
        1024
    );
    srv.shutdown().await;
}

/// The close code the server answers a client's close frame with `code`.
async fn close_answer(srv: &TestServer, code: u16) -> u16 {
    let out = raw_frames(srv, &frame(0x88, &code.to_be_bytes())).await;
    assert_eq!(out[0], 0x88, "close opcode expected for {code}: {out:?}");
    u16::from_be_bytes([out[2], out[3]])
}

#[tokio::test]
async fn every_close_code_rfc_6455_and_iana_allow_is_accepted_and_no_other() {
    let mut config = ServerConfig::default();
    config.max_connections_per_address = 0;
    config.max_connections_per_address_per_second = 0;
    let srv = TestServer::start(Server::builder().component(demo_echo::Echo).config(config)).await;
    // RFC 6455 7.4.1 and the IANA registry: 1000-1003, 1007-1014, and the
    // ranges for libraries and applications. The server echoes each.
    let allowed = (1000..=1003)
        .chain(1007..=1014)
        .chain([3000, 3001, 3999, 4000, 4001, 4999]);
    for code in allowed {
        assert_eq!(close_answer(&srv, code).await, code, "code {code}");
    }
    // Never sent on the wire (1005, 1006, 1015), reserved (1004,
    // 1016-2999) or outside the ranges: a protocol error.
    for code in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
    ] {
        assert_eq!(close_answer(&srv, code).await, 1002, "code {code}");
    }
    srv.shutdown().await;
}
