//! Channels: connections join named channels, anyone publishes to a
//! channel, to one connection or to every connection of a user.
//!
//! [`Hub`] is the handle components use (through
//! [`Connection::hub`] and [`ServerContext::hub`](crate::ServerContext::hub));
//! a [`HubBackend`] does the work. This module is the backend's contract:
//! [`LocalHub`] delivers within one process; the server swaps in a broker
//! (Redis pub/sub, the `ws-broker` crate) to reach the connections of other
//! server processes. The runtime registers each connection with the backend
//! when it opens, tells it when its aspects change, and unregisters it when
//! it ends; components only join, leave, publish and ask for presence.
//! Fan-out clones the message, which clones a `Bytes` handle, never the
//! payload.
//!
//! [`Hub::publish`] never waits: with a broker, the publication is queued
//! for the other servers. A caller that must know it is safe (the admin
//! API, before its 202) uses [`Hub::publish_confirmed`], which returns once
//! the broker acknowledged it, or [`HubError::Unavailable`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use crate::connection::{Connection, ConnectionId, SendError};
use crate::message::{CloseCode, Message};

/// Where a publication goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// Every member of a channel.
    Channel(String),
    /// One connection.
    Connection(ConnectionId),
    /// Every connection whose user (see [`Aspects::user`](crate::Aspects::user)) has this id.
    User(String),
}

/// A member of a channel, for presence lists.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    /// The connection, unique across servers (`<server>/<id>` with a broker).
    pub connection: String,
    /// The user's id, when logged in.
    pub user_id: Option<String>,
    /// The user's name, or `anonymous`.
    pub name: String,
}

/// Why a hub operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The channel name is not allowed.
    #[error("invalid channel name `{name}`: {reason}")]
    InvalidChannel {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The broker cannot take the publication now (for example Redis is
    /// down); local subscribers may have received it, remote ones did not.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// Checks a channel name: 1 to 200 bytes, no control characters.
///
/// # Errors
/// [`HubError::InvalidChannel`] with the reason.
pub fn validate_channel(name: &str) -> Result<(), HubError> {
    let reason = if name.is_empty() {
        "must not be empty"
    } else if name.len() > 200 {
        "must be at most 200 bytes"
    } else if name.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(HubError::InvalidChannel {
        name: name.chars().take(64).collect(),
        reason,
    })
}

/// The engine behind a [`Hub`].
#[async_trait::async_trait]
pub trait HubBackend: Send + Sync + 'static {
    /// A connection opened (called by the runtime before `on_open`).
    fn register(&self, conn: &Connection);
    /// A connection ended: it leaves every channel (called by the runtime
    /// once, as soon as the connection ends, before `on_close`).
    fn unregister(&self, conn: ConnectionId);
    /// The connection's aspects changed (its user may be another one now;
    /// called by the runtime after a revalidation).
    fn refresh(&self, conn: &Connection) {
        let _ = conn;
    }
    /// `conn` joins `channel`.
    ///
    /// # Errors
    /// An invalid channel name.
    fn join(&self, conn: &Connection, channel: &str) -> Result<(), HubError>;
    /// `conn` leaves `channel` (nothing happens when it is no member).
    fn leave(&self, conn: ConnectionId, channel: &str);
    /// Delivers `msg` to `target`; returns how many local connections got it.
    ///
    /// # Errors
    /// An invalid channel, or a broker that cannot forward it.
    fn publish(&self, target: &Target, msg: Message) -> Result<usize, HubError>;
    /// Delivers `msg` to `target` like [`publish`](Self::publish), and
    /// returns only once the publication is safe: delivered to the local
    /// connections and, with a broker, acknowledged by it (Redis answered
    /// the `PUBLISH`, so every server subscribed to it has it). Returns how
    /// many local connections got it.
    ///
    /// This default is `publish` itself: in-process delivery is complete
    /// when `publish` returns. A broker overrides it; it bounds the wait
    /// (the Redis broker by its `command_timeout`).
    ///
    /// # Errors
    /// An invalid channel, or [`HubError::Unavailable`] when the broker
    /// refused the publication or did not acknowledge it (down, queue full,
    /// no answer in time): local subscribers may have it, other servers'
    /// subscribers may not.
    async fn publish_confirmed(&self, target: &Target, msg: Message) -> Result<usize, HubError> {
        self.publish(target, msg)
    }
    /// Members of `channel` (on every server, with a broker), sorted.
    ///
    /// # Errors
    /// A broker that cannot be asked.
    async fn presence(&self, channel: &str) -> Result<Vec<Member>, HubError>;
}

/// The handle components use to reach channels, connections and users.
#[derive(Clone)]
pub struct Hub(Arc<dyn HubBackend>);

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hub")
    }
}

