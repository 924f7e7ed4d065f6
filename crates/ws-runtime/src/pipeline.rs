//! The handshake pipeline: tower layers between a valid upgrade request and
//! the `101 Switching Protocols`.
//!
//! A request reaches the pipeline once its head is complete, within the size
//! limit, and a well-formed WebSocket upgrade (anything else was answered
//! already: 400, 405, 426, 431, the health check). Then, outermost first:
//!
//! 1. **client address**: the TCP peer, or the client behind a trusted proxy
//!    ([`ClientAddr`] is inserted into the request's extensions; 400 when a
//!    trusted proxy's header is garbage);
//! 2. **origin**: `allowed_origins` of the route (or the server) → 403;
//! 3. **limiter**: `max_connections`, `max_connections_per_address`,
//!    `max_connections_per_address_per_second` → 429 with `Retry-After`;
//! 4. **authentication** (only when the server has an
//!    [`Authenticate`](crate::Authenticate) with aspects, and only for a
//!    path that matches a route): every aspect is resolved; a failing
//!    source configured `on_error = "reject"` → 503; the route's `require`
//!    → 401, `require_groups` → 403. The resolved [`ws_core::Aspects`] go
//!    into the request's extensions, where later layers can read them;
//! 5. **the user's layers**, added with
//!    [`ServerBuilder::layer`](crate::ServerBuilder::layer), first added
//!    outermost;
//! 6. **route**: no route → 404; the route's own `max_connections` → 429;
//!    subprotocol negotiation, then the 101 and the session.
//!
//! The built-in stages (1–4 and 6) are plain code run in order: no
//! type-erased service, no boxed future, no clone per stage and handshake.
//! The user's layers are [`tower::Layer`]s over a [`HandshakeService`] that
//! ends in the route; without any, no service is involved at all. A request
//! is an [`http::Request<()>`](HandshakeRequest) (the body of an upgrade is
//! empty), the answer an [`http::Response<Bytes>`](HandshakeResponse). A
//! stage refuses by answering itself, or passes the request on. Refusals are
//! plain text naming the reason and the configuration key, and close the
//! connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt as _};
use ws_core::BoxError;
use ws_ratelimit::{ConnectionLimiter, ConnectionPermit};

use crate::client_addr::ClientAddrResolver;

/// A WebSocket upgrade request on its way through the handshake pipeline.
///
/// The headers are the client's; the extensions carry what earlier stages
/// learnt: [`PeerAddr`], [`ClientAddr`], with mutual TLS
/// [`ClientCertificates`], and with `[[aspect]]`s configured the resolved
/// [`ws_core::Aspects`]. Whatever `Aspects` the request carries when it
/// reaches the upgrade become the connection's (so a layer of one's own can
/// authenticate when no aspect is configured).
pub type HandshakeRequest = Request<()>;

/// The answer to a handshake: the `101` from the end of the pipeline, or a
/// refusal made by a stage (see [`refusal`]).
pub type HandshakeResponse = Response<Bytes>;

/// A stage of the pipeline with everything after it, type-erased.
///
/// Stages never fail: a refusal is a response.
pub type HandshakeService = BoxCloneSyncService<HandshakeRequest, HandshakeResponse, Infallible>;

/// Extension: the TCP peer's address (the proxy's, behind a proxy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// Extension: the client's address after trusted-proxy resolution; what the
/// limits count and what [`Connection::client_addr`](ws_core::Connection::client_addr)
/// reports. The port is 0 when a proxy's header gave none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub SocketAddr);

/// Extension: the certificate chain a client presented (mutual TLS, see
/// `tls.client_ca`), DER-encoded, leaf first. Present only when the client
/// sent one and it was verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificates(pub Arc<[Bytes]>);

