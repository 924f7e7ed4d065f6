//! A read buffer that exists only while data is pending.
//!
//! tungstenite reads in chunks of a size fixed when the stream is built and
//! zero-fills that chunk on every read. A large chunk costs memory on every
//! idle connection and a memset per read; a small one costs a syscall per
//! chunk. [`ReadAhead`] sits between the socket and tungstenite: tungstenite
//! asks for small chunks, and when the socket has data this adapter reads up
//! to `chunk` bytes at once into a buffer it frees again as soon as it is
//! drained. An idle connection holds no read buffer here at all, and a
//! connection that gets little (one message per wake-up, as a chat or a
//! broadcast subscriber) is read straight into tungstenite's piece: the
//! large buffer is only taken once a read comes back full.
//!
//! Writes go the same way: tungstenite hands over each frame (it batches
//! only small frames itself, see [`TUNGSTENITE_WRITE`]), this adapter
//! gathers them up to `write_buffer_size` and writes them with one syscall
//! when flushed or full, then frees the buffer. A burst costs a few large
//! writes, and an idle connection keeps no write buffer either.
//!
//! It also notes when data last came from the socket, so the session knows
//! how long the peer has been silent (keepalive) and when messages arrived
//! (message rate) without reading the clock once per message.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::ReleaseReadBuffer;

/// The read size tungstenite is given on top of a [`ReadAhead`].
pub(crate) const TUNGSTENITE_CHUNK: usize = 1024;

/// tungstenite's own write buffer on top of a [`ReadAhead`]: small frames
/// are gathered there, larger ones come to the adapter one by one. It is
/// kept small because tungstenite never gives its capacity back.
pub(crate) const TUNGSTENITE_WRITE: usize = 4096;

/// Write buffer capacity kept after a flush; a burst's larger buffer is
/// freed.
const KEEP_WRITE: usize = 4096;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct ReadAhead<S> {
    inner: S,
    pending: BytesMut,
    chunk: usize,
    /// Read ahead in `chunk`s: the last read filled what it was given, or
    /// this wake-up's first read brought more than a piece.
    hot: bool,
    /// No read brought data since the socket was last found empty (the
    /// next read is the first of a wake-up).
    fresh: bool,
    last_read: Instant,
    /// Outgoing bytes not yet written; `out[written..]` is left.
    out: Vec<u8>,
    written: usize,
    /// Most bytes gathered before they are written.
    out_limit: usize,
    /// The last write to the socket could not go out (tungstenite retries a
    /// blocked reply to a ping on its next read).
    write_blocked: bool,
    /// The connection is quiet (see [`Self::set_quiet`]): from its start
    /// until its first message, and after a keepalive interval without one.
    quiet: bool,
}

impl<S> ReadAhead<S> {
    /// Reads up to `chunk` bytes from `inner` per syscall and gathers up to
    /// `out_limit` bytes per write; `prefix` is data already read from the
    /// socket (it is served first).
    pub(crate) fn new(inner: S, chunk: usize, out_limit: usize, prefix: &[u8]) -> Self {
        Self {
            inner,
            pending: BytesMut::from(prefix),
            chunk,
            hot: false,
            fresh: true,
            last_read: Instant::now(),
            out: Vec::new(),
            written: 0,
            out_limit,
            write_blocked: false,
            // A new connection is quiet until its first message.
            quiet: true,
        }
    }

    /// While quiet, a read that finds the socket empty tells tungstenite to
    /// give its read buffer back ([`ReleaseReadBuffer`], a patch of ours:
    /// vendor/README.md), so a quiet connection keeps no read buffer
    /// anywhere. A busy connection keeps tungstenite's piece from one
    /// wake-up to the next instead of allocating it again each time.
    pub(crate) fn set_quiet(&mut self, quiet: bool) {
        self.quiet = quiet;
    }

