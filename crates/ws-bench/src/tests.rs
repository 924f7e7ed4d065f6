//! The scenarios against small in-process servers built on
//! tokio-tungstenite: the client's framing, counting and reporting are
//! checked for behaviour only (counts and errors, never timings).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

use crate::common::Server;
use crate::conn::Target;
use crate::{echo, fanout, handshake, pingpong, probe};

const SHORT: Duration = Duration::from_millis(200);

/// An echo server on `/echo` and a broadcast on `/bench/fanout` (every
/// message to every connection, sender included); other paths get 404.
async fn server(with_fanout: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, _) = broadcast::channel::<Message>(1024);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut path = String::new();
                #[expect(
                    clippy::result_large_err,
                    reason = "the signature of tungstenite's handshake callback"
                )]
                let cb = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                    path = req.uri().path().to_owned();
                    if path == "/echo" || (with_fanout && path == "/bench/fanout") {
                        Ok(resp)
                    } else {
                        let mut r = ErrorResponse::new(None);
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        Err(r)
                    }
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                if path == "/echo" {
                    while let Some(Ok(m)) = stream.next().await {
                        if (m.is_binary() || m.is_text()) && sink.send(m).await.is_err() {
                            return;
                        }
                    }
                } else {
                    let mut rx = tx.subscribe();
                    let fwd = tokio::spawn(async move {
                        while let Ok(m) = rx.recv().await {
                            if sink.send(m).await.is_err() {
                                return;
                            }
                        }
                    });
                    while let Some(Ok(m)) = stream.next().await {
                        if m.is_binary() {
                            let _ = tx.send(m);
                        }
                    }
                    fwd.abort();
                }
            });
        }
    });
    addr
}

fn me() -> Server {
    Server {
        pid: Some(std::process::id()),
        core: None,
    }
}

#[tokio::test]
async fn echo_counts_pipelined_messages() {
    let addr = server(false).await;
    let v = echo::run(
        Arc::new(Target::new(addr, "/echo")),
        echo::EchoParams {
            conns: 4,
            window: 8,
            size: 300,
            text: true,
            sources: 1,
            warmup: SHORT,
            duration: SHORT,
            server: me(),
        },
    )
    .await
    .unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["count"].as_u64().unwrap() > 0, "{v}");
    assert!(v["server_cpu_us_per_event"].is_number(), "{v}");
}

#[tokio::test]
async fn pingpong_fills_the_histogram() {
    let addr = server(false).await;
    let v = pingpong::run(
        Arc::new(Target::new(addr, "/echo")),
        pingpong::PingPongParams {
            conns: 2,
            size: 64,
            text: false,
            warmup: SHORT,
            duration: SHORT,
            server: me(),
        },
    )
    .await
    .unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["samples"].as_u64().unwrap() > 0, "{v}");
    assert!(v["p50_us"].as_f64().unwrap() <= v["p99_us"].as_f64().unwrap());
}

#[tokio::test]
async fn handshakes_complete_with_a_close() {
    let addr = server(false).await;
    let v = handshake::run(
        Arc::new(Target::new(addr, "/echo")),
        handshake::HandshakeParams {
            concurrency: 2,
            sources: 1,
            warmup: SHORT,
            duration: SHORT,
            server: me(),
        },
    )
    .await;
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["count"].as_u64().unwrap() > 0, "{v}");
}

fn fanout_params() -> fanout::FanoutParams {
    fanout::FanoutParams {
        subscribers: 20,
        size: 64,
        window: 2,
        sources: 1,
        warmup: SHORT,
        duration: SHORT,
        server: me(),
    }
}

#[tokio::test]
async fn fanout_delivers_to_every_subscriber() {
    let addr = server(true).await;
    let target = Arc::new(Target::new(addr, "/bench/fanout"));
    let v = fanout::run(target, fanout_params()).await.unwrap();
    assert_eq!(v["available"], true, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["count"].as_u64().unwrap() > 0, "{v}");
    assert!(v["samples"].as_u64().unwrap() > 0, "{v}");
}

#[tokio::test]
async fn fanout_without_the_route_is_unavailable() {
    let addr = server(false).await;
    let target = Arc::new(Target::new(addr, "/bench/fanout"));
    let v = fanout::run(target, fanout_params()).await.unwrap();
    assert_eq!(v["available"], false, "{v}");
    assert_eq!(v["status"], 404, "{v}");
}

/// A server on `/whoami` that answers every message with the `Cookie`
/// header of the handshake (empty without one); other paths get 404.
async fn cookie_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut cookie = String::new();
                #[expect(
                    clippy::result_large_err,
                    reason = "the signature of tungstenite's handshake callback"
                )]
                let cb = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                    if req.uri().path() != "/whoami" {
                        let mut r = ErrorResponse::new(None);
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        return Err(r);
                    }
                    cookie = req
                        .headers()
                        .get_all("cookie")
                        .iter()
                        .map(|v| v.to_str().unwrap_or("?"))
                        .collect::<Vec<_>>()
                        .join(" | ");
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() && ws.send(Message::text(cookie.clone())).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn probe_sends_the_cookie_once_per_handshake() {
    let addr = cookie_server().await;
    let with = Target::with_cookie(addr, "/whoami", Some("bench_token=abc.def; x=y"));
    let v = probe::run(&with, "?", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(v["reply"], "bench_token=abc.def; x=y", "{v}");
    let without = Target::new(addr, "/whoami");
    let v = probe::run(&without, "?", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(v["reply"], "", "{v}");
}

#[tokio::test]
async fn probe_of_a_missing_route_fails() {
    let addr = cookie_server().await;
    let e = probe::run(&Target::new(addr, "/nowhere"), "?", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("HTTP 404"), "{e:#}");
}
