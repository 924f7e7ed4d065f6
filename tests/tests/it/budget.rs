//! The server's memory budget (`max_buffered_memory`): a thousand clients
//! that each trickle in a message just under the size limit cannot make
//! the server hold more than the budget. The connections that would grow
//! past it are closed with 1009, naming the setting, and the server keeps
//! answering everyone else.
//!
//! Bounded: 1,000 raw connections on 127.0.0.1 (2,000 descriptors in this
//! process), at most 1 MiB each.

use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use ws_runtime::{Server, ServerConfig};
use ws_test_support::{in_child_process, rss_kib};
use ws_tests::{TestServer, next_text, raw_websocket, send};

const CLIENTS: usize = 1000;
/// `max_message_size`: each client sends one byte less.
const MESSAGE: usize = 1 << 20;
/// `max_buffered_memory`: a thirtieth of what the clients send together.
const BUDGET: usize = 32 << 20;
/// Bytes a client writes at once after its first bytes.
const PIECE: usize = 16 * 1024;

/// What became of one client.
#[derive(Debug)]
enum Outcome {
    /// The whole message but its last byte was sent, and the connection
    /// is still open (the server holds the message); kept open until the
    /// test drops it.
    Holding(#[allow(dead_code)] TcpStream),
    /// The server closed the connection with this code and reason.
    Closed(u16, String),
}

/// The server's close frame, if it sent one: reads whatever is readable
/// now without waiting.
fn close_frame(s: &TcpStream, got: &mut Vec<u8>) -> Option<(u16, String)> {
    let mut buf = [0u8; 256];
    while let Ok(n) = s.try_read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    if got.len() >= 4 && got[0] == 0x88 {
        let len = (got[1] & 0x7f) as usize;
        if got.len() >= 2 + len {
            let code = u16::from_be_bytes([got[2], got[3]]);
            return Some((code, String::from_utf8_lossy(&got[4..2 + len]).into_owned()));
        }
    }
    None
}

/// One client: the header of a binary frame of `MESSAGE - 1` bytes (masked
/// with key 0, so the payload goes as is), its first 16 bytes one at a
/// time, then the rest in pieces, pausing between writes so that every
/// client's message is partly received at the same time. Stops at the
/// server's close frame.
async fn trickle(mut s: TcpStream) -> Outcome {
    let len = (MESSAGE - 1) as u64;
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]);
    let zeros = vec![0u8; PIECE];
    let mut got = Vec::new();
    if s.write_all(&header).await.is_err() {
        return Outcome::Closed(0, "write failed".into());
    }
    let mut sent = 0usize;
    while sent < MESSAGE - 1 {
        if let Some((code, reason)) = close_frame(&s, &mut got) {
            return Outcome::Closed(code, reason);
        }
        let n = if sent < 16 {
            1
        } else {
            PIECE.min(MESSAGE - 1 - sent)
        };
        let write = tokio::time::timeout(Duration::from_secs(10), s.write_all(&zeros[..n])).await;
        if !matches!(write, Ok(Ok(()))) {
            // Closed meanwhile: its close frame tells why.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return close_frame(&s, &mut got).map_or_else(
                || Outcome::Closed(0, "write failed without a close frame".into()),
                |(code, reason)| Outcome::Closed(code, reason),
            );
        }
        sent += n;
        tokio::time::sleep(Duration::from_millis(if sent <= 16 { 1 } else { 20 })).await;
    }
    // Give the server the time to read the last pieces (and close, if
    // they do not fit).
    tokio::time::sleep(Duration::from_millis(500)).await;
    match close_frame(&s, &mut got) {
        Some((code, reason)) => Outcome::Closed(code, reason),
        None => Outcome::Holding(s),
    }
}

/// Measures this process's memory, so it runs in a child of its own.
#[test]
fn a_thousand_trickled_messages_stay_within_the_memory_budget() {
    in_child_process(
        "budget::a_thousand_trickled_messages_stay_within_the_memory_budget",
        || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(thousand_trickles());
        },
    );
}

