//! The admin listener: lets the web application push into the socket server.
//!
//! `POST /publish` with `Authorization: Bearer <key>` and a JSON body:
//!
//! ```json
//! {"channel": "chat:lobby", "data": "hello"}
//! {"user": "42", "data": {"type": "notice", "text": "hi"}}
//! {"connection": "17", "data": "only you"}
//! ```
//!
//! `data` is sent as a text message: a JSON string as is, anything else as
//! its JSON text. Answers: 202 `{"delivered": N}` (local deliveries; with a
//! broker, other servers deliver too), 400/401/404/405/413/503 with
//! `{"error": "…"}` naming the problem. It listens on its own address
//! (default `127.0.0.1:18081`), never on the public one.
//!
//! 202 means the publication is safe: it is sent with
//! [`HubBackend::publish_confirmed`](ws_core::hub::HubBackend::publish_confirmed),
//! so with a broker the answer waits until the broker acknowledged it
//! (Redis answered the `PUBLISH`, at most the broker's `command_timeout`);
//! otherwise 503, and the caller may publish again.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use ws_core::hub::{Target, validate_channel};
use ws_core::{ConnectionId, Hub, HubError, Message};

use crate::accept;

/// Settings of the admin listener.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminConfig {
    /// The bearer key callers must present (`[admin] key`, or `WS_ADMIN_KEY`).
    pub key: String,
    /// Largest request body accepted, in bytes (`[admin] max_body_in_kb` × 1024); above: 413.
    pub max_body: usize,
}

impl AdminConfig {
    /// Settings with `key` and a 1 MiB body limit.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            max_body: 1 << 20,
        }
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    let mut resp = json_response(status, &serde_json::json!({ "error": message.into() }));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

/// Compares in time independent of where the first difference is.
fn same_key(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn authorized(req: &Request<Incoming>, key: &str) -> bool {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .is_some_and(|k| same_key(k.trim().as_bytes(), key.as_bytes()))
}

/// A publication request, checked.
pub(crate) fn parse_publication(body: &[u8]) -> Result<(Target, Message), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "body must be a JSON object".to_owned())?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "channel" | "user" | "connection" | "data") {
            return Err(format!(
                "unknown field `{k}`; expected `channel`, `user` or `connection`, and `data`"
            ));
        }
    }
    let targets: Vec<&str> = ["channel", "user", "connection"]
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    let target = match targets.as_slice() {
        [one] => *one,
        [] => return Err("one of `channel`, `user` or `connection` is required".to_owned()),
        _ => {
            return Err(format!(
                "give only one of `channel`, `user` or `connection`, not {}",
                targets.join(" and ")
            ));
        }
    };
    let text_field = |k: &str| -> Result<String, String> {
        match &obj[k] {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            _ => Err(format!("`{k}` must be a string")),
        }
    };
    let target = match target {
        "channel" => {
            let ch = text_field("channel")?;
            validate_channel(&ch).map_err(|e| format!("`channel`: {e}"))?;
            Target::Channel(ch)
        }
        "user" => Target::User(text_field("user")?),
        _ => {
            let id = text_field("connection")?;
            let n: u64 = id
                .parse()
                .map_err(|_| format!("`connection` must be a connection id, not `{id}`"))?;
            Target::Connection(ConnectionId::from_raw(n))
        }
    };
    let data = obj
        .get("data")
        .ok_or_else(|| "`data` is required".to_owned())?;
    let msg = match data {
        serde_json::Value::String(s) => Message::text(s.clone()),
        other => Message::text(other.to_string()),
    };
    Ok((target, msg))
}

async fn handle(
    req: Request<Incoming>,
    hub: Hub,
    config: Arc<AdminConfig>,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/publish" {
        return error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint `{}`; use POST /publish", req.uri().path()),
        );
    }
    if req.method() != Method::POST {
        let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return r;
    }
    if !authorized(&req, &config.key) {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong `Authorization: Bearer` key",
        );
    }
    let body = match Limited::new(req.into_body(), config.max_body)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body exceeds {} bytes", config.max_body),
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("cannot read body: {e}")),
    };
    let (target, msg) = match parse_publication(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match ws_core::__runtime::backend(&hub)
        .publish_confirmed(&target, msg)
        .await
    {
        Ok(n) => json_response(StatusCode::ACCEPTED, &serde_json::json!({ "delivered": n })),
        Err(HubError::Unavailable(why)) => {
            tracing::warn!(reason = %why, "publication could not be forwarded to other servers");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("broker unavailable: {why}"),
            )
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Serves the admin API on `listener` until `shutdown` completes.
///
/// # Errors
/// Never at present; the signature leaves room for listener errors.
pub async fn serve_admin(
    listener: TcpListener,
    hub: Hub,
    config: AdminConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    let mut failures = accept::Failures::new("admin");
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => {
                    failures.accepted();
                    x
                }
                Err(e) => {
                    if failures.failed(&e) == accept::Next::BackOff {
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(accept::BACKOFF) => {}
                        }
                    }
                    continue;
                }
            },
        };
        let hub = hub.clone();
        let config = Arc::clone(&config);
        tracker.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let hub = hub.clone();
                let config = Arc::clone(&config);
                async move { Ok::<_, Infallible>(handle(req, hub, config).await) }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let conn = http.serve_connection(TokioIo::new(stream), svc);
            match tokio::time::timeout(Duration::from_secs(60), conn).await {
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "admin connection failed"),
                Err(_) => tracing::debug!(%peer, "admin connection timed out"),
                Ok(Ok(())) => {}
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publications_are_checked_with_named_fields() {
        let (t, m) = parse_publication(br#"{"channel":"a","data":"x"}"#).unwrap();
        assert_eq!(t, Target::Channel("a".into()));
        assert_eq!(m, Message::text("x"));
        let (_, m) = parse_publication(br#"{"user":"7","data":{"k":1}}"#).unwrap();
        assert_eq!(m, Message::text(r#"{"k":1}"#));
        let (t, _) = parse_publication(br#"{"connection":"12","data":"x"}"#).unwrap();
        assert_eq!(t, Target::Connection(ConnectionId::from_raw(12)));
        for (body, needle) in [
            (&br#"{"data":"x"}"#[..], "required"),
            (br#"{"channel":"a","user":"b","data":"x"}"#, "only one"),
            (br#"{"channel":"a"}"#, "`data`"),
            (br#"{"channel":"a","data":"x","extra":1}"#, "`extra`"),
            (br#"{"channel":"","data":"x"}"#, "`channel`"),
            (br#"{"connection":"abc","data":"x"}"#, "connection id"),
            (b"not json", "valid JSON"),
            (br#"[1]"#, "object"),
        ] {
            let e = parse_publication(body).unwrap_err();
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        }
    }

    #[test]
    fn keys_compare_whole() {
        assert!(same_key(b"secret", b"secret"));
        assert!(!same_key(b"secre", b"secret"));
        assert!(!same_key(b"secreT", b"secret"));
    }
}
