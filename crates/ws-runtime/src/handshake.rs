//! Checking an HTTP request as a WebSocket upgrade (RFC 6455, section 4.2.1)
//! and the plain answers the server gives instead.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use crate::pipeline::{HandshakeResponse, refusal};

/// A request that is not a valid upgrade, with the answer it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Answer {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn header(mut self, name: header::HeaderName, value: &'static str) -> Self {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }

    pub(crate) fn into_response(self) -> HandshakeResponse {
        let mut resp = refusal(self.status, self.message);
        let h = resp.headers_mut();
        for (k, v) in self.headers {
            h.append(k, v);
        }
        resp
    }
}

/// What kind of request this is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A plain HTTP request (no `Upgrade` header).
    Plain,
    /// A valid WebSocket upgrade with this `Sec-WebSocket-Key`.
    Upgrade { key: HeaderValue },
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Classifies a request, or says precisely what is wrong with an upgrade.
pub(crate) fn classify<B>(req: &Request<B>) -> Result<Kind, Answer> {
    let headers = req.headers();
    if req.version() >= Version::HTTP_11 {
        check_host(headers)?;
    }
    if !headers.contains_key(header::UPGRADE) {
        return Ok(Kind::Plain);
    }
    if req.method() != Method::GET {
        return Err(Answer::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "a WebSocket upgrade must use GET, not {}",
                req.method().as_str()
            ),
        )
        .header(header::ALLOW, "GET"));
    }
    if req.version() < Version::HTTP_11 {
        return Err(Answer::new(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs HTTP/1.1",
        ));
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(Answer::new(
            StatusCode::BAD_REQUEST,
            "header `Upgrade` must be `websocket`",
        ));
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(Answer::new(
            StatusCode::BAD_REQUEST,
            "header `Connection` must contain `Upgrade`",
        ));
    }
    match headers.get(header::SEC_WEBSOCKET_VERSION) {
        Some(v) if v.as_bytes() == b"13" => {}
        Some(_) => {
            return Err(Answer::new(
                StatusCode::UPGRADE_REQUIRED,
                "unsupported `Sec-WebSocket-Version`: only 13 is spoken",
            )
            .header(header::SEC_WEBSOCKET_VERSION, "13"));
        }
        None => {
            return Err(Answer::new(
                StatusCode::UPGRADE_REQUIRED,
                "missing header `Sec-WebSocket-Version` (13)",
            )
            .header(header::SEC_WEBSOCKET_VERSION, "13"));
        }
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k,
        (None, _) => {
            return Err(Answer::new(
                StatusCode::BAD_REQUEST,
                "missing header `Sec-WebSocket-Key`",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(Answer::new(
                StatusCode::BAD_REQUEST,
                "header `Sec-WebSocket-Key` given more than once",
            ));
        }
    };
    if !valid_key(key.as_bytes()) {
        return Err(Answer::new(
            StatusCode::BAD_REQUEST,
            "header `Sec-WebSocket-Key` must be 16 bytes in base64",
        ));
    }
    Ok(Kind::Upgrade { key: key.clone() })
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host`, a
/// valid `host[:port]` (a WebSocket URI always has one); else 400.
fn check_host(headers: &HeaderMap) -> Result<(), Answer> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(h), None) => h,
        (None, _) => {
            return Err(Answer::new(
                StatusCode::BAD_REQUEST,
                "missing header `Host` (required in HTTP/1.1, RFC 9112 section 3.2)",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(Answer::new(
                StatusCode::BAD_REQUEST,
                "header `Host` given more than once",
            ));
        }
    };
    let valid = !host.is_empty()
        && host
            .to_str()
            .ok()
            .and_then(|h| h.parse::<http::uri::Authority>().ok())
            .is_some_and(|a| {
                !a.as_str().contains('@')
                    && !a.host().is_empty()
                    && (a.port_u16().is_some() || a.as_str().len() == a.host().len())
            });
    if valid {
        Ok(())
    } else {
        Err(Answer::new(
            StatusCode::BAD_REQUEST,
            "header `Host` must be a host with an optional port",
        ))
    }
}

fn valid_key(key: &[u8]) -> bool {
    use base64::Engine as _;
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|k| k.len() == 16)
}

/// The subprotocols a client offers, in its order.
pub(crate) fn offered_protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// The first of `supported` (server preference) that the client offers,
/// ignoring offered entries for which `skip` holds (credentials carried as
/// a subprotocol entry: never chosen, never echoed back).
pub(crate) fn choose_protocol<'a, S: AsRef<str>>(
    supported: &'a [S],
    headers: &HeaderMap,
    skip: impl Fn(&str) -> bool,
) -> Option<&'a str> {
    supported.iter().map(AsRef::as_ref).find(|s| {
        offered_protocols(headers)
            .filter(|o| !skip(o))
            .any(|o| o == *s)
    })
}

/// The 101 answer.
pub(crate) fn switching_protocols(key: &HeaderValue, protocol: Option<&str>) -> HandshakeResponse {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol.and_then(|p| HeaderValue::from_str(p).ok()) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    resp
}

/// An approximation of the request head's size on the wire, for the size
/// limit when it is below what hyper can enforce itself.
pub(crate) fn head_size<B>(req: &Request<B>) -> usize {
    let line = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + 12;
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line
        + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade() -> http::request::Builder {
        Request::get("/echo")
            .header("host", "localhost:18080")
            .header("upgrade", "websocket")
            .header("connection", "keep-alive, Upgrade")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    }

    #[test]
    fn valid_upgrade() {
        let req = upgrade().body(()).unwrap();
        assert!(matches!(classify(&req), Ok(Kind::Upgrade { .. })));
        let resp = switching_protocols(&HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="), None);
        assert_eq!(
            resp.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn plain_request() {
        let req = Request::get("/")
            .header("host", "example.com")
            .body(())
            .unwrap();
        assert_eq!(classify(&req), Ok(Kind::Plain));
    }

    #[test]
    fn host_is_required_once_and_valid() {
        let mut r = upgrade().body(()).unwrap();
        r.headers_mut().remove("host");
        let e = classify(&r).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("missing header `Host`"), "{}", e.message);
        // HTTP/1.0 has no Host requirement (and no upgrade either).
        let mut old = Request::get("/").body(()).unwrap();
        *old.version_mut() = Version::HTTP_10;
        assert_eq!(classify(&old), Ok(Kind::Plain));
        let mut r = upgrade().body(()).unwrap();
        r.headers_mut()
            .append("host", HeaderValue::from_static("other"));
        assert!(classify(&r).unwrap_err().message.contains("more than once"));
        for bad in ["", "user@host", "a b", ":80", "host:port"] {
            let mut r = upgrade().body(()).unwrap();
            r.headers_mut()
                .insert("host", HeaderValue::from_str(bad).unwrap());
            let e = classify(&r).expect_err(bad);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(e.message.contains("`Host`"), "{bad:?}: {}", e.message);
        }
        for good in ["localhost", "127.0.0.1:80", "[::1]:18080", "example.com"] {
            let mut r = upgrade().body(()).unwrap();
            r.headers_mut()
                .insert("host", HeaderValue::from_str(good).unwrap());
            assert!(matches!(classify(&r), Ok(Kind::Upgrade { .. })), "{good}");
        }
    }

    #[test]
    fn answers() {
        let post = upgrade().method("POST").body(()).unwrap();
        assert_eq!(
            classify(&post).unwrap_err().status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        let v12 = upgrade()
            .header("sec-websocket-version", "12")
            .body(())
            .unwrap();
        let mut r = Request::get("/").body(()).unwrap();
        *r.headers_mut() = v12.headers().clone();
        r.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("12"));
        let e = classify(&r).unwrap_err();
        assert_eq!(e.status, StatusCode::UPGRADE_REQUIRED);
        assert!(
            e.headers
                .iter()
                .any(|(k, v)| k == header::SEC_WEBSOCKET_VERSION && v == "13")
        );
        let mut r = upgrade().body(()).unwrap();
        r.headers_mut().remove("sec-websocket-key");
        assert_eq!(classify(&r).unwrap_err().status, StatusCode::BAD_REQUEST);
        let mut r = upgrade().body(()).unwrap();
        r.headers_mut()
            .insert("sec-websocket-key", HeaderValue::from_static("short"));
        assert!(classify(&r).unwrap_err().message.contains("16 bytes"));
        let mut r = upgrade().body(()).unwrap();
        r.headers_mut()
            .insert("connection", HeaderValue::from_static("close"));
        assert!(classify(&r).unwrap_err().message.contains("Connection"));
    }

    #[test]
    fn protocol_choice_uses_server_preference() {
        let mut h = HeaderMap::new();
        h.append("sec-websocket-protocol", HeaderValue::from_static("a, b"));
        h.append("sec-websocket-protocol", HeaderValue::from_static("c"));
        let none = |_: &str| false;
        assert_eq!(choose_protocol(&["c", "b"], &h, none), Some("c"));
        assert_eq!(choose_protocol(&["x"], &h, none), None);
        assert_eq!(choose_protocol::<&str>(&[], &h, none), None);
    }

    #[test]
    fn credential_entries_are_never_chosen() {
        let mut h = HeaderMap::new();
        h.append(
            "sec-websocket-protocol",
            HeaderValue::from_static("bearer.abc, chat"),
        );
        let skip = |p: &str| p.starts_with("bearer.");
        assert_eq!(
            choose_protocol(&["bearer.abc", "chat"], &h, skip),
            Some("chat")
        );
        assert_eq!(choose_protocol(&["bearer.abc"], &h, skip), None);
    }
}