async fn thousand_trickles() {
    let mut config = ServerConfig::default();
    config.websocket.max_message_size = MESSAGE;
    config.websocket.max_frame_size = MESSAGE;
    config.websocket.max_buffered_memory = BUDGET;
    config.max_connections = 0;
    config.max_connections_per_address = 0;
    config.max_connections_per_address_per_second = 0;
    let srv = TestServer::start(Server::builder().component(demo_echo::Echo).config(config)).await;
    let mut other = srv.connect("/echo").await;
    send(&mut other, "warm").await;
    assert_eq!(next_text(&mut other).await, "warm");
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(raw_websocket(srv.addr).await);
    }
    let baseline = rss_kib();
    let budget = srv.server.memory_budget().clone();

    let mut trickles = JoinSet::new();
    for s in clients {
        trickles.spawn(trickle(s));
    }
    let all = tokio::spawn(async move {
        let mut outcomes = Vec::with_capacity(CLIENTS);
        while let Some(joined) = trickles.join_next().await {
            outcomes.push(joined.expect("client task"));
        }
        outcomes
    });
    // While they trickle, another client keeps being answered; the
    // process's memory and the bytes counted are sampled.
    let mut echoes = 0u32;
    let mut peak_rss = baseline;
    let mut peak_counted = 0;
    while !all.is_finished() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        send(&mut other, format!("during {echoes}")).await;
        assert_eq!(next_text(&mut other).await, format!("during {echoes}"));
        echoes += 1;
        peak_rss = peak_rss.max(rss_kib());
        peak_counted = peak_counted.max(budget.used());
    }
    let outcomes = all.await.expect("clients");
    let after = rss_kib();
    peak_rss = peak_rss.max(after);
    let holding = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Holding(_)))
        .count();
    let mut closed: Vec<(u16, &str)> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Closed(code, reason) => Some((*code, reason.as_str())),
            Outcome::Holding(_) => None,
        })
        .collect();
    closed.sort_unstable();
    closed.dedup();
    println!(
        "{CLIENTS} clients: {holding} hold a message of {} bytes, the others were closed with {closed:?}; \
         VmRSS baseline {baseline} KiB, peak {peak_rss} KiB (+{} KiB), budget {} KiB, peak counted {} KiB; \
         {echoes} echoes meanwhile",
        MESSAGE - 1,
        peak_rss - baseline,
        BUDGET / 1024,
        peak_counted / 1024,
    );
    // The budget bounded what was held: the clients sent up to 1 GB.
    assert!(
        holding * MESSAGE <= BUDGET + CLIENTS * ws_core::budget::MemoryBudget::UNCOUNTED,
        "{holding} messages held"
    );
    assert!(
        holding >= 10,
        "the budget was used, not refused early: {holding} hold"
    );
    assert!(
        peak_counted <= BUDGET,
        "counted {peak_counted} bytes over the budget"
    );
    // Every other client was closed with 1009, naming the setting.
    assert!(!closed.is_empty());
    for (code, reason) in &closed {
        assert_eq!(*code, 1009, "{reason}");
        assert!(reason.contains("max_buffered_memory"), "{reason}");
    }
    // The process grew by at most the budget, what each connection holds
    // uncounted (its allowance and its read piece), and slack for the
    // allocator: not by the gigabyte the clients sent.
    let bound_kib =
        (BUDGET + CLIENTS * 2 * ws_core::budget::MemoryBudget::UNCOUNTED) / 1024 + 16 * 1024;
    assert!(
        peak_rss - baseline <= bound_kib as u64,
        "VmRSS grew by {} KiB (bound {bound_kib} KiB)",
        peak_rss - baseline
    );
    assert!(echoes >= 5, "the other client was answered meanwhile");
    // Closing the held connections gives the budget back.
    drop(outcomes);
    let deadline = tokio::time::Instant::now() + ws_tests::WAIT;
    while budget.used() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "budget still counts {} bytes",
            budget.used()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    send(&mut other, "after").await;
    assert_eq!(next_text(&mut other).await, "after");
    drop(other);
    srv.shutdown().await;
}
