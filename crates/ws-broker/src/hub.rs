//! [`RedisHub`]: a [`LocalHub`] for this process plus Redis pub/sub for the
//! others.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use ws_core::budget::{MemoryBudget, OverBudget};
use ws_core::hub::{HubBackend, LocalHub, Target, validate_channel};
use ws_core::{Connection, ConnectionId, Hub, HubError, Member, Message};

use crate::config::BrokerConfig;
use crate::envelope::{self, Route};
use crate::error::BrokerError;
use crate::id::{ConnectionAddr, ServerId};
use crate::keys::Keys;
use crate::presence::{self, PresenceIndex};
use crate::tasks;

/// A publication waiting for the writer task.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) route: Route,
    pub(crate) msg: Message,
    /// For a confirmed publication: told when Redis answered the `PUBLISH`
    /// (`Ok`) or why it did not (`Err`); dropped unanswered when the
    /// publication is dropped (the connection broke before it was written).
    pub(crate) ack: Option<Ack>,
    /// Its bytes in the server's memory budget, until it is dropped: from
    /// the queue on, and while it is kept for sending again.
    pub(crate) charge: Charge,
}

/// Bytes counted in a [`MemoryBudget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: MemoryBudget,
    bytes: usize,
}

impl Charge {
    pub(crate) fn new(budget: &MemoryBudget, bytes: usize) -> Result<Self, OverBudget> {
        budget.charge(bytes)?;
        Ok(Self {
            budget: budget.clone(),
            bytes,
        })
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// The writer's answer to a confirmed publication.
pub(crate) type Ack = oneshot::Sender<Result<(), String>>;

/// Counters behind [`BrokerStatus`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) forwarded: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) missed: AtomicU64,
    pub(crate) malformed: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// State shared by the hub handle and its two background tasks.
pub(crate) struct Shared {
    /// This server's id: in every envelope it sends, in its keys, in its
    /// members' addresses.
    pub(crate) id: ServerId,
    /// The validated configuration.
    pub(crate) config: BrokerConfig,
    /// Key and channel names.
    pub(crate) keys: Keys,
    /// `redis_url` without its password, for logs and errors.
    pub(crate) url_shown: String,
    /// Opens connections (first and after each loss).
    pub(crate) client: redis::Client,
    /// Delivers to this process's connections.
    pub(crate) local: LocalHub,
    /// This server's channel memberships, and what Redis has not learnt yet.
    /// Taken before `local`'s lock when both are needed.
    pub(crate) index: Mutex<PresenceIndex>,
    /// Wakes the writer: presence changed.
    pub(crate) presence_dirty: Notify,
    /// Wakes the writer: the subscriber lost its connection, check ours.
    pub(crate) check: Notify,
    /// Publications for the writer; bounded by `queue_size`.
    pub(crate) queue: mpsc::Sender<Outbound>,
    /// The writer's connection is up (publications are accepted).
    pub(crate) connected: AtomicBool,
    /// The subscriber's connection is up and subscribed.
    pub(crate) subscribed: AtomicBool,
    /// `shutdown` was called: nothing is forwarded any more.
    pub(crate) closing: AtomicBool,
    /// A handle on the writer's connection, for presence reads; `None` while
    /// disconnected.
    pub(crate) conn: Mutex<Option<MultiplexedConnection>>,
    /// What happened so far.
    pub(crate) counters: Counters,
    /// The server's memory budget: queued and recently written
    /// publications count against it.
    pub(crate) budget: MemoryBudget,
    /// Rate limit of the "not forwarded" warning: when it was last logged
    /// and how many refusals were not logged since.
    refusals: Mutex<(Option<Instant>, u64)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn index(&self) -> MutexGuard<'_, PresenceIndex> {
        lock(&self.index)
    }

    /// Records the writer's connection (or its loss).
    pub(crate) fn set_conn(&self, conn: Option<MultiplexedConnection>) {
        let up = conn.is_some();
        *lock(&self.conn) = conn;
        self.connected.store(up, Ordering::Release);
    }

    /// Counts and logs (at most once a second) a publication that was not
    /// forwarded, and the error for the caller.
    fn refuse(&self, reason: String) -> HubError {
        Counters::add(&self.counters.refused, 1);
        let now = Instant::now();
        let mut r = lock(&self.refusals);
        if r.0
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            let earlier = std::mem::take(&mut r.1);
            r.0 = Some(now);
            drop(r);
            tracing::warn!(
                server = %self.id,
                reason = %reason,
                also_refused_in_the_last_second = earlier,
                "broker: publication not forwarded to other servers (local subscribers got it)"
            );
        } else {
            r.1 += 1;
        }
        HubError::Unavailable(reason)
    }

