//! The little of RFC 6455 a load generator needs, written so that the client
//! costs far less per message than any server it measures: one fixed
//! handshake (fixed key, so the expected accept value is a constant), frames
//! encoded and masked once up front and then only copied, and a parser for
//! the server's (unmasked) frames that reads headers in place and never
//! copies or unmasks a payload.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt as _};

/// The fixed `Sec-WebSocket-Key` (the RFC's own example nonce).
pub(crate) const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// `Sec-WebSocket-Accept` for [`KEY`] (RFC 6455, section 1.3).
pub(crate) const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// The `Origin` every handshake sends, so that a server with an origin
/// allow-list runs its check on every connection (allow `localhost`).
pub(crate) const ORIGIN: &str = "http://localhost";
/// The masking key of every client frame. Any key is valid; a fixed one
/// lets frames be encoded once.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Opcode of a binary data frame.
pub(crate) const OP_BINARY: u8 = 0x2;
/// Opcode of a text data frame.
pub(crate) const OP_TEXT: u8 = 0x1;
/// Opcode of a close frame.
pub(crate) const OP_CLOSE: u8 = 0x8;

/// The upgrade request for `path` on `host` (`127.0.0.1:PORT`), with a
/// `Cookie` header when `cookie` is given (`NAME=VALUE; NAME2=VALUE2`, as
/// HTTP/1.1 sends several cookies).
pub(crate) fn upgrade_request(host: &str, path: &str, cookie: Option<&str>) -> Vec<u8> {
    let cookie = cookie.map_or_else(String::new, |c| format!("Cookie: {c}\r\n"));
    format!(
        "GET {path} HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Origin: {ORIGIN}\r\n\
         {cookie}\
         \r\n"
    )
    .into_bytes()
}

/// Checks one `--cookie` argument, `NAME=VALUE`: a token name (RFC 6265)
/// and a value without spaces, quotes, commas, semicolons or backslashes,
/// so that it goes into the request as is.
pub(crate) fn check_cookie(pair: &str) -> Result<(), String> {
    let Some((name, value)) = pair.split_once('=') else {
        return Err(format!("`{pair}` is not NAME=VALUE"));
    };
    let separator = |c: char| "()<>@,;:\\\"/[]?={} \t".contains(c);
    if name.is_empty() || name.chars().any(|c| !c.is_ascii_graphic() || separator(c)) {
        return Err(format!("`{name}` is not a valid cookie name"));
    }
    if value
        .chars()
        .any(|c| !c.is_ascii_graphic() || matches!(c, '"' | ',' | ';' | '\\'))
    {
        return Err(format!(
            "the value of cookie `{name}` has a character a cookie value cannot have"
        ));
    }
    Ok(())
}

/// A masked client frame (FIN set) with `opcode` and `payload`.
pub(crate) fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = Vec::with_capacity(len + 14);
    f.push(0x80 | opcode);
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        f.push(0x80 | 126);
        f.extend_from_slice(&len16.to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&MASK);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    f
}

/// A masked close frame with status 1000.
pub(crate) fn close_frame() -> Vec<u8> {
    client_frame(OP_CLOSE, &1000u16.to_be_bytes())
}

/// `size` bytes of printable ASCII (valid as text or binary).
pub(crate) fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// The header of one server frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// The FIN bit.
    pub(crate) fin: bool,
    /// The opcode (low four bits of the first byte).
    pub(crate) opcode: u8,
    /// Payload length in bytes.
    pub(crate) len: usize,
}

impl Header {
    /// Whether this is a text or binary frame (or a continuation).
    pub(crate) fn is_data(&self) -> bool {
        self.opcode <= OP_BINARY
    }
}

/// Parses server frames out of a fixed read buffer.
///
/// A frame whose payload fits in the buffer is returned whole, with its
/// payload; a larger one is returned as soon as its header is in, with an
/// empty payload, and the rest of it is skipped as it arrives.
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    skip: usize,
}

impl FrameReader {
    /// A reader with a `cap`-byte buffer that starts with `prefix` (bytes
    /// read past the handshake answer).
    pub(crate) fn new(cap: usize, prefix: &[u8]) -> Self {
        let cap = cap.max(prefix.len()).max(256);
        let mut buf = vec![0u8; cap].into_boxed_slice();
        buf[..prefix.len()].copy_from_slice(prefix);
        Self {
            buf,
            start: 0,
            end: prefix.len(),
            skip: 0,
        }
    }

    /// Bytes read and not parsed yet (the start of the next frame), for a
    /// reader that takes over; empty while the rest of a large frame is
    /// being skipped.
    pub(crate) fn unparsed(&self) -> &[u8] {
        if self.skip > 0 {
            return &[];
        }
        &self.buf[self.start..self.end]
    }

