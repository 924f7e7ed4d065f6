//! Entry points for the fuzz targets in `fuzz/` (`cargo xtask fuzz`): the
//! parsers of untrusted input that are private to this crate, each reached
//! through the smallest wrapper that lets a target call it.
//!
//! **Not for users**: hidden from the docs, no stability promise; the server
//! itself never calls anything here.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue, Request};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use ws_core::Message;
use ws_core::hub::Target;

use crate::config::{ConfigError, ForwardedHeader};

/// [`handshake::classify`](crate::handshake): `Ok(None)` for a plain
/// request, `Ok(Some(key))` for a valid upgrade, else the status and the
/// message of the answer.
///
/// # Errors
/// The refusal's status code and message.
pub fn classify<B>(req: &Request<B>) -> Result<Option<HeaderValue>, (u16, String)> {
    match crate::handshake::classify(req) {
        Ok(crate::handshake::Kind::Plain) => Ok(None),
        Ok(crate::handshake::Kind::Upgrade { key }) => Ok(Some(key)),
        Err(a) => Err((a.status.as_u16(), a.message)),
    }
}

/// The subprotocols the client offers, in its order.
pub fn offered_protocols(headers: &HeaderMap) -> Vec<&str> {
    crate::handshake::offered_protocols(headers).collect()
}

/// The subprotocol chosen among `supported`, never an offered entry that
/// starts with `credential_prefix` (a credential carried as a subprotocol).
pub fn choose_protocol<'a>(
    supported: &'a [String],
    headers: &HeaderMap,
    credential_prefix: Option<&str>,
) -> Option<&'a str> {
    crate::handshake::choose_protocol(supported, headers, |p| {
        credential_prefix.is_some_and(|c| p.starts_with(c))
    })
}

/// The request head's approximate size, as the size limit counts it.
pub fn head_size<B>(req: &Request<B>) -> usize {
    crate::handshake::head_size(req)
}

/// The client address stage (`trusted_proxies`, `forwarded_header`).
#[derive(Debug)]
pub struct ClientAddrResolver(crate::client_addr::ClientAddrResolver);

impl ClientAddrResolver {
    /// Parses `trusted_proxies`; reads `Forwarded` when `forwarded`, else
    /// `X-Forwarded-For`.
    ///
    /// # Errors
    /// A bad `trusted_proxies` entry.
    pub fn new(trusted_proxies: &[String], forwarded: bool) -> Result<Self, ConfigError> {
        Ok(Self(crate::client_addr::ClientAddrResolver::new(
            crate::client_addr::TrustedProxies::parse(trusted_proxies)?,
            if forwarded {
                ForwardedHeader::Forwarded
            } else {
                ForwardedHeader::XForwardedFor
            },
            false,
        )))
    }

    /// The client's address for a request from `peer`.
    ///
    /// # Errors
    /// The refusal message (a trusted proxy sent an entry that is not an
    /// address).
    pub fn resolve(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<SocketAddr, String> {
        self.0.resolve(peer, headers)
    }
}

/// The origin check (`allowed_origins`, `require_origin`).
#[derive(Debug)]
pub struct OriginPolicy(crate::origin::OriginPolicy);

impl OriginPolicy {
    /// Parses `allowed_origins`.
    ///
    /// # Errors
    /// A bad entry.
    pub fn new(allowed_origins: &[String], require_origin: bool) -> Result<Self, ConfigError> {
        crate::origin::OriginPolicy::parse(allowed_origins, require_origin).map(Self)
    }

    /// Whether every request passes without a look at `Origin`.
    pub fn allows_all(&self) -> bool {
        self.0.allows_all()
    }

    /// Checks the request's `Origin`.
    ///
    /// # Errors
    /// The refusal message.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        self.0.check(headers).map_err(|r| r.0)
    }
}

/// The admin API's `POST /publish` body, checked.
///
/// # Errors
/// The 400 answer's message.
pub fn parse_publication(body: &[u8]) -> Result<(Target, Message), String> {
    crate::admin::parse_publication(body)
}

/// tungstenite's settings for a route with these size limits, as the server
/// builds them, with the default `max_frames_per_message`.
pub fn ws_config(max_message: usize, max_frame: usize) -> WebSocketConfig {
    crate::policy::ws_config(
        max_message,
        max_frame,
        crate::ServerConfig::default()
            .websocket
            .max_frames_per_message,
    )
}

/// The socket adapter sessions read and write through, around any stream.
#[derive(Debug)]
pub struct ReadAhead<S>(crate::read_ahead::ReadAhead<S>);

impl<S> ReadAhead<S> {
    /// As the server builds it: `chunk` is `read_buffer_size`, `out_limit`
    /// is `write_buffer_size`, `prefix` what hyper read past the head.
    pub fn new(inner: S, chunk: usize, out_limit: usize, prefix: &[u8]) -> Self {
        Self(crate::read_ahead::ReadAhead::new(
            inner, chunk, out_limit, prefix,
        ))
    }

    /// See `ReadAhead::set_quiet`: while quiet, an empty socket makes
    /// tungstenite give its read buffer back.
    pub fn set_quiet(&mut self, quiet: bool) {
        self.0.set_quiet(quiet);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
