//! The runtime's side of ws-core: **not for components.**
//!
//! What a server (ws-runtime) needs to drive connections and components —
//! building a connection with its outgoing queue, registering it with the
//! hub and unregistering it, writing its queue, replacing its aspects,
//! running what components registered at start-up, the synchronous fast
//! path of [`SyncComponent`](crate::SyncComponent) — and nothing a
//! component may call: a component that reached in here could unregister
//! other connections or change who is logged in. Hidden from the
//! documentation and named so; test drivers (ws-core's
//! [`testing`](crate::testing), the broker's tests) use it as a runtime
//! would.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::aspect::UserAspect;
use crate::budget::MemoryBudget;
use crate::component::{BoxError, Component, Sealed};
use crate::connection::{Connection, HandshakeInfo};
use crate::context::ServerContext;
use crate::hub::{Hub, HubBackend};
use crate::message::Message;

pub use crate::component::Handled;
pub use crate::connection::{Outbox, Outgoing, Serving};
pub use crate::context::{BackgroundTask, Task};

/// A connection and the receiving end of its outgoing queue, holding at
/// most `queue_capacity` messages (at least 1), whose queued bytes count
/// against `budget`. The connection uses `hub` for `conn.hub()`, `join` and
/// `leave`; it is not registered with it (see [`Membership`]).
pub fn open(
    info: HandshakeInfo,
    queue_capacity: usize,
    hub: Hub,
    budget: MemoryBudget,
) -> (Connection, Outbox) {
    Connection::open(info, queue_capacity, hub, budget)
}

/// [`open`] without a budget, registered with `hub` until the returned
/// outbox is marked closed or dropped: a runtime's life-cycle in one value,
/// for test drivers.
pub fn open_registered(
    info: HandshakeInfo,
    queue_capacity: usize,
    hub: Hub,
) -> (Connection, RegisteredOutbox) {
    let (conn, outbox) = open(info, queue_capacity, hub, MemoryBudget::unlimited());
    let membership = Membership::register(&conn);
    (conn, RegisteredOutbox { outbox, membership })
}

/// The backend behind `hub`.
pub fn backend(hub: &Hub) -> &Arc<dyn HubBackend> {
    hub.backend()
}

/// Replaces the aspect `name` of `conn`, returning the previous one. The
/// hub is not told: call [`HubBackend::refresh`] after.
pub fn set_aspect(conn: &Connection, name: &str, aspect: UserAspect) -> Option<Arc<UserAspect>> {
    conn.set_aspect(name, aspect)
}

/// The context handed to [`Component::configure`], sharing the server's hub.
pub fn context(route: impl Into<String>, hub: Hub) -> ServerContext {
    ServerContext::with_hub(route, hub)
}

/// What the component registered in `ctx`, for the server to run.
pub fn into_tasks(ctx: ServerContext) -> Vec<Task> {
    ctx.into_tasks()
}

/// Hands `msg` to `component` at once if it is a
/// [`SyncComponent`](crate::SyncComponent) (no future is made), or hands it
/// back ([`Handled::Later`]) for [`Component::on_message`].
///
/// # Errors
/// What the component's `on_message` returned.
#[inline]
pub fn on_message_now(
    component: &dyn Component,
    conn: &Connection,
    msg: Message,
) -> Result<Handled, BoxError> {
    component.__on_message_now(Sealed(()), conn, msg)
}

/// A connection's registration with the backend of its hub: registered
/// when made, unregistered exactly once, by [`leave`](Self::leave) or on
/// drop.
#[derive(Debug)]
pub struct Membership {
    conn: Option<Connection>,
}

impl Membership {
    /// Registers `conn` with the backend of its hub.
    pub fn register(conn: &Connection) -> Self {
        conn.hub().backend().register(conn);
        Self {
            conn: Some(conn.clone()),
        }
    }

    /// Unregisters the connection (it leaves every channel), if not done yet.
    pub fn leave(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.hub().backend().unregister(conn.id());
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.leave();
    }
}

/// An [`Outbox`] with the [`Membership`] of its connection: marking it
/// closed, or dropping it, unregisters the connection too. Made by
/// [`open_registered`].
#[derive(Debug)]
pub struct RegisteredOutbox {
    outbox: Outbox,
    membership: Membership,
}

impl RegisteredOutbox {
    /// [`Outbox::mark_closed`], then [`Membership::leave`].
    pub fn mark_closed(&mut self) {
        self.outbox.mark_closed();
        self.membership.leave();
    }
}

impl Deref for RegisteredOutbox {
    type Target = Outbox;
    fn deref(&self) -> &Outbox {
        &self.outbox
    }
}

impl DerefMut for RegisteredOutbox {
    fn deref_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }
}

impl Drop for RegisteredOutbox {
    fn drop(&mut self) {
        // As before: the queue is closed before the connection leaves.
        self.outbox.mark_closed();
    }
}
