//! The baseline of `cargo xtask bench`: a minimal echo server on
//! tokio-tungstenite 0.30 alone, tuned as in issue 7's table — an 8 KiB read
//! buffer instead of tungstenite's 128 KiB, and one flush per burst of
//! messages instead of one per message. Everything ws-provider does is
//! measured against it, so keep it this small and do not "improve" it
//! beyond what a careful user of the library would write.
//!
//! `ws-bench-baseline [--host H] [--port P]` serves `/echo` (every other
//! path gets 404) and prints `WebSocket server running on ADDR with pid PID`,
//! the same line as `ws-cli start`. SIGTERM or SIGINT stop it.

use std::net::SocketAddr;

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Read chunk per connection: the tuned value.
const READ_BUFFER: usize = 8 * 1024;

fn usage() -> ! {
    eprintln!("usage: ws-bench-baseline [--host HOST] [--port PORT]");
    std::process::exit(2);
}

fn main() {
    let mut host = "127.0.0.1".to_owned();
    let mut port = 0u16;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--host", Some(v)) => host = v,
            ("--port", Some(v)) => port = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let addr: SocketAddr = match format!("{host}:{port}").parse() {
        Ok(a) => a,
        Err(_) => usage(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ws-bench-baseline: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("ws-bench-baseline: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        };
        let local = listener.local_addr().unwrap_or(addr);
        println!(
            "WebSocket server running on {local} with pid {}",
            std::process::id()
        );
        let stop = async {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => std::future::pending().await,
            }
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        tokio::spawn(serve(stream));
                    }
                }
            }
        }
    });
}

/// Only `/echo` is served, so that probes for routes the baseline lacks
/// (such as `/bench/fanout`) get 404 as they would from ws-provider.
#[expect(
    clippy::result_large_err,
    reason = "the signature of tungstenite's handshake callback"
)]
fn route(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() == "/echo" {
        Ok(resp)
    } else {
        let mut refusal = ErrorResponse::new(Some("no such route".to_owned()));
        *refusal.status_mut() = StatusCode::NOT_FOUND;
        Err(refusal)
    }
}

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, route, Some(config)).await
    else {
        return;
    };
    // Echo every message; feed what is ready without waiting, then flush
    // the whole burst once.
    while let Some(first) = ws.next().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                    if ws.feed(m).await.is_err() {
                        return;
                    }
                }
                // tungstenite answers pings and closes by itself.
                Ok(_) => {}
                Err(_) => return,
            }
            next = match ws.next().now_or_never() {
                Some(Some(m)) => Some(m),
                Some(None) => return,
                None => None,
            };
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}