/// A plain-text answer that ends the handshake: `message` and a newline as
/// the body, `Connection: close`. What the built-in stages refuse with.
///
/// ```
/// use http::StatusCode;
///
/// let resp = ws_runtime::refusal(StatusCode::UNAUTHORIZED, "missing header `X-Api-Key`");
/// assert_eq!(resp.status(), 401);
/// assert_eq!(resp.body().as_ref(), b"missing header `X-Api-Key`\n");
/// ```
pub fn refusal(status: StatusCode, message: impl Into<String>) -> HandshakeResponse {
    let mut body = message.into();
    body.push('\n');
    let mut resp = Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // One request per connection outside of upgrades: nothing lingers.
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The rest of the pipeline, as handed to a [`handshake_fn`] stage.
#[derive(Clone)]
pub struct Next {
    inner: HandshakeService,
}

impl std::fmt::Debug for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next").finish_non_exhaustive()
    }
}

impl Next {
    /// Passes the request on and returns the answer of the stages after.
    pub async fn run(self, req: HandshakeRequest) -> HandshakeResponse {
        match self.inner.oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }
}

/// A pipeline stage from an async function of the request and the rest of
/// the pipeline; give it to [`ServerBuilder::layer`](crate::ServerBuilder::layer).
///
/// The function answers itself (a refusal) or calls [`Next::run`]. It runs
/// after the built-in guards, so [`ClientAddr`] is known and the limits are
/// already counted.
///
/// ```
/// use http::StatusCode;
/// use ws_runtime::{ClientAddr, HandshakeRequest, Next, Server, handshake_fn, refusal};
///
/// let server = Server::builder()
///     .component(ws_core::component_fn("/echo", |conn: ws_core::Connection, msg| async move {
///         conn.send(msg)?;
///         Ok(())
///     }))
///     .layer(handshake_fn(|req: HandshakeRequest, next: Next| async move {
///         if req.headers().get("x-api-key").is_none_or(|k| k != "secret") {
///             let client = req.extensions().get::<ClientAddr>().map(|c| c.0);
///             tracing::info!(?client, "refused: no API key");
///             return refusal(StatusCode::UNAUTHORIZED, "missing or wrong header `X-Api-Key`");
///         }
///         next.run(req).await
///     }))
///     .build()?;
/// # drop(server);
/// # Ok::<(), ws_runtime::BuildError>(())
/// ```
pub fn handshake_fn<F, Fut>(f: F) -> HandshakeFn<F>
where
    F: Fn(HandshakeRequest, Next) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = HandshakeResponse> + Send + 'static,
{
    HandshakeFn { f }
}

/// The layer made by [`handshake_fn`].
#[derive(Clone)]
pub struct HandshakeFn<F> {
    f: F,
}

impl<F> std::fmt::Debug for HandshakeFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeFn").finish_non_exhaustive()
    }
}

impl<F, Fut> Layer<HandshakeService> for HandshakeFn<F>
where
    F: Fn(HandshakeRequest, Next) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = HandshakeResponse> + Send + 'static,
{
    type Service = HandshakeFnService<F>;

    fn layer(&self, inner: HandshakeService) -> Self::Service {
        HandshakeFnService {
            f: self.f.clone(),
            inner,
        }
    }
}

/// The service made by [`HandshakeFn`].
#[derive(Clone)]
pub struct HandshakeFnService<F> {
    f: F,
    inner: HandshakeService,
}

impl<F> std::fmt::Debug for HandshakeFnService<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeFnService").finish_non_exhaustive()
    }
}

impl<F, Fut> Service<HandshakeRequest> for HandshakeFnService<F>
where
    F: Fn(HandshakeRequest, Next) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = HandshakeResponse> + Send + 'static,
{
    type Response = HandshakeResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HandshakeResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The rest of the pipeline is driven to readiness by `Next::run`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HandshakeRequest) -> Self::Future {
        let next = Next {
            inner: self.inner.clone(),
        };
        let fut = (self.f)(req, next);
        Box::pin(async move { Ok(fut.await) })
    }
}

/// A user layer, type-erased until the pipeline is assembled.
pub(crate) type BoxedLayer = Box<dyn FnOnce(HandshakeService) -> HandshakeService + Send>;

