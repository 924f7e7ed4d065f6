//! Driving a component without a server, for unit tests.
//!
//! ```
//! use ws_core::testing::{Received, TestClient};
//! use ws_core::{component_fn, Connection, Message};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let echo = component_fn("/echo", |conn: Connection, msg: Message| async move {
//!     conn.send(msg)?;
//!     Ok(())
//! });
//! let mut client = TestClient::open(echo, "/echo").await.unwrap();
//! client.send("hi").await.unwrap();
//! assert_eq!(client.recv().await, Some(Received::Message("hi".into())));
//! client.close().await;
//! # }
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::__runtime::{self, Handled, Outgoing, RegisteredOutbox};
use crate::component::{BoxError, Component};
use crate::connection::{Connection, HandshakeInfo};
use crate::context::ServerContext;
use crate::hub::Hub;
use crate::message::{CloseFrame, CloseInitiator, CloseReason, Message};

pub use crate::context::Task;

/// What a component registered in `ctx` (in [`Component::configure`]), to
/// check or run in a test.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use ws_core::testing::{self, Task};
/// use ws_core::{BoxError, Component, Connection, Message, ServerContext};
///
/// struct Clock;
///
/// #[ws_core::async_trait]
/// impl Component for Clock {
///     fn name(&self) -> std::borrow::Cow<'static, str> {
///         "my_app::Clock".into()
///     }
///
///     fn configure(self: Arc<Self>, ctx: &mut ServerContext) {
///         ctx.every(Duration::from_secs(1), || {});
///     }
///
///     async fn on_message(&self, _: &Connection, _: Message) -> Result<(), BoxError> {
///         Ok(())
///     }
/// }
///
/// let mut ctx = ServerContext::new("/my_app_Clock");
/// Arc::new(Clock).configure(&mut ctx);
/// let tasks = testing::tasks(ctx);
/// assert!(matches!(tasks[..], [Task::Every { period, .. }] if period == Duration::from_secs(1)));
/// ```
pub fn tasks(ctx: ServerContext) -> Vec<Task> {
    ctx.into_tasks()
}

/// What the component sent to the test client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// A message.
    Message(Message),
    /// The component closed the connection.
    Close(CloseFrame),
}

/// A connection to one component, driven by the test: each call runs the
/// matching hook directly, and [`recv`](Self::recv) reads what the component
/// queued.
pub struct TestClient {
    component: Arc<dyn Component>,
    conn: Connection,
    outbox: RegisteredOutbox,
    pending: VecDeque<Message>,
    closed: bool,
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl TestClient {
    /// Opens a connection on `path` from 127.0.0.1 and runs `on_open`.
    ///
    /// # Errors
    /// What `on_open` returned.
    pub async fn open(component: impl Component, path: &str) -> Result<Self, BoxError> {
        let info = HandshakeInfo::new(([127, 0, 0, 1], 40000).into(), path);
        Self::open_with(Arc::new(component), info).await
    }

    /// Opens a connection with the given handshake facts and runs `on_open`.
    ///
    /// # Errors
    /// What `on_open` returned.
    pub async fn open_with(
        component: Arc<dyn Component>,
        info: HandshakeInfo,
    ) -> Result<Self, BoxError> {
        Self::open_with_hub(component, info, Hub::local()).await
    }

    /// Opens a connection registered with `hub` (share one hub between
    /// clients to test channels) and runs `on_open`.
    ///
    /// # Errors
    /// What `on_open` returned.
    pub async fn open_with_hub(
        component: Arc<dyn Component>,
        info: HandshakeInfo,
        hub: Hub,
    ) -> Result<Self, BoxError> {
        let (conn, outbox) = __runtime::open_registered(info, 1024, hub);
        component.on_open(&conn).await?;
        Ok(Self {
            component,
            conn,
            outbox,
            pending: VecDeque::new(),
            closed: false,
        })
    }

    /// The connection the component sees.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Delivers a message to `on_message` as the server does (a
    /// [`SyncComponent`](crate::SyncComponent)'s without a future).
    ///
    /// # Errors
    /// What `on_message` returned.
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<(), BoxError> {
        match __runtime::on_message_now(&*self.component, &self.conn, msg.into())? {
            Handled::Done => Ok(()),
            Handled::Later(msg) => self.component.on_message(&self.conn, msg).await,
        }
    }

    /// The next thing the component sent, if it sent it already; never
    /// waits. `None` when nothing is queued (or after the close was read).
    /// For what must be there by now — an answer from `on_message`, which
    /// [`send`](Self::send) ran to its end — so that a wrong component fails
    /// the test instead of hanging it.
    ///
    /// ```
    /// use ws_core::testing::{Received, TestClient};
    /// use ws_core::{component_fn, Connection, Message};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let echo = component_fn("/echo", |conn: Connection, msg: Message| async move {
    ///     conn.send(msg)?;
    ///     Ok(())
    /// });
    /// let mut client = TestClient::open(echo, "/echo").await.unwrap();
    /// assert_eq!(client.try_recv(), None);
    /// client.send("hi").await.unwrap();
    /// assert_eq!(client.try_recv(), Some(Received::Message("hi".into())));
    /// assert_eq!(client.try_recv(), None);
    /// # }
    /// ```
    pub fn try_recv(&mut self) -> Option<Received> {
        if let Some(m) = self.pending.pop_front() {
            return Some(Received::Message(m));
        }
        let mut buf = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        match self.outbox.poll_recv(&mut cx, &mut buf, 64) {
            Poll::Ready(Some(Outgoing::Messages(_))) => {
                self.pending.extend(buf);
                self.pending.pop_front().map(Received::Message)
            }
            Poll::Ready(Some(Outgoing::Close(frame))) => Some(Received::Close(frame)),
            Poll::Ready(None) | Poll::Pending => None,
        }
    }

    /// The next thing the component sent; `None` after its close was read.
    /// Waits when nothing is queued yet (for what a timer or another
    /// connection sends); see [`try_recv`](Self::try_recv) for what must
    /// be there already.
    pub async fn recv(&mut self) -> Option<Received> {
        if let Some(m) = self.pending.pop_front() {
            return Some(Received::Message(m));
        }
        let mut buf = Vec::new();
        match self.outbox.recv(&mut buf, 64).await? {
            Outgoing::Messages(_) => {
                self.pending.extend(buf);
                self.pending.pop_front().map(Received::Message)
            }
            Outgoing::Close(frame) => Some(Received::Close(frame)),
        }
    }

    /// Ends the connection as a client close would, running `on_close` once.
    pub async fn close(mut self) {
        self.finish().await;
    }

    async fn finish(&mut self) {
        if !self.closed {
            self.closed = true;
            self.outbox.mark_closed();
            let reason = CloseReason {
                frame: None,
                initiator: CloseInitiator::Client,
            };
            self.component.on_close(&self.conn, reason).await;
        }
    }
}