    /// Hands a publication to the writer (with `ack`, to be told when Redis
    /// took it), or says why not.
    fn forward(&self, route: Route, msg: Message, ack: Option<Ack>) -> Result<(), HubError> {
        if let Route::Channel(n) | Route::User(n) = &route
            && n.len() > Route::MAX_NAME
        {
            return Err(self.refuse(format!(
                "target name of {} bytes cannot be forwarded (at most {})",
                n.len(),
                Route::MAX_NAME
            )));
        }
        if self.closing.load(Ordering::Acquire) {
            return Err(self.refuse("the broker is shut down".to_owned()));
        }
        if !self.connected.load(Ordering::Acquire) {
            return Err(self.refuse(format!("Redis at {} is unreachable", self.url_shown)));
        }
        let charge =
            Charge::new(&self.budget, envelope::encoded_len(&route, &msg)).map_err(|e| {
                self.refuse(format!(
                    "server memory budget exhausted: {} more bytes to queue, {} of {} in use \
                 (max_buffered_memory_in_mb)",
                    e.requested, e.used, e.limit
                ))
            })?;
        match self.queue.try_send(Outbound {
            route,
            msg,
            ack,
            charge,
        }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(self.refuse(format!(
                "forwarding queue full ({} publications wait for Redis)",
                self.config.queue_size
            ))),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(self.refuse("the broker is shut down".to_owned()))
            }
        }
    }

    /// Waits for the writer's answer to a confirmed publication, at most
    /// `command_timeout` (the writer gives up on a pipeline after as long).
    async fn confirmation(
        &self,
        ack: oneshot::Receiver<Result<(), String>>,
    ) -> Result<(), HubError> {
        let limit = self.config.command_timeout;
        match tokio::time::timeout(limit, ack).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(why))) => Err(HubError::Unavailable(why)),
            Ok(Err(_)) => Err(HubError::Unavailable(format!(
                "the connection to Redis at {} broke before the publication was written",
                self.url_shown
            ))),
            Err(_) => Err(self.refuse(format!(
                "Redis at {} did not confirm the publication within {} (command_timeout; \
                 it may still be forwarded)",
                self.url_shown,
                humantime::format_duration(limit)
            ))),
        }
    }

    fn member_addr(&self, mut m: Member) -> Member {
        m.connection = format!("{}/{}", self.id, m.connection);
        m
    }
}

/// Whether the broker reaches Redis, and what it forwarded, for logs and
/// health checks.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStatus {
    /// This server's id.
    pub server: ServerId,
    /// The publishing connection is up: publications are accepted.
    pub connected: bool,
    /// The subscribing connection is up: publications of other servers and
    /// plain `PUBLISH`es arrive.
    pub subscribed: bool,
    /// Publications accepted and not yet written to Redis.
    pub queued: usize,
    /// Publications written to Redis.
    pub forwarded: u64,
    /// Publications refused with [`HubError::Unavailable`] (Redis
    /// unreachable, queue full, shut down), and confirmed publications
    /// Redis did not answer within `command_timeout`.
    pub refused: u64,
    /// Publications accepted but not written because the connection broke
    /// first (logged at warn when it happens; a confirmed one among them
    /// was answered [`HubError::Unavailable`]).
    pub lost: u64,
    /// Publications received from Redis and delivered locally.
    pub received: u64,
    /// Publications of other servers that never arrived, from gaps in their
    /// sequence numbers (logged at warn).
    pub missed: u64,
    /// Messages on the broker's channels that could not be read.
    pub malformed: u64,
}

impl BrokerStatus {
    /// Connected and subscribed.
    pub fn is_healthy(&self) -> bool {
        self.connected && self.subscribed
    }
}

