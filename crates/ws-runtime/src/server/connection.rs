//! One accepted connection on one task: TLS within the handshake deadline,
//! the HTTP request through hyper, then the session an upgrade left.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::Shared;
use super::checks::check_request;
use super::handoff::{PendingSession, SessionSlot, open_session, upgraded};
use super::stages::Pipeline;
use crate::io::Io;
use crate::pipeline::{ClientAddr, ClientCertificates, HeldPermits, PeerAddr};
use crate::session;

/// One accepted connection, on one task: the handshake, then (for an
/// accepted upgrade) the session.
///
/// Not an `async fn`: its arguments would stay in the task for the
/// connection's whole life. The handshake gets them, boxed and gone once
/// done (TLS, hyper and pipeline state must not stay in the task either).
pub(super) fn handle_tcp(
    shared: Arc<Shared>,
    pipeline: Arc<Pipeline>,
    stream: TcpStream,
    peer: SocketAddr,
) -> impl Future<Output = ()> + Send {
    let handshake = Box::pin({
        let shared = Arc::clone(&shared);
        async move {
            let pending = handshake(shared, pipeline, stream, peer).await?;
            upgraded(pending).await
        }
    });
    async move {
        // Nothing of the handshake's outcome but the session's box is kept
        // while the session runs.
        let session = handshake
            .await
            .and_then(|(upgraded, upgrading)| open_session(&shared, upgraded, upgrading));
        if let Some(session) = session {
            session::run(session).await;
        }
    }
}

/// TLS (within the handshake deadline), then HTTP; the session an accepted
/// upgrade left to run.
async fn handshake(
    shared: Arc<Shared>,
    pipeline: Arc<Pipeline>,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<PendingSession> {
    let deadline = Instant::now() + shared.config.handshake_timeout;
    let _ = stream.set_nodelay(true);
    let (io, certificates) = match &shared.tls {
        None => (Io::Plain(stream), None),
        Some(tls) => match timeout_at(deadline, tls.acceptor().accept(stream)).await {
            Ok(Ok(stream)) => {
                let certificates = stream.get_ref().1.peer_certificates().map(|chain| {
                    ClientCertificates(
                        chain
                            .iter()
                            .map(|c| Bytes::copy_from_slice(c.as_ref()))
                            .collect(),
                    )
                });
                (Io::Tls(Box::new(stream)), certificates)
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return None;
            }
        },
    };
    serve_http(shared, pipeline, io, peer, certificates, deadline).await
}

/// Serves the HTTP request on one connection: an upgrade goes through the
/// pipeline and leaves its session to run, anything else gets its answer,
/// and a client too slow to send its request head by `deadline` is dropped.
async fn serve_http(
    shared: Arc<Shared>,
    pipeline: Arc<Pipeline>,
    io: Io,
    peer: SocketAddr,
    certificates: Option<ClientCertificates>,
    deadline: Instant,
) -> Option<PendingSession> {
    let svc_shared = Arc::clone(&shared);
    let slot = SessionSlot::default();
    let svc_slot = slot.clone();
    let service = hyper::service::service_fn(move |req| {
        handle_request(
            Arc::clone(&svc_shared),
            Arc::clone(&pipeline),
            req,
            peer,
            certificates.clone(),
            svc_slot.clone(),
        )
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(shared.config.handshake_timeout)
        // Keep-alive stays on: turning it off makes hyper add `close` to the
        // 101's `Connection` header. The deadline below bounds the connection.
        .keep_alive(true)
        .max_buf_size(shared.config.max_request_size.max(8192));
    let conn = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    match timeout_at(deadline, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "handshake failed"),
        Err(_) => tracing::debug!(%peer, "handshake timed out"),
    }
    // An accepted upgrade left its session here.
    slot.take()
}

/// Answers one request: plain requests and malformed upgrades here, valid
/// upgrades through the pipeline.
async fn handle_request(
    shared: Arc<Shared>,
    pipeline: Arc<Pipeline>,
    req: Request<Incoming>,
    peer: SocketAddr,
    certificates: Option<ClientCertificates>,
    slot: SessionSlot,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // An upgrade has no body; the extensions (hyper's upgrade handle among
    // them) stay with the request.
    let (parts, _body) = req.into_parts();
    let mut req = Request::from_parts(parts, ());
    let resp = match check_request(&shared, &req) {
        Err(answer) => answer.into_response(),
        Ok(()) => {
            let ext = req.extensions_mut();
            ext.insert(PeerAddr(peer));
            ext.insert(HeldPermits::default());
            ext.insert(slot);
            if let Some(c) = certificates {
                ext.insert(c);
            }
            pipeline.run(&shared, req).await
        }
    };
    let status = resp.status();
    if status != StatusCode::SWITCHING_PROTOCOLS && status != StatusCode::OK {
        let client = resp.extensions().get::<ClientAddr>().map_or(peer, |c| c.0);
        tracing::debug!(
            %peer,
            %client,
            status = status.as_u16(),
            reason = %String::from_utf8_lossy(resp.body()).trim_end(),
            "handshake refused"
        );
    }
    Ok(resp.map(Full::new))
}
