//! Abuse from one address: slowloris connections are dropped at the
//! handshake deadline while real clients keep echoing, and a flood of
//! handshakes is refused fast (429) without the server's memory growing.
//!
//! Everything is bounded: 200 slow connections, 10,000 handshakes (32 at a
//! time), all on 127.0.0.1.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use ws_runtime::{Server, ServerConfig};
use ws_test_support::{in_child_process, rss_kib};
use ws_tests::{TestServer, header_of, next_text, send, status_of, upgrade_request};

const SLOW_CLIENTS: usize = 200;

/// Opens a connection, sends half a request head, then one more header line
/// every 200 ms; returns how long after connecting the server dropped it.
async fn slowloris(addr: SocketAddr) -> Result<Duration, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    // From the established connection: a SYN the kernel dropped under the
    // burst and retried is not the server's time.
    let started = Instant::now();
    if s.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        .await
        .is_err()
    {
        return Ok(started.elapsed());
    }
    let mut buf = [0u8; 256];
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.tick().await;
    while started.elapsed() < Duration::from_secs(10) {
        tokio::select! {
            read = s.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Ok(started.elapsed()),
                Ok(_) => {} // an answer (408) before the close is fine
            },
            _ = tick.tick() => {
                if s.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    return Ok(started.elapsed());
                }
            }
        }
    }
    Err("still open after 10 s".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_dropped_while_clients_keep_echoing() {
    let timeout = Duration::from_secs(1);
    let mut config = ServerConfig::default();
    config.handshake_timeout = timeout;
    let srv = TestServer::start(Server::builder().component(demo_echo::Echo).config(config)).await;
    let mut before = srv.connect("/echo").await;

    let addr = srv.addr;
    let attack = tokio::spawn(async move {
        let mut slow = JoinSet::new();
        for _ in 0..SLOW_CLIENTS {
            slow.spawn(slowloris(addr));
        }
        let mut dropped_after = Vec::with_capacity(SLOW_CLIENTS);
        while let Some(joined) = slow.join_next().await {
            dropped_after.push(
                joined
                    .expect("slow client task")
                    .expect("dropped by the server"),
            );
        }
        dropped_after
    });
    // While they trickle, an open client echoes and a new one connects.
    let mut echoes = 0u32;
    let mut during = None;
    let started = Instant::now();
    while !attack.is_finished() && started.elapsed() < ws_tests::WAIT {
        send(&mut before, format!("ping {echoes}")).await;
        assert_eq!(next_text(&mut before).await, format!("ping {echoes}"));
        echoes += 1;
        if during.is_none() {
            let mut ws = srv.connect("/echo").await;
            send(&mut ws, "new during the attack").await;
            assert_eq!(next_text(&mut ws).await, "new during the attack");
            during = Some(ws);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dropped_after = attack.await.expect("attack task");
    let latest = dropped_after.iter().max().copied().unwrap_or_default();
    let earliest = dropped_after.iter().min().copied().unwrap_or_default();
    println!("{SLOW_CLIENTS} slow clients dropped after {earliest:?} to {latest:?}");
    assert_eq!(dropped_after.len(), SLOW_CLIENTS);
    assert!(
        latest <= timeout + Duration::from_secs(1),
        "every slow client is dropped within handshake_timeout + 1 s; the last took {latest:?}"
    );
    assert!(
        earliest >= timeout - Duration::from_millis(100),
        "not before the deadline: {earliest:?}"
    );
    assert!(echoes >= 5, "the open client echoed during the attack");
    // Both clients still work afterwards.
    let mut during = during.expect("a client connected during the attack");
    send(&mut during, "after").await;
    assert_eq!(next_text(&mut during).await, "after");
    send(&mut before, "after").await;
    assert_eq!(next_text(&mut before).await, "after");
    drop((before, during));
    srv.shutdown().await;
}

/// One handshake over a raw socket; its status, whether it carried
/// `Retry-After`, and how long the answer took.
async fn handshake(addr: SocketAddr) -> (u16, bool, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(upgrade_request("/echo", "").as_bytes())
        .await
        .expect("write");
    let mut out = Vec::with_capacity(512);
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the server answers and closes within 10 s")
        .expect("read");
    let resp = String::from_utf8_lossy(&out);
    let status = status_of(&resp);
    (
        status,
        header_of(&resp, "retry-after").is_some(),
        started.elapsed(),
    )
}

/// `n` handshakes, 32 at a time; the number answered 429 with
/// `Retry-After`, and the slowest answer.
async fn flood(addr: SocketAddr, n: usize) -> (usize, Duration) {
    const IN_FLIGHT: usize = 32;
    let mut workers = JoinSet::new();
    for w in 0..IN_FLIGHT {
        let share = n / IN_FLIGHT + usize::from(w < n % IN_FLIGHT);
        workers.spawn(async move {
            let mut refused = 0;
            let mut slowest = Duration::ZERO;
            for _ in 0..share {
                let (status, retry_after, took) = handshake(addr).await;
                assert_eq!(status, 429, "every handshake over the limit is refused");
                assert!(retry_after, "a 429 carries Retry-After");
                refused += 1;
                slowest = slowest.max(took);
            }
            (refused, slowest)
        });
    }
    let mut total = (0, Duration::ZERO);
    while let Some(joined) = workers.join_next().await {
        let (refused, slowest) = joined.expect("flood worker");
        total.0 += refused;
        total.1 = total.1.max(slowest);
    }
    total
}

/// Measures this process's memory, so it runs in a child of its own.
#[test]
fn ten_thousand_handshakes_are_refused_fast_and_memory_returns() {
    in_child_process(
        "abuse::ten_thousand_handshakes_are_refused_fast_and_memory_returns",
        || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(handshake_flood());
        },
    );
}

async fn handshake_flood() {
    // The original's limits: 10 open and 10 new per second per address.
    let srv = TestServer::start(Server::builder().component(demo_echo::Echo)).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(srv.connect("/echo").await);
    }
    assert_eq!(srv.server.admitted_connections(), 10);
    // Warm up (allocator, runtime), then take the baseline.
    flood(srv.addr, 1_000).await;
    let baseline = rss_kib();

    let started = Instant::now();
    let (refused, slowest) = flood(srv.addr, 10_000).await;
    let took = started.elapsed();
    assert_eq!(refused, 10_000);
    println!(
        "10000 handshakes refused in {took:?} ({:.0}/s), slowest {slowest:?}",
        10_000.0 / took.as_secs_f64()
    );
    assert!(
        slowest < Duration::from_secs(5),
        "slowest refusal {slowest:?}"
    );
    assert!(took < Duration::from_secs(120), "the flood took {took:?}");

    // The refused handshakes left nothing behind: no place in the limits,
    // and the memory is back near the baseline once their rate state aged.
    assert_eq!(srv.server.admitted_connections(), 10);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = rss_kib();
    println!("VmRSS: baseline {baseline} KiB, after {after} KiB");
    assert!(
        after <= baseline + 16 * 1024,
        "memory grew from {baseline} KiB to {after} KiB"
    );
    // The held connections still echo.
    for ws in &mut held {
        send(ws, "alive").await;
        assert_eq!(next_text(ws).await, "alive");
    }
    drop(held);
    srv.shutdown().await;
}
