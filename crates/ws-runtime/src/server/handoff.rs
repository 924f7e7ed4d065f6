//! From the 101 to the session: waiting for hyper to hand the connection
//! back, and building the session without awaiting anything.

use std::sync::{Arc, Mutex};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use ws_core::__runtime::{self, Membership};
use ws_core::HandshakeInfo;
use ws_ratelimit::ConnectionPermit;

use super::Shared;
use super::upgrade::detached;
use crate::auth;
use crate::authenticate::Revalidate;
use crate::io::Io;
use crate::read_ahead::ReadAhead;
use crate::registry::Held;
use crate::session::{self, MessageGuard};

/// A session waiting for hyper to hand the connection over.
pub(super) struct PendingSession {
    pub(super) upgrade: hyper::upgrade::OnUpgrade,
    pub(super) upgrading: Box<Upgrading>,
}

/// Where the upgrade leaves its [`PendingSession`] for the task that served
/// the handshake (a request extension, so it must be `Clone`): the session
/// then runs on that task, and a connection costs one task, not two.
#[derive(Clone, Default)]
pub(super) struct SessionSlot(Arc<Mutex<Option<PendingSession>>>);

impl SessionSlot {
    pub(super) fn put(&self, pending: PendingSession) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(pending);
    }

    pub(super) fn take(&self) -> Option<PendingSession> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// Waits for the upgraded connection and runs its session.
pub(super) async fn run_pending(shared: Arc<Shared>, pending: PendingSession) {
    let session = upgraded(pending)
        .await
        .and_then(|(upgraded, upgrading)| open_session(&shared, upgraded, upgrading));
    // Only the box's pointer stays in the task while the session runs.
    if let Some(session) = session {
        session::run(session).await;
    }
}

/// Waits for hyper to hand over the upgraded connection.
pub(super) async fn upgraded(pending: PendingSession) -> Option<(Upgraded, Box<Upgrading>)> {
    let PendingSession { upgrade, upgrading } = pending;
    match upgrade.await {
        Ok(upgraded) => Some((upgraded, upgrading)),
        Err(e) => {
            let client = upgrading.info.client_addr;
            tracing::debug!(%client, error = %e, "upgrade failed");
            // The permits drop here: the places are released.
            None
        }
    }
}

/// What an accepted handshake hands to its session.
pub(super) struct Upgrading {
    pub(super) info: HandshakeInfo,
    pub(super) index: usize,
    pub(super) permits: Vec<ConnectionPermit>,
    pub(super) revalidators: Vec<Box<dyn Revalidate>>,
}

/// Builds the session: its stream, connection, limits and revalidation,
/// without awaiting anything (so none of it stays in the connection's task
/// but the box).
pub(super) fn open_session<'a>(
    shared: &'a Shared,
    upgraded: Upgraded,
    upgrading: Box<Upgrading>,
) -> Option<Box<session::Session<'a>>> {
    let Upgrading {
        mut info,
        index,
        permits,
        revalidators,
    } = *upgrading;
    let route = &shared.mounted[index];
    // Take back the plain stream so the session does not pay for hyper's
    // boxed IO on every read and write.
    let Ok(parts) = upgraded.downcast::<TokioIo<Io>>() else {
        tracing::error!("upgraded connection has an unexpected IO type");
        return None;
    };
    let io = parts.io.into_inner();
    // `read_buf` and the header values point into hyper's 8 KiB read buffers;
    // holding either would pin that memory for the connection's whole life.
    let io = ReadAhead::new(
        io,
        shared.config.websocket.read_buffer_size,
        shared.config.websocket.write_buffer_size,
        &parts.read_buf,
    );
    drop(parts.read_buf);
    // The session's one task reads and writes it (see `session`): no waker
    // proxies (our patch of tokio-tungstenite, vendor/README.md).
    let ws = WebSocketStream::from_raw_socket_in_one_task(io, Role::Server, Some(route.ws_config));
    info.headers = detached(&info.headers);
    let (conn, outbox) = __runtime::open(
        info,
        shared.config.websocket.outgoing_queue,
        shared.hub.clone(),
        shared.budget.clone(),
    );
    // In the hub (channels, users, presence) until the session ends.
    let membership = Some(Membership::register(&conn));
    let client = conn.client_addr();
    let entry = shared.sessions.enter(&conn);
    let guard = MessageGuard::new(
        route.info.max_messages_per_second,
        shared
            .address_messages
            .rate_for(client.ip(), std::time::Instant::now()),
        shared.config.max_messages_per_address_per_second,
    );
    let auth = shared.auth.as_deref();
    Some(Box::new(session::Session {
        ws,
        conn,
        outbox,
        membership,
        component: Arc::clone(&route.component),
        cfg: &shared.session,
        guard,
        shutting_down: &shared.sessions.closing,
        // Re-checks the sessions until the session ends (then dropped:
        // aborted).
        watch: auth.and_then(|auth| auth::watch(auth, revalidators)),
        auth,
        held: Held::new(permits, entry),
        timer: session::Timer::OFF,
        budget: &shared.budget,
        read_held: 0,
    }))
}