impl Hub {
    /// A hub over `backend`.
    pub fn new(backend: impl HubBackend) -> Self {
        Self(Arc::new(backend))
    }

    /// A hub over a shared backend.
    pub fn from_arc(backend: Arc<dyn HubBackend>) -> Self {
        Self(backend)
    }

    /// An in-process hub with the default slow-subscriber policy.
    pub fn local() -> Self {
        Self::new(LocalHub::default())
    }

    /// The backend (for the runtime: `__runtime::backend`).
    pub(crate) fn backend(&self) -> &Arc<dyn HubBackend> {
        &self.0
    }

    /// Publishes to every member of `channel`; returns local deliveries.
    ///
    /// # Errors
    /// See [`HubBackend::publish`].
    pub fn publish(&self, channel: &str, msg: impl Into<Message>) -> Result<usize, HubError> {
        self.0
            .publish(&Target::Channel(channel.to_owned()), msg.into())
    }

    /// Publishes to every member of `channel` and waits until the
    /// publication is safe: with a broker, until it acknowledged it (every
    /// server has it), else at once. For callers that must know, such as
    /// the admin API's 202; [`publish`](Self::publish) is the fast path.
    /// Returns local deliveries.
    ///
    /// # Errors
    /// See [`HubBackend::publish_confirmed`].
    pub async fn publish_confirmed(
        &self,
        channel: &str,
        msg: impl Into<Message>,
    ) -> Result<usize, HubError> {
        self.0
            .publish_confirmed(&Target::Channel(channel.to_owned()), msg.into())
            .await
    }

    /// Sends to one connection, wherever it is.
    ///
    /// # Errors
    /// See [`HubBackend::publish`].
    pub fn send_to_connection(
        &self,
        id: ConnectionId,
        msg: impl Into<Message>,
    ) -> Result<usize, HubError> {
        self.0.publish(&Target::Connection(id), msg.into())
    }

    /// Sends to every connection of user `user_id`.
    ///
    /// # Errors
    /// See [`HubBackend::publish`].
    pub fn send_to_user(&self, user_id: &str, msg: impl Into<Message>) -> Result<usize, HubError> {
        self.0
            .publish(&Target::User(user_id.to_owned()), msg.into())
    }

    /// Members of `channel`.
    ///
    /// # Errors
    /// See [`HubBackend::presence`].
    pub async fn presence(&self, channel: &str) -> Result<Vec<Member>, HubError> {
        self.0.presence(channel).await
    }
}

/// What a hub does with a subscriber whose outgoing queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowSubscriber {
    /// Close it with 1013 (try again later): nothing is lost silently, and
    /// the client knows to reconnect.
    #[default]
    Close,
    /// Skip this message for it and go on.
    Drop,
}

/// How many members ahead a fan-out starts loading a member's queue (see
/// [`Connection::prefetch`]): far enough for the load to arrive in time,
/// near enough not to evict what it loaded. Measured: with 8, a third
/// more broadcast deliveries per second at 10,000 subscribers (370k ->
/// 495k in runs alternating the builds).
const PREFETCH_AHEAD: usize = 8;

#[derive(Default)]
struct LocalState {
    conns: HashMap<ConnectionId, LocalEntry>,
    channels: HashMap<String, HashMap<ConnectionId, Connection>>,
    users: HashMap<String, HashSet<ConnectionId>>,
}

