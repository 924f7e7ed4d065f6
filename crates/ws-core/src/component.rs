//! The [`Component`] trait and [`component_fn`].

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use crate::connection::Connection;
use crate::context::ServerContext;
use crate::message::{CloseReason, Message};

/// The error type components return; anything that is an error will do.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A WebSocket application mounted on one route (Ratchet's
/// `MessageComponentInterface`).
///
/// The server calls `on_open` once, then `on_message` for each message in the
/// order received — never two at a time for one connection — and `on_close`
/// exactly once for every connection that was opened, whatever ended it.
/// An error from `on_open` or `on_message` goes to `on_error`, and the
/// connection is closed with 1011; an error from `on_message` that is a
/// [`SendError::Full`](crate::SendError::Full) (a `conn.send(…)?` that found
/// the outgoing queue full: the client reads too slowly) or a
/// [`SendError::OverBudget`](crate::SendError::OverBudget) closes it with
/// 1013.
#[async_trait::async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a ws-provider component",
    label = "needs `impl ws_core::Component for {Self}`",
    note = "implement `on_message` inside `#[ws_core::async_trait] impl Component for {Self} {{ … }}`, or wrap a closure with `ws_core::component_fn`"
)]
pub trait Component: Send + Sync + 'static {
    /// The route this component is mounted on, before the server's prefix
    /// (`/chat/{room}`); a leading `/` is added when missing. `None` uses
    /// [`default_route`](crate::default_route) of [`name`](Self::name).
    fn route(&self) -> Option<Cow<'static, str>> {
        None
    }

    /// The component's name in listings and the source of its default route:
    /// its Rust type path by default. That is where the type is *defined*
    /// (`my_crate::private_mod::Chat`); return the public path instead to
    /// keep the default route stable when modules move.
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(std::any::type_name::<Self>())
    }

    /// Subprotocols this component speaks, most preferred first. The server
    /// picks the first one the client offers.
    fn subprotocols(&self) -> Vec<Cow<'static, str>> {
        Vec::new()
    }

    /// Called once before the server accepts connections: register timers,
    /// signal handlers and background tasks (the original's `configureLoop`).
    fn configure(self: Arc<Self>, ctx: &mut ServerContext) {
        let _ = ctx;
    }

    /// A connection was opened.
    async fn on_open(&self, conn: &Connection) -> Result<(), BoxError> {
        let _ = conn;
        Ok(())
    }

    /// A message arrived, to be handled now, without awaiting, if this
    /// component can: the fast path for components whose message handling
    /// never waits (sending to connections and publishing are synchronous in
    /// ws-core). It spares the boxed future of
    /// [`on_message`](Self::on_message), one allocation per message.
    ///
    /// Return [`Handled::Done`] when the message is dealt with, or hand it
    /// on with [`Handled::Later`] to have `on_message` called with it (the
    /// default, for every message). The rules of `on_message` hold: in
    /// order, one at a time, and an error or a panic goes to `on_error` and
    /// closes the connection with 1011.
    ///
    /// ```
    /// use ws_core::{BoxError, Component, Connection, Handled, Message};
    ///
    /// struct Echo;
    ///
    /// #[ws_core::async_trait]
    /// impl Component for Echo {
    ///     fn on_message_now(&self, conn: &Connection, msg: Message) -> Result<Handled, BoxError> {
    ///         conn.send(msg)?;
    ///         Ok(Handled::Done)
    ///     }
    ///
    ///     // Only called for what `on_message_now` hands on: here, nothing.
    ///     async fn on_message(&self, conn: &Connection, msg: Message) -> Result<(), BoxError> {
    ///         conn.send(msg)?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// use ws_core::testing::{Received, TestClient};
    ///
    /// let mut client = TestClient::open(Echo, "/echo").await?;
    /// client.send("hi").await?;
    /// assert_eq!(client.recv().await, Some(Received::Message(Message::from("hi"))));
    /// # Ok(())
    /// # }
    /// ```
    fn on_message_now(&self, conn: &Connection, msg: Message) -> Result<Handled, BoxError> {
        let _ = conn;
        Ok(Handled::Later(msg))
    }

    /// A message arrived (one that [`on_message_now`](Self::on_message_now)
    /// handed on: by default, every message).
    async fn on_message(&self, conn: &Connection, msg: Message) -> Result<(), BoxError>;

    /// The connection ended; called exactly once per opened connection.
    async fn on_close(&self, conn: &Connection, reason: CloseReason) {
        let _ = (conn, reason);
    }

    /// The aspect `name` of the connection changed while it was open (for
    /// example, configured to downgrade to anonymous when the session ends).
    async fn on_aspect_change(&self, conn: &Connection, name: &str) {
        let _ = (conn, name);
    }

    /// `on_open` or `on_message` failed (or panicked). The connection is closed
    /// with 1011 afterwards.
    async fn on_error(&self, conn: &Connection, error: BoxError) {
        let _ = (conn, error);
    }
}

/// What [`Component::on_message_now`] did with a message.
#[derive(Debug)]
#[must_use]
pub enum Handled {
    /// Dealt with: [`Component::on_message`] is not called.
    Done,
    /// Not handled yet: the server calls [`Component::on_message`] with it.
    Later(Message),
}

/// A component made of one closure for `on_message`, mounted on `route`.
///
/// ```
/// use ws_core::{component_fn, Component, Connection, Message};
///
/// let echo = component_fn("/echo", |conn: Connection, msg: Message| async move {
///     conn.send(msg)?;
///     Ok(())
/// });
/// assert_eq!(echo.route().as_deref(), Some("/echo"));
/// ```
pub fn component_fn<F, Fut>(route: impl Into<Cow<'static, str>>, f: F) -> FnComponent<F>
where
    F: Fn(Connection, Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    FnComponent {
        route: route.into(),
        f,
    }
}

/// The component [`component_fn`] builds.
#[derive(Clone)]
pub struct FnComponent<F> {
    route: Cow<'static, str>,
    f: F,
}

impl<F> std::fmt::Debug for FnComponent<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnComponent")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl<F, Fut> Component for FnComponent<F>
where
    F: Fn(Connection, Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    fn route(&self) -> Option<Cow<'static, str>> {
        Some(self.route.clone())
    }

    fn name(&self) -> Cow<'static, str> {
        Cow::Owned(format!("component_fn({})", self.route))
    }

    async fn on_message(&self, conn: &Connection, msg: Message) -> Result<(), BoxError> {
        (self.f)(conn.clone(), msg).await
    }
}