impl fmt::Display for BrokerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "server {}: connected {}, subscribed {}, queued {}, forwarded {}, refused {}, lost {}, received {}, missed {}, malformed {}",
            self.server,
            yes(self.connected),
            yes(self.subscribed),
            self.queued,
            self.forwarded,
            self.refused,
            self.lost,
            self.received,
            self.missed,
            self.malformed
        )
    }
}

/// Owns the background tasks: dropping the last [`RedisHub`] stops them at
/// once, without cleanup (like a crash: presence entries expire).
struct Handle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    writer: Mutex<Option<JoinHandle<()>>>,
    subscriber: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        for slot in [&self.writer, &self.subscriber] {
            if let Some(task) = lock(slot).take() {
                task.abort();
            }
        }
    }
}

/// A [`HubBackend`] that reaches the connections of every server process
/// sharing one Redis. Cheap to clone; see the [crate docs](crate) for the
/// design.
#[derive(Clone)]
pub struct RedisHub {
    handle: Arc<Handle>,
}

impl fmt::Debug for RedisHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.handle.shared;
        f.debug_struct("RedisHub")
            .field("server", &s.id)
            .field("redis", &s.url_shown)
            .field("connected", &s.connected.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RedisHub {
    /// Connects to Redis, announces this server, subscribes, and starts the
    /// two background tasks (publisher and subscriber) on the current tokio
    /// runtime.
    ///
    /// Redis must answer now; later outages are survived (see the crate
    /// docs, "Failure behaviour").
    ///
    /// # Errors
    /// A bad configuration, an unusable URL, or Redis refusing or not
    /// answering within `command_timeout`.
    pub async fn connect(config: BrokerConfig) -> Result<Self, BrokerError> {
        Self::connect_with_budget(config, MemoryBudget::unlimited()).await
    }

    /// [`connect`](Self::connect), with the publications waiting for Redis
    /// and those kept for sending again after a reconnect (see the crate
    /// docs, "Failure behaviour") counted against `budget`, the server's
    /// (`ws_runtime::Server::memory_budget`). A publication that does not
    /// fit is refused with [`HubError::Unavailable`] (local subscribers
    /// still get it), as when the queue is full.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with_budget(
        config: BrokerConfig,
        budget: MemoryBudget,
    ) -> Result<Self, BrokerError> {
        config.validate()?;
        let url = config
            .redis_url
            .clone()
            .ok_or_else(|| BrokerError::Config {
                key: "redis_url",
                reason: "is not set".to_owned(),
            })?;
        let url_shown = redact(&url);
        tokio::runtime::Handle::try_current().map_err(|_| BrokerError::NoRuntime)?;
        let client = redis::Client::open(url.as_str()).map_err(|e| BrokerError::InvalidUrl {
            url: url_shown.clone(),
            source: Box::new(e),
        })?;
        let id = ServerId::random()?;
        let (queue, rx) = mpsc::channel(config.queue_size);
        let shared = Arc::new(Shared {
            id,
            keys: Keys::new(&config.prefix),
            local: LocalHub::new(config.slow_subscriber.into()),
            config,
            url_shown,
            client,
            index: Mutex::new(PresenceIndex::default()),
            presence_dirty: Notify::new(),
            check: Notify::new(),
            queue,
            connected: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            conn: Mutex::new(None),
            counters: Counters::default(),
            budget,
            refusals: Mutex::new((None, 0)),
        });
        let fail = |e: tasks::Failure| match e {
            tasks::Failure::Timeout => BrokerError::Timeout {
                url: shared.url_shown.clone(),
                timeout: shared.config.command_timeout,
            },
            tasks::Failure::Redis(e) => BrokerError::Connect {
                url: shared.url_shown.clone(),
                source: Box::new(e),
            },
        };
        let mut conn = tasks::open_connection(&shared).await.map_err(fail)?;
        let servers = tasks::announce(&shared, &mut conn).await.map_err(fail)?;
        let pubsub = tasks::open_subscription(&shared).await.map_err(fail)?;
        shared.set_conn(Some(conn.clone()));
        shared.subscribed.store(true, Ordering::Release);

        let (stop, stop_rx) = watch::channel(false);
        let writer = tokio::spawn(tasks::run_writer(
            Arc::clone(&shared),
            rx,
            conn,
            servers,
            stop_rx.clone(),
        ));
        let subscriber = tokio::spawn(tasks::run_subscriber(Arc::clone(&shared), pubsub, stop_rx));
        tracing::info!(
            server = %shared.id,
            redis = %shared.url_shown,
            prefix = %shared.config.prefix,
            "broker: connected to Redis"
        );
        Ok(Self {
            handle: Arc::new(Handle {
                shared,
                stop,
                writer: Mutex::new(Some(writer)),
                subscriber: Mutex::new(Some(subscriber)),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// A [`Hub`] over this broker, for the server's builder.
    pub fn hub(&self) -> Hub {
        Hub::new(self.clone())
    }

    /// This server's id.
    pub fn server_id(&self) -> ServerId {
        self.shared().id
    }

    /// The address other servers reach local connection `id` at.
    pub fn addr_of(&self, id: ConnectionId) -> ConnectionAddr {
        ConnectionAddr::new(self.shared().id, id)
    }

    /// Sends to one connection on any server: delivered at once when it is
    /// local, else forwarded (the owning server delivers it, or drops it
    /// when the connection is gone). Returns local deliveries.
    ///
    /// # Errors
    /// [`HubError::Unavailable`] when a remote address cannot be forwarded
    /// now.
    pub fn send_to(
        &self,
        addr: &ConnectionAddr,
        msg: impl Into<Message>,
    ) -> Result<usize, HubError> {
        let s = self.shared();
        let msg = msg.into();
        if addr.server == s.id {
            let id = ConnectionId::from_raw(addr.id);
            return s.local.publish(&Target::Connection(id), msg);
        }
        s.forward(Route::Connection(*addr), msg, None).map(|()| 0)
    }

    /// Members of `channel` on this server only (never fails).
    pub fn local_members(&self, channel: &str) -> Vec<Member> {
        let s = self.shared();
        s.local
            .local_members(channel)
            .into_iter()
            .map(|m| s.member_addr(m))
            .collect()
    }

    /// Connection state and counters.
    pub fn status(&self) -> BrokerStatus {
        let s = self.shared();
        let c = &s.counters;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BrokerStatus {
            server: s.id,
            connected: s.connected.load(Ordering::Acquire),
            subscribed: s.subscribed.load(Ordering::Acquire),
            queued: s.config.queue_size - s.queue.capacity(),
            forwarded: n(&c.forwarded),
            refused: n(&c.refused),
            lost: n(&c.lost),
            received: n(&c.received),
            missed: n(&c.missed),
            malformed: n(&c.malformed),
        }
    }

    /// Stops forwarding, writes the publications already accepted, removes
    /// this server's presence entries from Redis at once, and stops the
    /// background tasks. Local delivery goes on; later publications are
    /// refused with [`HubError::Unavailable`]. Waits at most about twice
    /// `command_timeout`; calling it again does nothing.
    pub async fn shutdown(&self) {
        let s = self.shared();
        if s.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.handle.stop.send(true);
        let writer = lock(&self.handle.writer).take();
        if let Some(mut writer) = writer {
            let limit = s.config.command_timeout * 2;
            if tokio::time::timeout(limit, &mut writer).await.is_err() {
                writer.abort();
                tracing::warn!(server = %s.id, "broker: shutdown cleanup did not finish in time; presence entries will expire");
            }
        }
        if let Some(sub) = lock(&self.handle.subscriber).take() {
            sub.abort();
        }
        s.set_conn(None);
        s.subscribed.store(false, Ordering::Release);
        tracing::info!(status = %self.status(), "broker: shut down");
    }
}

#[ws_core::async_trait]
impl HubBackend for RedisHub {
    fn register(&self, conn: &Connection) {
        let s = self.shared();
        let value = presence::stored_value(conn);
        let mut ix = s.index();
        s.local.register(conn);
        ix.register(conn.id(), value);
    }

    fn unregister(&self, id: ConnectionId) {
        let s = self.shared();
        let mut ix = s.index();
        s.local.unregister(id);
        let changed = ix.unregister(id.get());
        drop(ix);
        if changed {
            s.presence_dirty.notify_one();
        }
    }

    fn refresh(&self, conn: &Connection) {
        let s = self.shared();
        let value = presence::stored_value(conn);
        let mut ix = s.index();
        s.local.refresh(conn);
        let changed = ix.refresh(conn.id().get(), value);
        drop(ix);
        if changed {
            s.presence_dirty.notify_one();
        }
    }

    fn join(&self, conn: &Connection, channel: &str) -> Result<(), HubError> {
        validate_channel(channel)?;
        let s = self.shared();
        let mut ix = s.index();
        s.local.join(conn, channel)?;
        let changed = ix.join(conn.id().get(), channel);
        drop(ix);
        if changed {
            s.presence_dirty.notify_one();
        }
        Ok(())
    }

    fn leave(&self, conn: ConnectionId, channel: &str) {
        let s = self.shared();
        let mut ix = s.index();
        s.local.leave(conn, channel);
        let changed = ix.leave(conn.get(), channel);
        drop(ix);
        if changed {
            s.presence_dirty.notify_one();
        }
    }

    /// Delivers to local connections at once, then forwards channel and user
    /// publications to the other servers. A [`Target::Connection`] names a
    /// connection of this process and is never forwarded (use
    /// [`RedisHub::send_to`] for other servers).
    ///
    /// `Ok(n)`: `n` local deliveries, and the publication is queued for
    /// Redis. `Err(Unavailable)`: local subscribers got it, other servers
    /// will not (Redis unreachable, queue full, or shut down).
    fn publish(&self, target: &Target, msg: Message) -> Result<usize, HubError> {
        let s = self.shared();
        let Some(route) = route_of(target)? else {
            return s.local.publish(target, msg);
        };
        let delivered = s.local.publish(target, msg.clone())?;
        s.forward(route, msg, None)?;
        Ok(delivered)
    }

    /// Like [`publish`](Self::publish), then waits until Redis answered the
    /// `PUBLISH`, at most `command_timeout`.
    ///
    /// `Ok(n)`: `n` local deliveries, and Redis has handed the publication
    /// to every server subscribed now. `Err(Unavailable)`: local
    /// subscribers got it; Redis refused it, was unreachable, or did not
    /// answer in time (it may still arrive, at most once, on the others).
    async fn publish_confirmed(&self, target: &Target, msg: Message) -> Result<usize, HubError> {
        let s = self.shared();
        let Some(route) = route_of(target)? else {
            return s.local.publish(target, msg);
        };
        let delivered = s.local.publish(target, msg.clone())?;
        let (ack, answer) = oneshot::channel();
        s.forward(route, msg, Some(ack))?;
        s.confirmation(answer).await?;
        Ok(delivered)
    }

    /// Members on this server (from memory) and on every other live server
    /// (from Redis), sorted; `connection` is `<server>/<id>`.
    async fn presence(&self, channel: &str) -> Result<Vec<Member>, HubError> {
        validate_channel(channel)?;
        let s = self.shared();
        let mut members = self.local_members(channel);
        let conn = lock(&s.conn).clone().ok_or_else(|| {
            HubError::Unavailable(format!("Redis at {} is unreachable", s.url_shown))
        })?;
        let remote = tokio::time::timeout(
            s.config.command_timeout,
            presence::read_remote(conn, &s.keys, &s.id, channel),
        )
        .await
        .map_err(|_| HubError::Unavailable("Redis did not answer in time".to_owned()))?
        .map_err(|e| HubError::Unavailable(format!("Redis: {e}")))?;
        members.extend(remote);
        members.sort();
        Ok(members)
    }
}

/// Where a publication to `target` goes on the bus; `None` for a local
/// connection (never forwarded).
fn route_of(target: &Target) -> Result<Option<Route>, HubError> {
    Ok(match target {
        Target::Channel(c) => {
            validate_channel(c)?;
            Some(Route::Channel(c.clone()))
        }
        Target::User(u) => Some(Route::User(u.clone())),
        _ => None,
    })
}

/// `url` without a password: `redis://user:secret@host` → `redis://user:***@host`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user = &rest[..at];
    let user = user.split_once(':').map_or(user, |(u, _)| u);
    let shown_user = if user.is_empty() {
        "***".to_owned()
    } else {
        format!("{user}:***")
    };
    format!("{scheme}://{shown_user}@{}", &rest[at + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("redis://:s3cret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(
            redact("rediss://app:s3cret@host/1"),
            "rediss://app:***@host/1"
        );
        assert_eq!(redact("unix:///run/redis.sock"), "unix:///run/redis.sock");
    }
}