/// One open connection: kept for every connection, so small (a
/// connection in no channel has no set).
// The box keeps an empty set at one pointer instead of six words.
#[allow(clippy::box_collection)]
struct LocalEntry {
    conn: Connection,
    user: Option<Box<str>>,
    channels: Option<Box<HashSet<String>>>,
}

/// Channels within one process.
#[derive(Default)]
pub struct LocalHub {
    state: RwLock<LocalState>,
    slow: SlowSubscriber,
}

impl fmt::Debug for LocalHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalHub")
            .field("slow", &self.slow)
            .finish_non_exhaustive()
    }
}

impl LocalHub {
    /// A hub with the given slow-subscriber policy.
    pub fn new(slow: SlowSubscriber) -> Self {
        Self {
            state: RwLock::default(),
            slow,
        }
    }

    fn deliver(&self, conn: &Connection, msg: &Message) -> bool {
        match conn.send(msg.clone()) {
            Ok(()) => true,
            Err(SendError::Full(_)) => {
                if self.slow == SlowSubscriber::Close {
                    conn.close(CloseCode::TRY_AGAIN_LATER, "subscriber too slow");
                }
                false
            }
            Err(_) => false,
        }
    }

    /// Members of `channel` on this process, sorted.
    pub fn local_members(&self, channel: &str) -> Vec<Member> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Member> = state
            .channels
            .get(channel)
            .into_iter()
            .flat_map(|m| m.values())
            .map(member_of)
            .collect();
        out.sort();
        out
    }

    /// Connections registered (open) on this hub.
    pub fn connections(&self) -> usize {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .conns
            .len()
    }
}

/// The presence entry of a local connection.
pub fn member_of(conn: &Connection) -> Member {
    let user = conn.user();
    Member {
        connection: conn.id().to_string(),
        user_id: user.as_ref().and_then(|u| u.id.clone()),
        name: user
            .as_ref()
            .map_or("anonymous", |u| u.display_name())
            .to_owned(),
    }
}

fn remove_user(users: &mut HashMap<String, HashSet<ConnectionId>>, user: &str, id: ConnectionId) {
    if let Some(set) = users.get_mut(user) {
        set.remove(&id);
        if set.is_empty() {
            users.remove(user);
        }
    }
}

fn user_of(conn: &Connection) -> Option<Box<str>> {
    conn.user().and_then(|u| u.id.as_deref().map(Box::from))
}

#[async_trait::async_trait]
impl HubBackend for LocalHub {
    fn register(&self, conn: &Connection) {
        let user = user_of(conn);
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(u) = &user {
            s.users.entry(u.to_string()).or_default().insert(conn.id());
        }
        s.conns.insert(
            conn.id(),
            LocalEntry {
                conn: conn.clone(),
                user,
                channels: None,
            },
        );
    }

    fn unregister(&self, id: ConnectionId) {
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = s.conns.remove(&id) else {
            return;
        };
        for ch in entry.channels.into_iter().flat_map(|c| *c) {
            if let Some(members) = s.channels.get_mut(&ch) {
                members.remove(&id);
                if members.is_empty() {
                    s.channels.remove(&ch);
                }
            }
        }
        if let Some(u) = entry.user {
            remove_user(&mut s.users, &u, id);
        }
    }

    fn refresh(&self, conn: &Connection) {
        let user = user_of(conn);
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = s.conns.get_mut(&conn.id()) else {
            return;
        };
        let old = std::mem::replace(&mut entry.user, user.clone());
        if old == user {
            return;
        }
        if let Some(u) = old {
            remove_user(&mut s.users, &u, conn.id());
        }
        if let Some(u) = user {
            s.users.entry(u.into()).or_default().insert(conn.id());
        }
    }

    fn join(&self, conn: &Connection, channel: &str) -> Result<(), HubError> {
        validate_channel(channel)?;
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = s.conns.get_mut(&conn.id()) else {
            // Not registered (already closed): joining has no effect.
            return Ok(());
        };
        entry
            .channels
            .get_or_insert_default()
            .insert(channel.to_owned());
        s.channels
            .entry(channel.to_owned())
            .or_default()
            .insert(conn.id(), conn.clone());
        Ok(())
    }