/// Erases a user's layer; its service's errors are answered with 500.
pub(crate) fn boxed_layer<L>(layer: L) -> BoxedLayer
where
    L: Layer<HandshakeService> + Send + 'static,
    L::Service:
        Service<HandshakeRequest, Response = HandshakeResponse> + Clone + Send + Sync + 'static,
    <L::Service as Service<HandshakeRequest>>::Error: Into<BoxError>,
    <L::Service as Service<HandshakeRequest>>::Future: Send + 'static,
{
    Box::new(move |inner| {
        HandshakeService::new(Recover {
            inner: layer.layer(inner),
        })
    })
}

/// Turns a user service's errors (from `poll_ready` or `call`) into 500s.
#[derive(Clone)]
struct Recover<S> {
    inner: S,
}

impl<S> Service<HandshakeRequest> for Recover<S>
where
    S: Service<HandshakeRequest, Response = HandshakeResponse> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = HandshakeResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HandshakeResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness of the user's service is awaited per call, on a clone,
        // so that its failure can be answered like any other.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HandshakeRequest) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            Ok(inner.oneshot(req).await.unwrap_or_else(|e| {
                let e: BoxError = e.into();
                tracing::error!(error = %e, "a handshake layer failed");
                refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }))
        })
    }
}

/// Permits taken by the limiter stages, to be held by the session.
///
/// In the request's extensions (which need `Clone`): the upgrade takes them
/// out and moves them into the session's task; on any other answer they are
/// dropped with the request, releasing the places at once.
#[derive(Clone, Default)]
pub(crate) struct HeldPermits(Arc<Mutex<Vec<ConnectionPermit>>>);

impl HeldPermits {
    fn push(&self, permit: ConnectionPermit) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(permit);
    }

    /// Takes every permit held so far.
    pub(crate) fn take(&self) -> Vec<ConnectionPermit> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Stages 1–3, which never await: the client's address (put into the
/// request), the origin check (`policy_for` picks the policy by request
/// path: the route's own or the server's; `None` when no policy restricts
/// anything), and the server-wide connection limits.
pub(crate) fn guard<P>(
    req: &mut HandshakeRequest,
    resolver: &ClientAddrResolver,
    policy_for: Option<&P>,
    limiter: &ConnectionLimiter,
) -> Guarded
where
    P: Fn(&str) -> Option<Arc<crate::origin::OriginPolicy>>,
{
    let Some(PeerAddr(peer)) = req.extensions().get::<PeerAddr>().copied() else {
        let resp = refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        return Guarded::Refused(None, resp);
    };
    let client = match resolver.resolve(peer, req.headers()) {
        Ok(client) => client,
        Err(why) => return Guarded::Refused(None, refusal(StatusCode::BAD_REQUEST, why)),
    };
    req.extensions_mut().insert(ClientAddr(client));
    if let Some(policy) = policy_for.and_then(|p| p(req.uri().path()))
        && let Err(refused) = policy.check(req.headers())
    {
        return Guarded::Refused(Some(client), refusal(StatusCode::FORBIDDEN, refused.0));
    }
    match admit(limiter, req, ToString::to_string) {
        None => Guarded::Pass(client),
        Some(resp) => Guarded::Refused(Some(client), resp),
    }
}

/// What [`guard`] decided.
pub(crate) enum Guarded {
    /// Go on; the client's address.
    Pass(SocketAddr),
    /// The refusal, with the client's address once it was known.
    Refused(Option<SocketAddr>, HandshakeResponse),
}

/// The 429 for a limiter's refusal.
pub(crate) fn too_many(retry_after_secs: u64, message: String) -> HandshakeResponse {
    let mut resp = refusal(StatusCode::TOO_MANY_REQUESTS, message);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    resp
}