    /// What a read that found the socket empty returns: `Pending`, or while
    /// quiet the `WouldBlock` that releases tungstenite's buffer (the waker
    /// is registered either way: the socket was polled).
    fn nothing(&self) -> Poll<io::Result<()>> {
        if self.quiet {
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                ReleaseReadBuffer,
            )))
        } else {
            Poll::Pending
        }
    }

    /// When data last came from the socket (or the adapter was made).
    pub(crate) fn last_read(&self) -> Instant {
        self.last_read
    }

    /// Notes the time when a read brought data.
    fn note(&mut self, got: bool) {
        if got {
            self.last_read = Instant::now();
        }
    }

    fn serve(&mut self, out: &mut ReadBuf<'_>) {
        let n = out.remaining().min(self.pending.len());
        out.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        if self.pending.is_empty() {
            // Drained: give the memory back while the connection is idle.
            self.pending = BytesMut::new();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            this.serve(out);
            return Poll::Ready(Ok(()));
        }
        // Cold (the last read did not fill tungstenite's piece), or asked
        // for a chunk anyway: read straight into the caller's buffer. A
        // socket with nothing to read then costs no allocation at all.
        if !this.hot || out.remaining() >= this.chunk {
            let before = out.filled().len();
            let wanted = out.remaining();
            let r = Pin::new(&mut this.inner).poll_read(cx, out);
            let got = out.filled().len() - before;
            this.note(got > 0);
            this.fresh = r.is_pending();
            // A full piece: more is likely waiting, read ahead next time.
            this.hot = got == wanted && got > 0;
            return if r.is_pending() { this.nothing() } else { r };
        }
        let piece = out.remaining();
        this.pending.reserve(this.chunk);
        match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.pending) {
            Poll::Ready(Ok(n)) => {
                this.note(n > 0);
                // Within a wake-up, stay ahead; across wake-ups too while
                // each one's first read brings more than a piece, so that
                // read takes the whole burst (a pipelining client costs two
                // reads per wake-up, not three). A wake-up that starts
                // small goes back to direct reads.
                this.hot = !this.fresh || n > piece;
                this.fresh = false;
                // 0 bytes read is the end of the stream: `out` stays empty.
                this.serve(out);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                this.pending = BytesMut::new();
                Poll::Ready(Err(e))
            }
            Poll::Pending => {
                // Nothing to read: no buffer is kept while idle.
                this.pending = BytesMut::new();
                this.fresh = true;
                this.nothing()
            }
        }
    }
}

impl ReadAhead<crate::io::Io> {
    /// Whether a read would find nothing: nothing read ahead, no blocked
    /// write waiting for tungstenite's next read to retry it, and a socket
    /// that is not read-ready (the waker is registered for when it is).
    /// Only meaningful after a read came back pending.
    pub(crate) fn poll_read_idle(&self, cx: &mut Context<'_>) -> bool {
        self.pending.is_empty() && !self.write_blocked && self.inner.poll_read_idle(cx)
    }
}

