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
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use ws_runtime::{Server, ServerConfig};
use ws_tests::{TestServer, WAIT, upgrade_request};

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

/// Waits (up to [`WAIT`]) until the live bytes are at most `limit`; the
/// last count either way.
async fn settle_below(limit: isize) -> isize {
    let until = Instant::now() + WAIT;
    loop {
        let now = live();
        if now <= limit || Instant::now() > until {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Opens a WebSocket connection on a raw socket.
async fn open(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(upgrade_request("/echo", "").as_bytes())
        .await
        .expect("send the upgrade");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).await.expect("read the 101");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "not upgraded: {}",
        String::from_utf8_lossy(&head)
    );
    s
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
    let mut head = [0u8; 2];
    s.read_exact(&mut head)
        .await
        .expect("read the echo's header");
    assert_eq!(head[0], 0x82, "a final binary frame");
    let echoed_len = match head[1] {
        126 => u64::from(s.read_u16().await.expect("16-bit length")),
        127 => s.read_u64().await.expect("64-bit length"),
        short => u64::from(short),
    };
    assert_eq!(echoed_len, len as u64, "unmasked, the message's length");
    let mut echoed = vec![0u8; len];
    s.read_exact(&mut echoed).await.expect("read the echo");
    assert!(echoed == payload, "the echo differs from the message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_keep_no_read_or_write_buffers_while_idle() {
    // The per-address limits off: every client comes from 127.0.0.1.
    let mut config = ServerConfig::default();
    config.max_connections_per_address = 0;
    config.max_connections_per_address_per_second = 0;
    let srv = TestServer::start(Server::builder().component(demo_echo::Echo).config(config)).await;
    // Warm up the runtime, the allocator and the server's tables.
    let warm = open(srv.addr).await;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Idle connections: the handshake, then nothing.
    const IDLE: usize = 200;
    let before = live();
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(open(srv.addr).await);
    }
    // About 2.8 KiB here (no aspects, no limits); tungstenite's read
    // buffer, were it allocated up front, would add 1 KiB.
    const IDLE_BUDGET: usize = 3328;
    let budget = before + (IDLE * IDLE_BUDGET) as isize;
    let now = settle_below(budget).await;
    let per_connection = (now - before) / IDLE as isize;
    println!("an idle connection: {per_connection} bytes live on the server");
    assert!(
        now <= budget,
        "an idle connection keeps {per_connection} bytes (budget {IDLE_BUDGET})"
    );

    // Connections that each echoed one 1 MiB message, then went idle: no
    // buffer stays at the size of the message (tungstenite would keep 1 MiB
    // to read and 1 MiB to write per connection).
    const BIG: usize = 16;
    const SIZE: usize = 1 << 20;
    let mut big = Vec::new();
    for _ in 0..BIG {
        big.push(open(srv.addr).await);
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
    let now = settle_below(budget).await;
    println!(
        "after a 1 MiB echo: {} bytes more live per connection",
        (now - before) / BIG as isize
    );
    assert!(
        now <= budget,
        "{BIG} connections that echoed {SIZE} bytes keep {} bytes more each (budget 16 KiB)",
        (now - before) / BIG as isize
    );

    // They still echo.
    for s in &mut big {
        echo_binary(s, 100).await;
    }
    drop((idle, big));
    srv.shutdown().await;
}
