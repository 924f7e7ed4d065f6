//! The frame path as a session runs it: client bytes through ws-runtime's
//! socket adapter (`ReadAhead`) into our patched tungstenite (server role,
//! the route's `WebSocketConfig`), every data message echoed back, and what
//! the server wrote read again by a client.
//!
//! The socket is in memory: how much each read and write moves, and where
//! it would block, comes from the input too, as does the adapter's quiet
//! mode (which makes tungstenite give its read buffer back).

#![no_main]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_util::{Sink, Stream};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use ws_runtime::__fuzz::{ReadAhead, ws_config};

/// The input: a 12-byte head of settings, the socket's schedule, then the
/// bytes the client sends (frames as on the wire: seeds are real ones).
///
/// ```text
/// 0   u16  max_message - 1        6   u16  write_buffer_size - 256
/// 2   u16  max_frame - 1          8   u16  quiet after message i: bit i % 16
/// 4   u16  read_buffer_size - 256 10  u8   bytes read with the head (hyper's leftover)
///                                 11  u8   n: schedule entries, then n reads, n writes (u16 each:
///                                          bytes the socket moves, 0: would block once)
/// ```
struct Input<'a> {
    max_message: usize,
    max_frame: usize,
    read_buffer: usize,
    write_buffer: usize,
    quiet: u16,
    prefix: usize,
    reads: VecDeque<u16>,
    writes: VecDeque<u16>,
    wire: &'a [u8],
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

impl<'a> Input<'a> {
    fn parse(data: &'a [u8]) -> Option<Self> {
        let head = data.get(..12)?;
        let n = usize::from(head[11]);
        let schedule = data.get(12..12 + 4 * n)?;
        let entries = |from: usize| (0..n).map(|i| u16_at(schedule, from + 2 * i)).collect();
        Some(Self {
            // Small limits, so that they are reached; the server's bounds
            // on the buffers (256 bytes at least).
            max_message: 1 + usize::from(u16_at(head, 0)),
            max_frame: 1 + usize::from(u16_at(head, 2)),
            read_buffer: 256 + usize::from(u16_at(head, 4)),
            write_buffer: 256 + usize::from(u16_at(head, 6)),
            quiet: u16_at(head, 8),
            prefix: usize::from(head[10]),
            reads: entries(0),
            writes: entries(2 * n),
            wire: &data[12 + 4 * n..],
        })
    }
}

/// The client's end of the socket.
struct Socket {
    data: Vec<u8>,
    pos: usize,
    reads: VecDeque<u16>,
    writes: VecDeque<u16>,
    written: Rc<RefCell<Vec<u8>>>,
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let left = this.data.len() - this.pos;
        let n = match this.reads.pop_front() {
            Some(0) if left > 0 => return Poll::Pending,
            Some(n) => usize::from(n).max(1),
            None => left,
        }
        .min(left)
        .min(buf.remaining());
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = match this.writes.pop_front() {
            Some(0) => return Poll::Pending,
            Some(n) => usize::from(n),
            None => buf.len(),
        }
        .min(buf.len());
        this.written.borrow_mut().extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What the server wrote, as a client reads it (its own writes dropped).
struct Replay(io::Cursor<Vec<u8>>);

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type Ws = WebSocketStream<ReadAhead<Socket>>;

/// Polls `f` until it is ready; `None` when the budget runs out first.
fn ready<T>(budget: &mut usize, mut f: impl FnMut(&mut Context<'_>) -> Poll<T>) -> Option<T> {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        *budget = budget.checked_sub(1)?;
        if let Poll::Ready(t) = f(&mut cx) {
            return Some(t);
        }
    }
}

/// Sends `msg` and flushes it; whether it went out.
fn echo(ws: &mut Ws, budget: &mut usize, msg: Message) -> bool {
    let ok = ready(budget, |cx| Pin::new(&mut *ws).poll_ready(cx)).is_some_and(|r| r.is_ok());
    ok && Pin::new(&mut *ws).start_send(msg).is_ok()
        && ready(budget, |cx| Pin::new(&mut *ws).poll_flush(cx)).is_some_and(|r| r.is_ok())
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let (max_message, max_frame) = (input.max_message, input.max_frame);
    let data = input.wire;
    let prefix = input.prefix.min(data.len());
    let written = Rc::new(RefCell::new(Vec::new()));
    let mut budget = 64 + 2 * data.len() + 4 * (input.reads.len() + input.writes.len());
    let socket = Socket {
        data: data[prefix..].to_vec(),
        pos: 0,
        reads: input.reads,
        writes: input.writes,
        written: Rc::clone(&written),
    };
    let io = ReadAhead::new(
        socket,
        input.read_buffer,
        input.write_buffer,
        &data[..prefix],
    );
    let mut ws: Ws = WebSocketStream::from_raw_socket_in_one_task(
        io,
        Role::Server,
        Some(ws_config(max_message, max_frame)),
    );

    let mut echoed = Vec::new();
    let mut echoing = true;
    let mut count = 0u32;
    loop {
        let Some(next) = ready(&mut budget, |cx| Pin::new(&mut ws).poll_next(cx)) else {
            panic!("the session makes no progress");
        };
        let msg = match next {
            Some(Ok(msg)) => msg,
            Some(Err(_)) | None => break,
        };
        match &msg {
            Message::Text(t) => {
                assert!(t.len() <= max_message);
                assert!(std::str::from_utf8(t.as_bytes()).is_ok());
            }
            Message::Binary(b) => assert!(b.len() <= max_message),
            Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
            Message::Close(Some(c)) => {
                assert!(c.reason.len() <= 123);
                assert!(!matches!(u16::from(c.code), 1005 | 1006 | 1015));
            }
            Message::Close(None) => {}
            Message::Frame(_) => panic!("a raw frame read"),
        }
        ws.get_mut()
            .set_quiet(input.quiet.rotate_right(count % 16) & 1 == 1);
        count += 1;
        if echoing && (msg.is_text() || msg.is_binary()) {
            echoing = echo(&mut ws, &mut budget, msg.clone());
            if echoing {
                echoed.push(msg);
            }
        }
    }

    // What went out is what was echoed, in order, in frames a client reads.
    drop(ws);
    let written = written.take();
    let mut client = WebSocket::from_raw_socket(
        Replay(io::Cursor::new(written)),
        Role::Client,
        Some(WebSocketConfig::default()),
    );
    let mut read = Vec::new();
    while let Ok(m) = client.read() {
        if m.is_text() || m.is_binary() {
            read.push(m);
        }
    }
    assert!(
        read.len() >= echoed.len(),
        "{} of {} echoes read",
        read.len(),
        echoed.len()
    );
    assert_eq!(read[..echoed.len()], echoed[..]);
});
