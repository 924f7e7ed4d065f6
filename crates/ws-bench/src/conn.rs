//! Opening one WebSocket connection: TCP connect (optionally from a chosen
//! loopback source address), the fixed upgrade request (with the same
//! cookies on every connection, when given), and the answer.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::wire;

/// How long connecting plus the handshake may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The socket failed (refused, reset, out of ports or files, timeout).
    Io(io::Error),
    /// The server answered the upgrade with this HTTP status instead of 101.
    Refused(u16),
    /// The answer was not a valid 101 for our key.
    BadAnswer(String),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::Refused(s) => write!(f, "upgrade refused with HTTP {s}"),
            Self::BadAnswer(s) => write!(f, "bad upgrade answer: {s}"),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Where to connect and what to ask for.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The server (a loopback address).
    pub(crate) addr: SocketAddr,
    /// The upgrade request, encoded once.
    pub(crate) request: Vec<u8>,
}

impl Target {
    /// A target for `path` on `addr`, without cookies.
    #[cfg(test)]
    pub(crate) fn new(addr: SocketAddr, path: &str) -> Self {
        Self::with_cookie(addr, path, None)
    }

    /// A target for `path` on `addr` whose every handshake sends `cookie`
    /// (`NAME=VALUE; …`) when given.
    pub(crate) fn with_cookie(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Self {
        Self {
            addr,
            request: wire::upgrade_request(&addr.to_string(), path, cookie),
        }
    }
}

/// An open connection and the bytes that followed the 101 answer.
pub(crate) struct Opened {
    /// The socket, with `TCP_NODELAY` set.
    pub(crate) stream: TcpStream,
    /// Frame bytes already read with the answer.
    pub(crate) rest: Vec<u8>,
}

/// The loopback source address of connection `i` when connections are
/// spread over `sources` addresses starting at 127.0.0.`base`; `None` (the
/// kernel's choice) when `sources` is at most 1.
pub(crate) fn source_for(i: usize, sources: usize, base: usize) -> Option<Ipv4Addr> {
    (sources > 1).then(|| {
        let host = base + i % sources;
        Ipv4Addr::new(127, 0, (host / 254) as u8, (host % 254 + 1) as u8)
    })
}

/// Opens a WebSocket connection to `target`.
pub(crate) async fn open(target: &Target, source: Option<Ipv4Addr>) -> Result<Opened, OpenError> {
    match tokio::time::timeout(OPEN_TIMEOUT, open_inner(target, source)).await {
        Ok(r) => r,
        Err(_) => Err(OpenError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            "connect and handshake took over 10 s",
        ))),
    }
}

async fn open_inner(target: &Target, source: Option<Ipv4Addr>) -> Result<Opened, OpenError> {
    let mut stream = match source {
        None => TcpStream::connect(target.addr).await?,
        Some(ip) => {
            let socket = TcpSocket::new_v4()?;
            // Let connect() choose the port, as it does without a bind: a
            // port chosen at bind time ignores the destination, and with
            // tens of thousands of sockets in TIME_WAIT that search takes
            // milliseconds per connection (measured: 127 ms per churn cycle).
            nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::IpBindAddressNoPort,
                &true,
            )
            .map_err(io::Error::from)?;
            socket.bind(SocketAddr::new(ip.into(), 0))?;
            socket.connect(target.addr).await?
        }
    };
    stream.set_nodelay(true)?;
    stream.write_all(&target.request).await?;
    let mut buf = Vec::with_capacity(512);
    let head_end = loop {
        if buf.len() > 16 * 1024 {
            return Err(OpenError::BadAnswer("answer head over 16 KiB".into()));
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(OpenError::BadAnswer(format!(
                "connection closed after {} bytes of answer",
                buf.len()
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| OpenError::BadAnswer(head.lines().next().unwrap_or("").to_owned()))?;
    if status != 101 {
        return Err(OpenError::Refused(status));
    }
    if !head.contains(wire::ACCEPT) {
        return Err(OpenError::BadAnswer(
            "Sec-WebSocket-Accept does not match the key".into(),
        ));
    }
    Ok(Opened {
        stream,
        rest: buf[head_end..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_over_loopback() {
        assert_eq!(source_for(5, 1, 0), None);
        assert_eq!(source_for(0, 4, 0), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(source_for(5, 4, 0), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_for(3, 4, 8), Some(Ipv4Addr::new(127, 0, 0, 12)));
        assert_eq!(source_for(0, 300, 254), Some(Ipv4Addr::new(127, 0, 1, 1)));
    }
}