impl<S: AsyncWrite + Unpin> ReadAhead<S> {
    /// Writes out everything gathered; the buffer is then emptied (and freed
    /// when a burst made it large).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.write_blocked = false;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.write_blocked = true;
                    return Poll::Pending;
                }
            }
        }
        self.written = 0;
        if self.out.capacity() > KEEP_WRITE {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // tungstenite writes before a flush only once it has gathered
        // `TUNGSTENITE_WRITE` bytes itself: a smaller write into an empty
        // buffer is the last of a batch, with the flush right behind it.
        if this.out.is_empty() && buf.len() < TUNGSTENITE_WRITE {
            let r = Pin::new(&mut this.inner).poll_write(cx, buf);
            this.write_blocked = r.is_pending();
            return r;
        }
        if this.out.len() + buf.len() > this.out_limit {
            std::task::ready!(this.poll_drain(cx))?;
            // Too large to gather at all: straight to the socket.
            if buf.len() >= this.out_limit {
                let r = Pin::new(&mut this.inner).poll_write(cx, buf);
                this.write_blocked = r.is_pending();
                return r;
            }
        }
        this.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn serves_prefix_then_large_reads_in_small_pieces() {
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let mut ra = ReadAhead::new(rx, 4096, 4096, b"pre");
        ra.set_quiet(false); // busy: an empty read is `Pending`
        let start = ra.last_read();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        tx.write_all(&data).await.unwrap();
        drop(tx);
        let mut got = Vec::new();
        let mut small = [0u8; 100];
        loop {
            let n = ra.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        assert!(ra.last_read() > start, "reads that brought data are noted");
        assert_eq!(&got[..3], b"pre");
        assert_eq!(&got[3..], &data[..]);
        // Drained and at the end: no buffer is held.
        assert_eq!(ra.pending.capacity(), 0);
    }

    /// A stream that counts the reads that reach it.
    struct Counted<S> {
        inner: S,
        reads: usize,
    }

    impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.reads += 1;
            Pin::new(&mut this.inner).poll_read(cx, buf)
        }
    }

    /// The writing end of an in-memory pipe, and a busy adapter (an empty
    /// read is `Pending`) reading the other end in `chunk`s and counting
    /// its reads.
    fn counted(
        chunk: usize,
    ) -> (
        tokio::io::DuplexStream,
        ReadAhead<Counted<tokio::io::DuplexStream>>,
    ) {
        let (tx, rx) = tokio::io::duplex(1 << 16);
        let mut ra = ReadAhead::new(
            Counted {
                inner: rx,
                reads: 0,
            },
            chunk,
            4096,
            b"",
        );
        ra.set_quiet(false);
        (tx, ra)
    }

    #[tokio::test]
    async fn reads_ahead_only_while_reads_come_back_full() {
        let (mut tx, mut ra) = counted(4096);
        // A burst: after one full piece, the socket is read in chunks.
        let data = vec![1u8; 40_000];
        tx.write_all(&data).await.unwrap();
        let mut small = [0u8; 100];
        let mut got = 0;
        while got < data.len() {
            got += ra.read(&mut small).await.unwrap();
        }
        assert!(
            ra.inner.reads <= 12,
            "{} socket reads for 400 pieces",
            ra.inner.reads
        );
        assert_eq!(ra.pending.capacity(), 0);
        // One small message at a time: read straight into the piece, no
        // buffer taken, one socket read each.
        let before = ra.inner.reads;
        for _ in 0..10 {
            tx.write_all(&[2u8; 30]).await.unwrap();
            assert_eq!(ra.read(&mut small).await.unwrap(), 30);
            assert_eq!(ra.pending.capacity(), 0);
        }
        assert_eq!(ra.inner.reads - before, 10);
    }

    /// Polls one read of `ra` into `buf` once: the bytes read, or `None`
    /// when it is pending.
    fn try_read<S: AsyncRead + Unpin>(ra: &mut ReadAhead<S>, buf: &mut [u8]) -> Option<usize> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut rb = ReadBuf::new(buf);
        match Pin::new(ra).poll_read(&mut cx, &mut rb) {
            Poll::Ready(r) => {
                r.unwrap();
                Some(rb.filled().len())
            }
            Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn a_pipelining_client_costs_two_reads_per_burst() {
        let (mut tx, mut ra) = counted(16_384);
        let mut piece = [0u8; 1024];
        let mut reads_per_burst = Vec::new();
        for _ in 0..4 {
            // A burst of 16 frames of 70 bytes, then the socket is empty.
            tx.write_all(&[3u8; 1120]).await.unwrap();
            let before = ra.inner.reads;
            let mut got = 0;
            while let Some(n) = try_read(&mut ra, &mut piece) {
                got += n;
            }
            assert_eq!(got, 1120);
            assert_eq!(ra.pending.capacity(), 0, "nothing held while idle");
            reads_per_burst.push(ra.inner.reads - before);
        }
        // The first burst finds the adapter reading straight into the
        // piece (full: then ahead); every later one starts ahead.
        assert_eq!(reads_per_burst, [3, 2, 2, 2]);
        // A small wake-up afterwards: back to direct reads.
        tx.write_all(&[4u8; 30]).await.unwrap();
        assert_eq!(try_read(&mut ra, &mut piece), Some(30));
        assert_eq!(try_read(&mut ra, &mut piece), None);
        tx.write_all(&[5u8; 30]).await.unwrap();
        let before = ra.inner.reads;
        assert_eq!(try_read(&mut ra, &mut piece), Some(30));
        assert_eq!(ra.inner.reads - before, 1);
        assert_eq!(ra.pending.capacity(), 0);
    }

    /// A client socket and the server's adapter on a real loopback
    /// connection (a new connection: idle).
    async fn over_loopback() -> (tokio::net::TcpStream, ReadAhead<crate::io::Io>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let ra = ReadAhead::new(crate::io::Io::Plain(server), 16_384, 4096, b"");
        (client, ra)
    }

    /// Sends `hello` and waits until the adapter sees the socket readable.
    async fn send_and_await_readiness(
        client: &mut tokio::net::TcpStream,
        ra: &ReadAhead<crate::io::Io>,
    ) {
        client.write_all(b"hello").await.unwrap();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while ra.poll_read_idle(&mut cx) {
            assert!(std::time::Instant::now() < deadline, "readiness never came");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn idle_only_while_nothing_is_readable_and_no_write_is_blocked() {
        let (mut client, mut ra) = over_loopback().await;
        ra.set_quiet(false); // busy: an empty read is `Pending`
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut piece = [0u8; 1024];
        // Nothing sent yet: a read is pending, and the adapter says idle.
        assert_eq!(try_read(&mut ra, &mut piece), None);
        assert!(ra.poll_read_idle(&mut cx));
        // Data arrives: no longer idle (no read was made to learn it).
        send_and_await_readiness(&mut client, &ra).await;
        assert_eq!(try_read(&mut ra, &mut piece), Some(5));
        assert_eq!(try_read(&mut ra, &mut piece), None);
        assert!(ra.poll_read_idle(&mut cx));
        // A write the client does not read blocks: not idle, so the stream
        // is asked (tungstenite retries a blocked pong on its next read).
        let big = vec![7u8; 64 * 1024];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let blocked = loop {
            match Pin::new(&mut ra).poll_write(&mut cx, &big) {
                Poll::Ready(r) => {
                    r.unwrap();
                    let _ = Pin::new(&mut ra).poll_flush(&mut cx);
                }
                Poll::Pending => break true,
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the socket never filled"
            );
        };
        assert!(blocked);
        assert!(!ra.poll_read_idle(&mut cx));
        // The client drains: the next write goes out, idle again.
        let mut sink = vec![0u8; 1 << 20];
        loop {
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(50), client.read(&mut sink))
                    .await;
            if let Poll::Ready(r) = Pin::new(&mut ra).poll_write(&mut cx, b"x") {
                r.unwrap();
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the write never went out"
            );
        }
        assert!(ra.poll_read_idle(&mut cx));
    }

    #[tokio::test]
    async fn gathers_writes_until_flushed_then_frees_the_buffer() {
        let (a, mut peer) = tokio::io::duplex(1 << 20);
        let mut ra = ReadAhead::new(a, 1024, 64 * 1024, b"");
        ra.set_quiet(false); // busy: an empty read is `Pending`
        let frame: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        for _ in 0..5 {
            ra.write_all(&frame).await.unwrap();
        }
        // Large writes are gathered, not written yet.
        let mut probe = [0u8; 1];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(20), peer.read(&mut probe)).await;
        assert!(early.is_err(), "nothing reaches the socket before a flush");
        ra.flush().await.unwrap();
        assert_eq!(
            ra.out.capacity(),
            0,
            "a burst's buffer is freed after the flush"
        );
        // More than the limit at once goes straight through, in order.
        let big = vec![7u8; 100_000];
        ra.write_all(&frame).await.unwrap();
        ra.write_all(&big).await.unwrap();
        ra.flush().await.unwrap();
        let mut got = vec![0u8; 5 * frame.len() + frame.len() + big.len()];
        peer.read_exact(&mut got).await.unwrap();
        for i in 0..6 {
            assert_eq!(&got[i * frame.len()..(i + 1) * frame.len()], &frame[..]);
        }
        assert!(got[6 * frame.len()..].iter().all(|&b| b == 7));
    }

    #[tokio::test]
    async fn a_quiet_connection_has_tungstenite_release_its_buffer() {
        let (mut client, mut ra) = over_loopback().await;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut piece = [0u8; 1024];
        let poll = |ra: &mut ReadAhead<_>, piece: &mut [u8]| {
            let mut rb = ReadBuf::new(piece);
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match Pin::new(ra).poll_read(&mut cx, &mut rb) {
                Poll::Ready(Ok(())) => Ok(rb.filled().len()),
                Poll::Ready(Err(e)) => Err(Some(e)),
                Poll::Pending => Err(None),
            }
        };
        // New, nothing sent: idle, so an empty read asks tungstenite to
        // release its buffer.
        let e = poll(&mut ra, &mut piece).unwrap_err().expect("not pending");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(e.get_ref().is_some_and(|x| x.is::<ReleaseReadBuffer>()));
        // The socket was polled: its readiness is watched as for `Pending`.
        assert!(ra.poll_read_idle(&mut cx));
        send_and_await_readiness(&mut client, &ra).await;
        assert_eq!(poll(&mut ra, &mut piece).unwrap(), 5);
        // Busy (a message came): an empty read is plainly pending.
        ra.set_quiet(false);
        assert!(poll(&mut ra, &mut piece).unwrap_err().is_none());
        // Idle again (a keepalive interval of silence).
        ra.set_quiet(true);
        let e = poll(&mut ra, &mut piece).unwrap_err().expect("not pending");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[tokio::test]
    async fn holds_nothing_while_idle() {
        let (_tx, rx) = tokio::io::duplex(64);
        let mut ra = ReadAhead::new(rx, 16 * 1024, 16 * 1024, b"");
        ra.set_quiet(false); // busy: an empty read is `Pending`
        let mut buf = [0u8; 10];
        let r = tokio::time::timeout(std::time::Duration::from_millis(20), ra.read(&mut buf)).await;
        assert!(r.is_err(), "nothing to read yet");
        assert_eq!(ra.pending.capacity(), 0);
        assert!(ra.last_read().elapsed() >= std::time::Duration::from_millis(20));
    }
}