    fn leave(&self, id: ConnectionId, channel: &str) {
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = s.conns.get_mut(&id)
            && let Some(channels) = &mut entry.channels
        {
            channels.remove(channel);
            if channels.is_empty() {
                entry.channels = None;
            }
        }
        if let Some(members) = s.channels.get_mut(channel) {
            members.remove(&id);
            if members.is_empty() {
                s.channels.remove(channel);
            }
        }
    }

    fn publish(&self, target: &Target, msg: Message) -> Result<usize, HubError> {
        let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let delivered = match target {
            Target::Channel(ch) => {
                validate_channel(ch)?;
                let Some(members) = s.channels.get(ch) else {
                    return Ok(0);
                };
                let mut ahead = members.values().skip(PREFETCH_AHEAD);
                members
                    .values()
                    .filter(|c| {
                        if let Some(n) = ahead.next() {
                            n.prefetch();
                        }
                        self.deliver(c, &msg)
                    })
                    .count()
            }
            Target::Connection(id) => s
                .conns
                .get(id)
                .filter(|e| self.deliver(&e.conn, &msg))
                .map_or(0, |_| 1),
            Target::User(u) => s
                .users
                .get(u)
                .into_iter()
                .flatten()
                .filter_map(|id| s.conns.get(id))
                .filter(|e| self.deliver(&e.conn, &msg))
                .count(),
        };
        Ok(delivered)
    }