/// Admits the request on `limiter` and keeps the permit with the request;
/// `Some` is the refusal to answer with.
pub(crate) fn admit(
    limiter: &ConnectionLimiter,
    req: &HandshakeRequest,
    describe: impl FnOnce(&ws_ratelimit::Refusal) -> String,
) -> Option<HandshakeResponse> {
    let ext = req.extensions();
    let client = ext
        .get::<ClientAddr>()
        .map(|c| c.0)
        .or_else(|| ext.get::<PeerAddr>().map(|p| p.0));
    // Without a slot the permit could not outlive this call and the place
    // would not be held: refuse rather than over-admit.
    let (Some(client), Some(held)) = (client, ext.get::<HeldPermits>()) else {
        return Some(refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal error"));
    };
    match limiter.try_acquire(client.ip(), Instant::now()) {
        Ok(permit) => {
            held.push(permit);
            None
        }
        Err(refused) => Some(too_many(refused.retry_after_secs(), describe(&refused))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_service() -> HandshakeService {
        HandshakeService::new(tower::service_fn(|_req: HandshakeRequest| async {
            Ok::<_, Infallible>(Response::new(Bytes::from_static(b"inner")))
        }))
    }

    #[tokio::test]
    async fn handshake_fn_can_refuse_or_pass() {
        let layer = handshake_fn(|req: HandshakeRequest, next: Next| async move {
            if req.uri().path() == "/no" {
                refusal(StatusCode::FORBIDDEN, "no")
            } else {
                next.run(req).await
            }
        });
        let svc = HandshakeService::new(layer.layer(ok_service()));
        let resp = svc
            .clone()
            .oneshot(Request::get("/no").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(resp.headers()[header::CONNECTION], "close");
        let resp = svc
            .oneshot(Request::get("/yes").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.body().as_ref(), b"inner");
    }

    #[tokio::test]
    async fn failing_user_layers_answer_500() {
        #[derive(Clone)]
        struct Fails;
        impl Service<HandshakeRequest> for Fails {
            type Response = HandshakeResponse;
            type Error = std::io::Error;
            type Future = std::future::Ready<Result<HandshakeResponse, std::io::Error>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: HandshakeRequest) -> Self::Future {
                std::future::ready(Err(std::io::Error::other("boom")))
            }
        }
        let svc = boxed_layer(tower::layer::layer_fn(|_inner| Fails))(ok_service());
        let resp = svc
            .oneshot(Request::get("/").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn refused_admission_holds_nothing() {
        let limiter = ConnectionLimiter::new(ws_ratelimit::ConnectionLimits {
            max_connections: 1,
            ..ws_ratelimit::ConnectionLimits::unlimited()
        })
        .unwrap();
        let resolver = ClientAddrResolver::new(
            crate::client_addr::TrustedProxies::parse(&[]).unwrap(),
            crate::config::ForwardedHeader::XForwardedFor,
            false,
        );
        type PolicyFor = fn(&str) -> Option<Arc<crate::origin::OriginPolicy>>;
        let held = HeldPermits::default();
        let mut req = Request::get("/").body(()).unwrap();
        req.extensions_mut()
            .insert(PeerAddr("127.0.0.1:1".parse().unwrap()));
        req.extensions_mut().insert(held.clone());
        assert!(matches!(
            guard(&mut req, &resolver, None::<&PolicyFor>, &limiter),
            Guarded::Pass(_)
        ));
        assert_eq!(limiter.active(), 1, "the permit is held");
        let mut req = Request::get("/").body(()).unwrap();
        req.extensions_mut()
            .insert(PeerAddr("127.0.0.2:1".parse().unwrap()));
        req.extensions_mut().insert(HeldPermits::default());
        let Guarded::Refused(client, resp) =
            guard(&mut req, &resolver, None::<&PolicyFor>, &limiter)
        else {
            panic!("over the limit, yet admitted");
        };
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            client,
            Some("127.0.0.2:1".parse().unwrap()),
            "refusals carry the client's address for the log"
        );
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert!(
            std::str::from_utf8(resp.body())
                .unwrap()
                .contains("max_connections")
        );
        drop(held.take());
        assert_eq!(limiter.active(), 0);
    }
}
