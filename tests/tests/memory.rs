//! What the server keeps per connection, counted exactly: this test binary's
//! allocator counts the bytes live in the process. The clients are raw
//! sockets (no WebSocket library, no buffers of their own worth counting),
//! so what grows is the server's.
//!
//! One test only: tests running in parallel would count each other's
//! allocations.

// A counting global allocator is an `unsafe impl`; it only passes every call
// on to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use ws_runtime::{Server, ServerConfig};
use ws_tests::{TestServer, WAIT, raw_websocket};

/// The system allocator, counting the bytes it has handed out and not yet
/// been given back.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to `System` unchanged; only a counter is
// updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System::alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Waits (up to [`WAIT`]) until the live bytes are at most `limit`, then
/// asserts they are: `what` happened to `count` connections since `before`
/// live bytes, and the change per connection is printed and reported.
async fn expect_live_at_most(limit: isize, before: isize, count: usize, what: &str) {
    let until = Instant::now() + WAIT;
    let mut now = live();
    while now > limit && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
        now = live();
    }
    let change = (now - before) / count as isize;
    let allowed = (limit - before) / count as isize;
    println!("{what}: {change:+} bytes live per connection (at most {allowed:+})");
    assert!(
        now <= limit,
        "{what}: {change:+} bytes live per connection, more than {allowed:+}"
    );
}

/// Sends one masked binary message of `len` bytes and reads its echo back.
async fn echo_binary(s: &mut TcpStream, len: usize) {
    let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut frame = vec![0x82];
    match len {
        0..126 => frame.push(0x80 | len as u8),
        126..65536 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).await.expect("send the message");
    drop(frame);
    let echoed = read_binary(s).await;
    assert_eq!(echoed.len(), len, "the echo's length");
    assert!(echoed == payload, "the echo differs from the message");
}

/// Reads the next binary message, answering the server's pings on the way
/// (keepalive).
async fn read_binary(s: &mut TcpStream) -> Vec<u8> {
    loop {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await.expect("read a frame header");
        let len = match head[1] {
            126 => u64::from(s.read_u16().await.expect("16-bit length")),
            127 => s.read_u64().await.expect("64-bit length"),
            short => u64::from(short),
        };
        assert_eq!(head[1] & 0x80, 0, "a server frame is not masked");
        let mut payload = vec![0u8; usize::try_from(len).expect("length")];
        s.read_exact(&mut payload)
            .await
            .expect("read a frame payload");
        match head[0] {
            0x82 => return payload,
            0x89 => {
                // A ping: the pong carries its payload, masked (zero mask).
                let mut pong = vec![0x8a, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                pong.extend_from_slice(&payload);
                s.write_all(&pong).await.expect("send a pong");
            }
            other => panic!("unexpected frame {other:#x}"),
        }
    }
}

/// The demo echo server with the per-address limits off (every client
/// comes from 127.0.0.1) and the given keepalive interval.
async fn echo_server(ping_interval: Duration) -> TestServer {
    let mut config = ServerConfig::default();
    config.max_connections_per_address = 0;
    config.max_connections_per_address_per_second = 0;
    config.websocket.ping_interval = ping_interval;
    // Room for the 1 MiB echo below (the default is 64 KiB).
    config.websocket.max_message_size = 2 << 20;
    config.websocket.max_frame_size = 2 << 20;
    TestServer::start(Server::builder().component(demo_echo::Echo).config(config)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_keep_no_read_or_write_buffers_while_idle() {
    let srv = echo_server(ServerConfig::default().websocket.ping_interval).await;
    // Warm up the runtime, the allocator and the server's tables.
    let warm = raw_websocket(srv.addr).await;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Idle connections: the handshake, then nothing.
    const IDLE: usize = 200;
    let before = live();
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(raw_websocket(srv.addr).await);
    }
    // About 2.8 KiB here (no aspects, no limits); tungstenite's read
    // buffer, were it allocated up front, would add 1 KiB.
    const IDLE_BUDGET: usize = 3328;
    let budget = before + (IDLE * IDLE_BUDGET) as isize;
    expect_live_at_most(budget, before, IDLE, "an idle connection").await;

    // Connections that each echoed one 1 MiB message, then went idle: no
    // buffer stays at the size of the message (tungstenite would keep 1 MiB
    // to read and 1 MiB to write per connection).
    const BIG: usize = 16;
    const SIZE: usize = 1 << 20;
    let mut big = Vec::new();
    for _ in 0..BIG {
        big.push(raw_websocket(srv.addr).await);
    }
    let before = live();
    let echoes: Vec<_> = big
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                echo_binary(&mut s, SIZE).await;
                s
            })
        })
        .collect();
    let mut big = Vec::new();
    for e in echoes {
        big.push(e.await.expect("echo task"));
    }
    let budget = before + (BIG * 16 * 1024) as isize;
    expect_live_at_most(budget, before, BIG, "after a 1 MiB echo").await;

    // They still echo.
    for s in &mut big {
        echo_binary(s, 100).await;
    }
    drop((idle, big));
    srv.shutdown().await;

    // Connections that sent a message and then went quiet for a keepalive
    // interval give back tungstenite's read piece (1 KiB); while busy they
    // keep it from one message to the next.
    let srv = echo_server(Duration::from_secs(1)).await;
    const QUIET: usize = 50;
    let mut quiet = Vec::new();
    for _ in 0..QUIET {
        let mut s = raw_websocket(srv.addr).await;
        echo_binary(&mut s, 100).await;
        quiet.push(s);
    }
    // A read piece is 1 KiB: at least 768 bytes each come back.
    let busy = live();
    let target = busy - (QUIET * 768) as isize;
    expect_live_at_most(target, busy, QUIET, "quiet for a keepalive interval").await;
    // Still open: they answer the ping and echo.
    for s in &mut quiet {
        echo_binary(s, 100).await;
    }
    drop(quiet);
    srv.shutdown().await;
}
