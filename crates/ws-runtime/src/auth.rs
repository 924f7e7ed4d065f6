//! Authentication: the pipeline stage that resolves every configured aspect
//! of a handshake (through the [`Authenticate`] seam, `ws-auth` in the
//! stock server), the per-route requirements (401/403), and the
//! revalidation of a connection's sessions while it is open.
//!
//! Key design decisions:
//!
//! - **No aspect configured, no stage.** The server then has no [`Auth`] and
//!   the pipeline skips authentication: not even a lookup per handshake.
//! - **An unknown path asks no session store.** The stage looks the route
//!   up first; a request for no route goes on and gets its 404 at the end of
//!   the pipeline, without a Redis, SQL or HTTP look-up.
//! - **Results travel in the request's extensions.** The resolved
//!   [`Aspects`] are inserted as they are (a user layer after the stage can
//!   read them; one may also insert its own when no aspect is configured),
//!   the [`Revalidate`]s in a crate-private holder; the upgrade moves both
//!   into the connection.
//! - **Sessions that end at a known time cost a timer, not a task.** When
//!   every session of a connection is checked locally (a JWT ends at its
//!   `exp`), the session's own timer (the one it keeps for keepalive) is
//!   set to the next end and the loop runs that check itself: no task, no
//!   channel, no second timer.
//! - **Otherwise revalidation is one task per connection that has something
//!   to re-check**, tied to the session (aborted when it ends). It only sends
//!   events; the session's loop applies them between messages, so
//!   `on_aspect_change` never runs concurrently with `on_message`, before
//!   `on_open` or after `on_close`. A connection without a revalidator (every
//!   anonymous one) has no task and its loop no extra branch to poll.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use http::StatusCode;
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use ws_core::{Aspects, CloseCode, CloseFrame, UserAspect};

use crate::authenticate::{AspectInfo, Authenticate, Revalidate, SessionEnd};
use crate::config::OnSessionEnd;
use crate::pipeline::{HandshakeRequest, HandshakeResponse, refusal};

/// The close reason when a session ends under `on_end = "close"`.
pub(crate) const SESSION_ENDED: &str = "session ended";
/// The close reason when a session cannot be re-checked under
/// `on_error = "reject"`.
pub(crate) const SESSION_UNAVAILABLE: &str = "session store unavailable";

/// Every configured aspect, ready to resolve: built once per server.
pub(crate) struct Auth {
    authenticator: Arc<dyn Authenticate>,
    aspects: Vec<AspectInfo>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("aspects", &self.aspects)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// The stage for `authenticator`; `None` when it has no aspect.
    pub(crate) fn new(authenticator: Arc<dyn Authenticate>) -> Option<Arc<Self>> {
        let aspects = authenticator.aspects();
        if aspects.is_empty() {
            return None;
        }
        Some(Arc::new(Self {
            authenticator,
            aspects,
        }))
    }

    /// The configured aspects' names.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.aspects.iter().map(|a| a.name.as_str())
    }

    /// Whether `entry` of `Sec-WebSocket-Protocol` carries a credential (it
    /// must never be chosen as the subprotocol).
    pub(crate) fn is_credential_protocol(&self, entry: &str) -> bool {
        self.authenticator.is_credential_protocol(entry)
    }

    /// Every configured aspect, anonymous.
    pub(crate) fn anonymous(&self) -> Aspects {
        let mut aspects = Aspects::new();
        for a in &self.aspects {
            aspects.insert(a.name.as_str(), UserAspect::anonymous());
        }
        aspects
    }

    fn find(&self, name: &str) -> Option<&AspectInfo> {
        self.aspects.iter().find(|a| a.name == name)
    }
}

/// A route's `require` and `require_groups`, as enforced by the stage.
#[derive(Debug, Default)]
pub(crate) struct Requirement {
    /// The route's path, for the refusal's message.
    pub(crate) route: String,
    /// Aspects that must all be logged in (401).
    pub(crate) aspects: Vec<String>,
    /// Groups, any of which a required aspect's user must be in (403).
    pub(crate) groups: Vec<String>,
}

impl Requirement {
    /// The refusal for `aspects`, if they do not meet the requirement.
    fn refusal(&self, aspects: &Aspects, configured: &[AspectInfo]) -> Option<HandshakeResponse> {
        for name in &self.aspects {
            if !aspects.get(name).logged_in {
                let mut refused = refusal(
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "route `{}` requires a logged-in `{name}` (the aspect `{name}` is \
                         anonymous: no valid session or token was presented)",
                        self.route
                    ),
                );
                if configured.iter().any(|a| a.name == *name && a.bearer) {
                    refused
                        .headers_mut()
                        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                return Some(refused);
            }
        }
        if self.groups.is_empty() {
            return None;
        }
        let member = self.aspects.iter().any(|name| {
            let user = aspects.get(name);
            self.groups.iter().any(|g| user.in_group(g))
        });
        if member {
            return None;
        }
        Some(refusal(
            StatusCode::FORBIDDEN,
            format!(
                "route `{}` requires membership in one of the groups {} (aspect {})",
                self.route,
                quoted(&self.groups),
                quoted(&self.aspects),
            ),
        ))
    }
}

fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Revalidators of one handshake, in the request's extensions until the
/// upgrade takes them (extensions need `Clone`).
#[derive(Clone, Default)]
pub(crate) struct HeldRevalidators(Arc<Mutex<Vec<Box<dyn Revalidate>>>>);

impl HeldRevalidators {
    /// Takes them out.
    pub(crate) fn take(&self) -> Vec<Box<dyn Revalidate>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Stage 4: resolves every aspect of a handshake for a mounted route and
/// enforces the route's `requirement`; the resolved aspects (and what
/// re-checks them) go into the request's extensions. `Some` is the refusal
/// to answer with.
pub(crate) async fn authenticate(
    auth: &Auth,
    requirement: &Requirement,
    req: &mut HandshakeRequest,
) -> Option<HandshakeResponse> {
    let resolved = match auth
        .authenticator
        .resolve(req.headers(), req.uri().query())
        .await
    {
        Ok(resolved) => resolved,
        // The aspect and the kind of failure, never the store's own error
        // text (the implementation logs it).
        Err(e) => return Some(refusal(e.status, e.message)),
    };
    if let Some(refused) = requirement.refusal(&resolved.aspects, &auth.aspects) {
        return Some(refused);
    }
    let ext = req.extensions_mut();
    ext.insert(resolved.aspects);
    if !resolved.sessions.is_empty() {
        ext.insert(HeldRevalidators(Arc::new(Mutex::new(resolved.sessions))));
    }
    None
}

/// What the revalidation of a connection tells its session.
#[derive(Debug)]
pub(crate) enum AuthEvent {
    /// The source sees the user differently now (groups, expiry, …).
    Changed(String, UserAspect),
    /// The session ended and the aspect is configured `on_end = "downgrade"`.
    Downgrade(String),
    /// Close the connection: the session ended (1008) or cannot be checked
    /// (1013).
    Close(String, CloseFrame),
}

/// The revalidation of one connection's sessions: dropping it stops it.
#[derive(Debug)]
pub(crate) enum Watch {
    /// Every check is local: the session's own timer (the one it keeps
    /// for keepalive) is set to the earliest end; nothing else is polled.
    Local(LocalEnds),
    /// Checks that do I/O run on a task of their own.
    Task {
        events: mpsc::UnboundedReceiver<AuthEvent>,
        _task: AbortOnDropHandle<()>,
    },
}

impl Watch {
    /// Polls for the next event of a [`Watch::Task`]; `None` once every
    /// session is done being watched (each was downgraded). A
    /// [`Watch::Local`] has no events of its own (see
    /// [`LocalEnds::ended`]): always pending, and nothing is polled.
    pub(crate) fn poll_task_event(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<AuthEvent>> {
        match self {
            Self::Local(_) => std::task::Poll::Pending,
            Self::Task { events, .. } => events.poll_recv(cx),
        }
    }
}

/// Sessions that end at a time known from the start (a JWT's `exp` plus
/// the leeway) and are checked without I/O: all that is kept of each is
/// which aspect it is, that time and what its end does, not the
/// credential, a copy of the user or a timer of its own.
#[derive(Debug)]
pub(crate) struct LocalEnds(Vec<LocalEnd>);

#[derive(Debug)]
struct LocalEnd {
    /// Index into [`Auth`]'s aspects.
    aspect: usize,
    at: SystemTime,
    on_end: OnSessionEnd,
}

impl LocalEnds {
    /// When the next session ends.
    pub(crate) fn next_end(&self) -> Option<SystemTime> {
        self.0.iter().map(|e| e.at).min()
    }

    /// The event of one session that has ended by `now` (removed from the
    /// watch), if any.
    pub(crate) fn ended(&mut self, auth: &Auth, now: SystemTime) -> Option<AuthEvent> {
        let i = self.0.iter().position(|e| e.at <= now)?;
        let LocalEnd { aspect, on_end, .. } = self.0.swap_remove(i);
        let name = auth.aspects[aspect].name.clone();
        Some(match on_end {
            OnSessionEnd::Downgrade => AuthEvent::Downgrade(name),
            OnSessionEnd::Close => AuthEvent::Close(
                name,
                CloseFrame::new(CloseCode::POLICY_VIOLATION, SESSION_ENDED),
            ),
        })
    }