    async fn presence(&self, channel: &str) -> Result<Vec<Member>, HubError> {
        validate_channel(channel)?;
        Ok(self.local_members(channel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::__runtime::{self, Outbox, Outgoing, RegisteredOutbox};
    use crate::aspect::UserAspect;
    use crate::connection::HandshakeInfo;
    use crate::message::CloseFrame;

    fn open(hub: &Hub, user: Option<(&str, &str)>, cap: usize) -> (Connection, RegisteredOutbox) {
        let mut info = HandshakeInfo::new(([127, 0, 0, 1], 1).into(), "/c");
        if let Some((id, name)) = user {
            info.aspects
                .insert("frontend.user", UserAspect::user(id).with_username(name));
        }
        __runtime::open_registered(info, cap, hub.clone())
    }

    async fn drain(o: &mut Outbox) -> Vec<Message> {
        let mut buf = Vec::new();
        while !o.is_empty() {
            match o.recv(&mut buf, 100).await {
                Some(Outgoing::Messages(_)) => {}
                _ => break,
            }
        }
        buf
    }

    #[tokio::test]
    async fn join_publish_leave_and_auto_leave() {
        let hub = Hub::local();
        let (a, mut oa) = open(&hub, Some(("1", "ann")), 8);
        let (b, mut ob) = open(&hub, None, 8);
        a.join("room").unwrap();
        b.join("room").unwrap();
        assert_eq!(hub.publish("room", "hi").unwrap(), 2);
        assert_eq!(drain(&mut oa).await, vec![Message::from("hi")]);
        assert_eq!(drain(&mut ob).await, vec![Message::from("hi")]);
        let members = hub.presence("room").await.unwrap();
        assert_eq!(members.len(), 2);
        assert!(
            members
                .iter()
                .any(|m| m.name == "ann" && m.user_id.as_deref() == Some("1"))
        );
        assert!(
            members
                .iter()
                .any(|m| m.name == "anonymous" && m.user_id.is_none())
        );
        b.leave("room");
        assert_eq!(hub.publish("room", "x").unwrap(), 1);
        // Closing leaves every channel.
        oa.mark_closed();
        assert_eq!(hub.publish("room", "y").unwrap(), 0);
        assert!(hub.presence("room").await.unwrap().is_empty());
        drop(ob);
    }

    #[tokio::test]
    async fn a_channel_larger_than_the_look_ahead_gets_each_message_once() {
        let hub = Hub::local();
        let n = PREFETCH_AHEAD * 3 + 1;
        let mut members: Vec<_> = (0..n).map(|_| open(&hub, None, 8)).collect();
        for (c, _) in &members {
            c.join("many").unwrap();
        }
        // One closes: the fan-out skips it and still reaches the others.
        members[n / 2].1.mark_closed();
        assert_eq!(hub.publish("many", "one").unwrap(), n - 1);
        assert_eq!(hub.publish("many", "two").unwrap(), n - 1);
        for (i, (_, o)) in members.iter_mut().enumerate() {
            let got = drain(o).await;
            if i == n / 2 {
                assert!(got.is_empty());
            } else {
                assert_eq!(got, vec![Message::from("one"), Message::from("two")]);
            }
        }
    }

    #[tokio::test]
    async fn user_and_connection_targets() {
        let hub = Hub::local();
        let (a1, mut o1) = open(&hub, Some(("7", "sue")), 8);
        let (_a2, mut o2) = open(&hub, Some(("7", "sue")), 8);
        let (_b, mut ob) = open(&hub, Some(("8", "bob")), 8);
        assert_eq!(hub.send_to_user("7", "for sue").unwrap(), 2);
        assert_eq!(hub.send_to_connection(a1.id(), "only a1").unwrap(), 1);
        assert_eq!(drain(&mut o1).await.len(), 2);
        assert_eq!(drain(&mut o2).await.len(), 1);
        assert!(drain(&mut ob).await.is_empty());
        // The user changes: the index follows.
        __runtime::set_aspect(&a1, "frontend.user", UserAspect::anonymous());
        hub.backend().refresh(&a1);
        assert_eq!(hub.send_to_user("7", "again").unwrap(), 1);
    }

    #[tokio::test]
    async fn slow_subscribers_are_closed_or_skipped() {
        let closing = Hub::new(LocalHub::new(SlowSubscriber::Close));
        let (slow, mut os) = open(&closing, None, 1);
        let (fast, mut of) = open(&closing, None, 8);
        slow.join("c").unwrap();
        fast.join("c").unwrap();
        assert_eq!(closing.publish("c", "1").unwrap(), 2);
        assert_eq!(closing.publish("c", "2").unwrap(), 1);
        assert_eq!(drain(&mut of).await.len(), 2);
        let mut buf = Vec::new();
        assert_eq!(os.recv(&mut buf, 8).await, Some(Outgoing::Messages(1)));
        assert_eq!(
            os.recv(&mut buf, 8).await,
            Some(Outgoing::Close(CloseFrame::new(
                CloseCode::TRY_AGAIN_LATER,
                "subscriber too slow"
            )))
        );

        let dropping = Hub::new(LocalHub::new(SlowSubscriber::Drop));
        let (slow, mut os) = open(&dropping, None, 1);
        slow.join("c").unwrap();
        dropping.publish("c", "1").unwrap();
        assert_eq!(dropping.publish("c", "2").unwrap(), 0);
        assert_eq!(drain(&mut os).await, vec![Message::from("1")]);
        assert!(!slow.is_closed());
    }

    #[tokio::test]
    async fn a_local_confirmed_publication_is_delivered_when_it_returns() {
        let hub = Hub::local();
        let (a, mut oa) = open(&hub, None, 8);
        a.join("room").unwrap();
        assert_eq!(hub.publish_confirmed("room", "sure").await.unwrap(), 1);
        assert_eq!(drain(&mut oa).await, vec![Message::from("sure")]);
        assert_eq!(hub.publish_confirmed("nobody-here", "x").await.unwrap(), 0);
        assert!(matches!(
            hub.publish_confirmed("", "x").await,
            Err(HubError::InvalidChannel { .. })
        ));
    }

    #[test]
    fn channel_names_are_checked() {
        assert!(validate_channel("room-1").is_ok());
        assert!(validate_channel("").is_err());
        assert!(validate_channel("a\nb").is_err());
        assert!(validate_channel(&"x".repeat(201)).is_err());
        let hub = Hub::local();
        assert!(hub.publish("", "x").is_err());
    }
}
