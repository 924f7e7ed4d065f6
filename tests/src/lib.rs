//! Helpers for the integration tests: servers on free loopback ports, real
//! WebSocket clients (plain and TLS), raw HTTP requests and test
//! certificates. Real services (Redis, PostgreSQL), child processes and
//! temporary directories come from `ws-test-support`.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use ws_runtime::{Server, ServerBuilder};

pub mod tls;

/// A real WebSocket client.
pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long any single wait in a test may take before it counts as a failure.
pub const WAIT: Duration = Duration::from_secs(10);

/// A server running in this process on 127.0.0.1 with a free port.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The server (for its routes and counters).
    pub server: Server,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Builds and starts a server.
    pub async fn start(builder: ServerBuilder) -> Self {
        Self::serve(builder.build().expect("server builds")).await
    }

    /// Starts a built server.
    pub async fn serve(server: Server) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            server,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `ws://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Connects a client to `path`.
    pub async fn connect(&self, path: &str) -> Client {
        connect(&self.url(path)).await
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and waits until `serve` returned.
    pub async fn shutdown(mut self) {
        self.begin_shutdown();
        let task = self.task.take().expect("running");
        tokio::time::timeout(WAIT, task)
            .await
            .expect("shutdown within the wait limit")
            .expect("serve task")
            .expect("serve result");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Connects a WebSocket client.
pub async fn connect(url: &str) -> Client {
    let (ws, _resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect within the wait limit")
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    ws
}

/// Connects a WebSocket client that sends extra request headers (`Origin`,
/// `X-Forwarded-For`, …); the error is tungstenite's (an HTTP refusal shows
/// its status).
pub async fn connect_with(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut req = url.into_client_request()?;
    for (name, value) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(value).expect("header value"),
        );
    }
    let (ws, _resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect within the wait limit")?;
    Ok(ws)
}

/// The value of header `name` in a raw HTTP answer (case-insensitive name).
pub fn header_of(response: &str, name: &str) -> Option<String> {
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// The body of a raw HTTP answer.
pub fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Polls `cond` every 10 ms until it holds, failing the test after [`WAIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next message, failing the test after [`WAIT`].
pub async fn next<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Message {
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("message within the wait limit")
        .expect("stream not ended")
        .expect("no error")
}

/// The next text message.
pub async fn next_text<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> String {
    match next(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Sends and flushes.
pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    msg: impl Into<Message>,
) {
    ws.send(msg.into()).await.expect("send");
}

/// Reads until the server's close frame, completes the close handshake, and
/// returns the frame's code and reason.
pub async fn expect_close<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> (u16, String) {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close within the wait limit")
        {
            Some(Ok(Message::Close(frame))) => {
                // Keep reading so the client's reply is sent and the close
                // handshake completes.
                let _ =
                    tokio::time::timeout(WAIT, async { while ws.next().await.is_some() {} }).await;
                return frame.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                });
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Sends raw bytes and returns everything the server answers until it closes
/// the connection (or `limit` passes).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP answer.
pub fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// A WebSocket connection to `/echo` on a raw socket (no WebSocket
/// library, no buffers of its own): the upgrade is sent and its 101 read,
/// nothing more.
pub async fn raw_websocket(addr: SocketAddr) -> TcpStream {
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

/// A valid upgrade request head for `path` (plus extra header lines).
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}