    /// Whether every session was dealt with.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Starts re-checking `revalidators`: on the session's own timer when every
/// check is local, else on one task; `None` when there is nothing to
/// re-check.
pub(crate) fn watch(auth: &Auth, revalidators: Vec<Box<dyn Revalidate>>) -> Option<Watch> {
    if revalidators.is_empty() {
        return None;
    }
    let on_end = |r: &dyn Revalidate| {
        auth.find(r.aspect())
            .map_or(OnSessionEnd::Close, |a| a.on_end)
    };
    // Local checks on a fixed end (no `revalidate_every`): only the end
    // time is kept.
    let now = SystemTime::now();
    let local: Vec<_> = revalidators.iter().map(|r| r.local_end(now)).collect();
    if local.iter().all(Option::is_some) {
        let mut ends: Vec<_> = revalidators
            .iter()
            .zip(local)
            .filter_map(|(r, at)| {
                let at = at?;
                // Every revalidator comes from a configured aspect.
                let aspect = auth.aspects.iter().position(|a| a.name == r.aspect())?;
                Some(LocalEnd {
                    aspect,
                    at,
                    on_end: auth.aspects[aspect].on_end,
                })
            })
            .collect();
        if ends.is_empty() {
            return None;
        }
        // Kept as long as the connection: no spare capacity.
        ends.shrink_to_fit();
        return Some(Watch::Local(LocalEnds(ends)));
    }
    let (tx, events) = mpsc::unbounded_channel();
    let running: FuturesUnordered<_> = revalidators
        .into_iter()
        .map(|r| {
            let on_end = on_end(&*r);
            let tx = tx.clone();
            async move {
                let name = r.aspect().to_owned();
                let changes = tx.clone();
                let mut applied = r.current().clone();
                let end = r
                    .until_ended(Box::new(move |n: &str, user: &UserAspect| {
                        if changed(&applied, user) {
                            applied = user.clone();
                            let _ = changes.send(AuthEvent::Changed(n.to_owned(), user.clone()));
                        }
                    }))
                    .await;
                let event = match (end, on_end) {
                    (SessionEnd::Ended, OnSessionEnd::Downgrade) => AuthEvent::Downgrade(name),
                    (SessionEnd::Unavailable(e), _) => {
                        tracing::warn!(aspect = %name, error = %e, "session cannot be re-checked: closing with 1013");
                        AuthEvent::Close(
                            name,
                            CloseFrame::new(CloseCode::TRY_AGAIN_LATER, SESSION_UNAVAILABLE),
                        )
                    }
                    _ => AuthEvent::Close(
                        name,
                        CloseFrame::new(CloseCode::POLICY_VIOLATION, SESSION_ENDED),
                    ),
                };
                let _ = tx.send(event);
            }
        })
        .collect();
    drop(tx);
    let task = tokio::spawn(async move {
        let mut running = running;
        while running.next().await.is_some() {}
    });
    Some(Watch::Task {
        events,
        _task: AbortOnDropHandle::new(task),
    })
}

/// How far an expiry may move between two checks without counting as a
/// change: an expiry read from a TTL ("now + time left") moves a little with
/// every look-up.
const EXPIRY_JITTER: Duration = Duration::from_secs(1);

/// Whether `now` differs from `before` in anything but expiry jitter.
fn changed(before: &UserAspect, now: &UserAspect) -> bool {
    let jitter = match (before.expires_at, now.expires_at) {
        (Some(a), Some(b)) => {
            let d = a.duration_since(b).or_else(|_| b.duration_since(a));
            d.is_ok_and(|d| d <= EXPIRY_JITTER)
        }
        _ => false,
    };
    if jitter {
        let mut now = now.clone();
        now.expires_at = before.expires_at;
        now != *before
    } else {
        now != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(bearer: bool) -> Vec<AspectInfo> {
        vec![AspectInfo::new("fe").bearer(bearer)]
    }

    fn requirement(groups: &[&str]) -> Requirement {
        Requirement {
            route: "/r".into(),
            aspects: vec!["fe".into()],
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    fn body(resp: &HandshakeResponse) -> &str {
        std::str::from_utf8(resp.body()).unwrap()
    }

    #[test]
    fn expiry_jitter_is_no_change() {
        let at = std::time::SystemTime::now();
        let a = UserAspect::user("1").with_expiry(at);
        assert!(!changed(
            &a,
            &a.clone().with_expiry(at + Duration::from_millis(300))
        ));
        assert!(changed(
            &a,
            &a.clone().with_expiry(at + Duration::from_secs(60))
        ));
        assert!(changed(&a, &a.clone().with_groups(["x"])));
        assert!(changed(&a, &UserAspect::user("1")));
    }

    #[test]
    fn anonymous_is_401_naming_the_aspect() {
        let auth = auth(false);
        let mut anonymous = Aspects::new();
        anonymous.insert("fe", UserAspect::anonymous());
        let e = requirement(&[]).refusal(&anonymous, &auth).unwrap();
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert!(body(&e).contains("`fe`"), "{}", body(&e));
        assert!(e.headers().get(WWW_AUTHENTICATE).is_none());
        let auth = self::auth(true);
        let e = requirement(&[]).refusal(&Aspects::new(), &auth).unwrap();
        assert_eq!(e.headers()[WWW_AUTHENTICATE], "Bearer");
    }

    #[test]
    fn groups_are_any_of_else_403() {
        let auth = auth(false);
        let mut aspects = Aspects::new();
        aspects.insert("fe", UserAspect::user("1").with_groups(["editors"]));
        assert!(requirement(&[]).refusal(&aspects, &auth).is_none());
        assert!(
            requirement(&["admins", "editors"])
                .refusal(&aspects, &auth)
                .is_none()
        );
        let e = requirement(&["admins"]).refusal(&aspects, &auth).unwrap();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert!(
            body(&e).contains("`admins`") && body(&e).contains("`fe`"),
            "{}",
            body(&e)
        );
    }
}
