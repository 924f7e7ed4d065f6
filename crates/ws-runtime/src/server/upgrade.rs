//! The pipeline's last stage: the route, its own connection limit, the
//! 101, and what the session will start from.

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use ws_core::{Aspects, HandshakeInfo};

use super::Shared;
use super::handoff::{PendingSession, SessionSlot, Upgrading, run_pending};
use crate::auth::HeldRevalidators;
use crate::handshake::{self, Kind};
use crate::pipeline::{
    self, ClientAddr, HandshakeRequest, HandshakeResponse, HeldPermits, PeerAddr, refusal,
};

/// Matches the route, applies its own connection limit, answers 101 and
/// starts the session once hyper hands the connection over.
///
/// `recheck`: whether user layers ran since the request was checked (they
/// may have changed it): then it is checked again.
pub(super) fn upgrade(
    shared: &Arc<Shared>,
    mut req: HandshakeRequest,
    recheck: bool,
) -> HandshakeResponse {
    let checked = if recheck {
        handshake::classify(&req)
    } else {
        // Checked before the pipeline, and unchanged since.
        match req.headers().get(http::header::SEC_WEBSOCKET_KEY) {
            Some(key) => Ok(Kind::Upgrade { key: key.clone() }),
            None => Ok(Kind::Plain),
        }
    };
    let key = match checked {
        Ok(Kind::Upgrade { key }) => key,
        // A user layer changed the request into something else.
        Ok(Kind::Plain) => {
            return refusal(StatusCode::BAD_REQUEST, "not a WebSocket upgrade");
        }
        Err(answer) => return answer.into_response(),
    };
    let path = req.uri().path().to_owned();
    let Some(found) = shared.routes.at(&path) else {
        return refusal(
            StatusCode::NOT_FOUND,
            format!("no WebSocket route for `{path}`"),
        );
    };
    let index = *found.route.value();
    let route = &shared.mounted[index];
    if let Some(limiter) = &route.limiter
        && let Some(refused) = pipeline::admit(limiter, &req, |r| {
            format!(
                "too many connections on route `{}` (max_connections = {} in its [[route]] entry)",
                route.info.path, r.max
            )
        })
    {
        return refused;
    }
    let ext = req.extensions();
    let client = ext
        .get::<ClientAddr>()
        .map(|c| c.0)
        .or_else(|| ext.get::<PeerAddr>().map(|p| p.0))
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let permits = ext
        .get::<HeldPermits>()
        .map(HeldPermits::take)
        .unwrap_or_default();
    let ext = req.extensions_mut();
    // Put there by the auth stage (or by a user layer when no aspect is
    // configured); every configured aspect is present either way.
    let aspects = ext
        .remove::<Aspects>()
        .or_else(|| shared.auth.as_ref().map(|a| a.anonymous()))
        .unwrap_or_default();
    let revalidators = ext
        .remove::<HeldRevalidators>()
        .map(|h| h.take())
        .unwrap_or_default();
    let supported = route.component.subprotocols();
    let protocol = handshake::choose_protocol(&supported, req.headers(), |entry| {
        shared
            .auth
            .as_ref()
            .is_some_and(|a| a.is_credential_protocol(entry))
    })
    .map(str::to_owned);
    let mut info = HandshakeInfo::new(client, path);
    info.query = req.uri().query().map(str::to_owned);
    info.route = found.route.path().to_owned();
    info.params = found.params;
    info.subprotocol = protocol;
    info.headers = std::mem::take(req.headers_mut());
    info.aspects = aspects;
    let response = handshake::switching_protocols(&key, info.subprotocol.as_deref());
    let pending = PendingSession {
        upgrade: hyper::upgrade::on(&mut req),
        // One box for what the session starts from, so the task (alive as
        // long as the connection) carries a pointer, not the values.
        upgrading: Box::new(Upgrading {
            info,
            index,
            permits,
            revalidators,
        }),
    };
    // The connection's own task runs the session once hyper is done with
    // the handshake; a request from elsewhere (no slot) gets a task.
    match req.extensions().get::<SessionSlot>() {
        Some(slot) => slot.put(pending),
        None => {
            shared
                .tracker
                .spawn(run_pending(Arc::clone(shared), pending));
        }
    }
    response
}

/// Headers that only served the upgrade itself; the connection does not
/// keep them.
pub(super) const UPGRADE_ONLY: [http::HeaderName; 5] = [
    http::header::CONNECTION,
    http::header::UPGRADE,
    http::header::SEC_WEBSOCKET_KEY,
    http::header::SEC_WEBSOCKET_VERSION,
    http::header::SEC_WEBSOCKET_EXTENSIONS,
];

/// A copy of `headers` in allocations of its own (hyper's values are slices
/// of its read buffer), without the [`UPGRADE_ONLY`] ones: every open
/// connection keeps this for its whole life. The values share one buffer:
/// an allocation each would cost more in allocator overhead than most
/// values are long.
pub(super) fn detached(headers: &http::HeaderMap) -> http::HeaderMap {
    let kept = |name: &http::HeaderName| !UPGRADE_ONLY.contains(name);
    let (mut count, mut len) = (0, 0);
    for (name, value) in headers {
        if kept(name) {
            count += 1;
            len += value.len();
        }
    }
    let mut values = bytes::BytesMut::with_capacity(len);
    for (name, value) in headers {
        if kept(name) {
            values.extend_from_slice(value.as_bytes());
        }
    }
    let values = values.freeze();
    let mut out = http::HeaderMap::with_capacity(count);
    let mut at = 0;
    for (name, value) in headers {
        if kept(name) {
            let end = at + value.len();
            // Valid already (they were header values): never fails.
            if let Ok(v) = http::HeaderValue::from_maybe_shared(values.slice(at..end)) {
                out.append(name.clone(), v);
            }
            at = end;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_keeps_every_header_but_the_upgrades_own() {
        let mut h = http::HeaderMap::new();
        for name in &UPGRADE_ONLY {
            h.insert(name.clone(), http::HeaderValue::from_static("x"));
        }
        h.insert(http::header::COOKIE, http::HeaderValue::from_static("a=1"));
        h.append("x-app", http::HeaderValue::from_static("one"));
        h.append("x-app", http::HeaderValue::from_static("two"));
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_static("chat"),
        );
        let kept = detached(&h);
        assert_eq!(kept.len(), 4);
        assert_eq!(kept["cookie"], "a=1");
        // Every value its own slice of the shared buffer, in order.
        let app: Vec<&str> = kept
            .get_all("x-app")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(app, ["one", "two"]);
        assert_eq!(kept["sec-websocket-protocol"], "chat");
        assert!(UPGRADE_ONLY.iter().all(|n| !kept.contains_key(n)));
    }
}
