//! A read buffer that exists only while data is pending.
//!
//! tungstenite reads in chunks of a size fixed when the stream is built and
//! zero-fills that chunk on every read. A large chunk costs memory on every
//! idle connection and a memset per read; a small one costs a syscall per
//! chunk. [`ReadAhead`] sits between the socket and tungstenite: tungstenite
//! asks for small chunks, and when the socket has data this adapter reads up
//! to `chunk` bytes at once into a buffer it frees again as soon as it is
//! drained. An idle connection holds no read buffer here at all.
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

/// The read size tungstenite is given on top of a [`ReadAhead`].
pub(crate) const TUNGSTENITE_CHUNK: usize = 1024;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct ReadAhead<S> {
    inner: S,
    pending: BytesMut,
    chunk: usize,
    last_read: Instant,
}

impl<S> ReadAhead<S> {
    /// Reads up to `chunk` bytes from `inner` per syscall; `prefix` is data
    /// already read from the socket (it is served first).
    pub(crate) fn new(inner: S, chunk: usize, prefix: &[u8]) -> Self {
        Self {
            inner,
            pending: BytesMut::from(prefix),
            chunk,
            last_read: Instant::now(),
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
        if out.remaining() >= this.chunk {
            let before = out.filled().len();
            let r = Pin::new(&mut this.inner).poll_read(cx, out);
            this.note(out.filled().len() > before);
            return r;
        }
        this.pending.reserve(this.chunk);
        match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.pending) {
            Poll::Ready(Ok(n)) => {
                this.note(n > 0);
                // 0 bytes read is the end of the stream: `out` stays empty.
                this.serve(out);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                this.pending = BytesMut::new();
                Poll::Ready(Err(e))
            }
            Poll::Pending => {
                this.pending = BytesMut::new();
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn serves_prefix_then_large_reads_in_small_pieces() {
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let mut ra = ReadAhead::new(rx, 4096, b"pre");
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

    #[tokio::test]
    async fn holds_nothing_while_idle() {
        let (_tx, rx) = tokio::io::duplex(64);
        let mut ra = ReadAhead::new(rx, 16 * 1024, b"");
        let mut buf = [0u8; 10];
        let r = tokio::time::timeout(std::time::Duration::from_millis(20), ra.read(&mut buf)).await;
        assert!(r.is_err(), "nothing to read yet");
        assert_eq!(ra.pending.capacity(), 0);
        assert!(ra.last_read().elapsed() >= std::time::Duration::from_millis(20));
    }
}