    /// Reads once from `r`: the number of bytes read, 0 at end of stream.
    pub(crate) async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() || self.start > self.buf.len() / 2 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = r.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        let skipped = self.skip.min(self.end - self.start);
        self.start += skipped;
        self.skip -= skipped;
        Ok(n)
    }

    /// The next frame in the buffer, if its header (and its payload, when
    /// it fits the buffer) has arrived.
    pub(crate) fn next_frame(&mut self) -> Option<(Header, &[u8])> {
        let b = &self.buf[self.start..self.end];
        if b.len() < 2 {
            return None;
        }
        let fin = b[0] & 0x80 != 0;
        let opcode = b[0] & 0x0f;
        let masked = b[1] & 0x80 != 0;
        let (len, mut hlen) = match b[1] & 0x7f {
            126 => {
                if b.len() < 4 {
                    return None;
                }
                (usize::from(u16::from_be_bytes([b[2], b[3]])), 4)
            }
            127 => {
                if b.len() < 10 {
                    return None;
                }
                let mut l = [0u8; 8];
                l.copy_from_slice(&b[2..10]);
                (
                    usize::try_from(u64::from_be_bytes(l)).unwrap_or(usize::MAX),
                    10,
                )
            }
            l => (usize::from(l), 2),
        };
        if masked {
            // Servers do not mask; tolerate it by skipping the key.
            hlen += 4;
        }
        let header = Header { fin, opcode, len };
        if hlen + len <= b.len() {
            let from = self.start + hlen;
            self.start = from + len;
            return Some((header, &self.buf[from..from + len]));
        }
        if hlen + len <= self.buf.len() || b.len() < hlen {
            // It fits once the rest arrives (or the header is incomplete).
            return None;
        }
        let have = b.len() - hlen;
        self.start = self.end;
        self.skip = len - have;
        Some((header, &[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = client_frame(opcode, payload);
        // Unmask: drop the mask bit and key, restore the payload.
        let hlen = match f[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        f[1] &= 0x7f;
        f.drain(hlen..hlen + 4);
        f[hlen..].copy_from_slice(payload);
        f
    }

    #[test]
    fn frames_are_masked_and_sized() {
        let f = client_frame(OP_BINARY, b"abcd");
        assert_eq!(f[0], 0x82);
        assert_eq!(f[1], 0x84);
        assert_eq!(&f[2..6], &MASK);
        assert_eq!(f[6] ^ MASK[0], b'a');
        assert_eq!(client_frame(OP_BINARY, &payload(300))[1], 0x80 | 126);
        assert_eq!(client_frame(OP_BINARY, &payload(70_000))[1], 0x80 | 127);
    }

    #[test]
    fn cookie_goes_into_the_request() {
        let plain = String::from_utf8(upgrade_request("127.0.0.1:1", "/echo", None)).unwrap();
        assert!(!plain.contains("Cookie"));
        assert!(plain.ends_with("Origin: http://localhost\r\n\r\n"));
        let with =
            String::from_utf8(upgrade_request("127.0.0.1:1", "/echo", Some("a=b; c=d"))).unwrap();
        assert!(with.ends_with("Origin: http://localhost\r\nCookie: a=b; c=d\r\n\r\n"));
        assert!(check_cookie("bench_token=eyJhbGci.eyJzdWIi.c2ln-_").is_ok());
        assert!(check_cookie("empty=").is_ok());
        for bad in [
            "novalue",
            "=v",
            "a b=c",
            "a=b;c",
            "a=b c",
            "a=\"b\"",
            "a=b\r\nX: y",
        ] {
            assert!(check_cookie(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn reader_splits_and_skips() {
        let mut wire = Vec::new();
        wire.extend(server_frame(OP_BINARY, &payload(64)));
        wire.extend(server_frame(OP_TEXT, &payload(1000)));
        wire.extend(server_frame(OP_BINARY, &payload(5)));
        let mut r = FrameReader::new(256, &[]);
        let mut src: &[u8] = &wire;
        let mut seen = Vec::new();
        loop {
            while let Some((h, p)) = r.next_frame() {
                seen.push((h.opcode, h.len, p.len()));
            }
            // Feed the wire in small pieces.
            let take = src.len().min(100);
            let (mut chunk, rest) = src.split_at(take);
            src = rest;
            if r.fill(&mut chunk).await.unwrap() == 0 {
                break;
            }
        }
        assert_eq!(
            seen,
            vec![(OP_BINARY, 64, 64), (OP_TEXT, 1000, 0), (OP_BINARY, 5, 5)]
        );
    }
}
