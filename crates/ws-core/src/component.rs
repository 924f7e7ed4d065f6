//! The [`Component`] trait and [`component_fn`].

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
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
///
/// A component whose message handling never waits (sending to connections
/// and publishing are synchronous) implements [`SyncComponent`] instead,
/// whose `on_message` is a plain function: the server then spends no future
/// on a message. Every `SyncComponent` is a `Component`.
#[async_trait::async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a ws-provider component",
    label = "needs `impl ws_core::Component for {Self}` (or `ws_core::SyncComponent`)",
    note = "implement `name` and `on_message` inside `#[ws_core::async_trait] impl Component for {Self} {{ … }}`, or wrap a closure with `ws_core::component_fn`"
)]
pub trait Component: Send + Sync + 'static {
    /// The component's name in listings and logs, and the source of its
    /// default route (see [`route`](Self::route)): a path such as
    /// `"vendor_extension::Chat"`, written out so that it stays what it is
    /// when modules move (the default route is a public URL).
    fn name(&self) -> Cow<'static, str>;

    /// The route this component is mounted on, before the server's prefix
    /// (`/chat/{room}`); a leading `/` is added when missing. `None` uses
    /// [`default_route`](crate::default_route) of [`name`](Self::name):
    /// `vendor_extension::Chat` is mounted on `/vendor_extension_Chat`.
    fn route(&self) -> Option<Cow<'static, str>> {
        None
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

    /// A message arrived.
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

    /// The runtime's fast path (see [`SyncComponent`]): handles `msg` now
    /// when the component can, else hands it back for `on_message`. Only
    /// ws-core can implement or call it (the token is private to it); the
    /// runtime calls it through `__runtime::on_message_now`.
    #[doc(hidden)]
    fn __on_message_now(
        &self,
        _: Sealed,
        conn: &Connection,
        msg: Message,
    ) -> Result<Handled, BoxError> {
        let _ = conn;
        Ok(Handled::Later(msg))
    }
}

/// A component whose message handling never waits: the same hooks as
/// [`Component`], but `on_message` is a plain function. Sending to
/// connections and publishing never wait in ws-core, so an echo, a
/// broadcast or a chat that only publishes is one; the server then calls
/// `on_message` without allocating a future per message.
///
/// Every `SyncComponent` is a [`Component`] (implement one of the two): the
/// rules of [`Component`] hold, an error or a panic in `on_message` goes to
/// `on_error` and closes the connection with 1011 (1013 for a full queue).
///
/// ```
/// use ws_core::{BoxError, Connection, Message, SyncComponent};
///
/// struct Echo;
///
/// #[ws_core::async_trait]
/// impl SyncComponent for Echo {
///     fn name(&self) -> std::borrow::Cow<'static, str> {
///         "my_app::Echo".into()
///     }
///
///     fn on_message(&self, conn: &Connection, msg: Message) -> Result<(), BoxError> {
///         conn.send(msg)?;
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// use ws_core::testing::{Received, TestClient};
///
/// let mut client = TestClient::open(Echo, "/my_app_Echo").await?;
/// client.send("hi").await?;
/// assert_eq!(client.recv().await, Some(Received::Message(Message::from("hi"))));
/// # Ok(())
/// # }
/// ```
#[async_trait::async_trait]
pub trait SyncComponent: Send + Sync + 'static {
    /// See [`Component::name`].
    fn name(&self) -> Cow<'static, str>;

    /// See [`Component::route`].
    fn route(&self) -> Option<Cow<'static, str>> {
        None
    }

    /// See [`Component::subprotocols`].
    fn subprotocols(&self) -> Vec<Cow<'static, str>> {
        Vec::new()
    }

    /// See [`Component::configure`].
    fn configure(self: Arc<Self>, ctx: &mut ServerContext) {
        let _ = ctx;
    }

    /// See [`Component::on_open`].
    async fn on_open(&self, conn: &Connection) -> Result<(), BoxError> {
        let _ = conn;
        Ok(())
    }

    /// A message arrived: handle it without waiting.
    fn on_message(&self, conn: &Connection, msg: Message) -> Result<(), BoxError>;

    /// See [`Component::on_close`].
    async fn on_close(&self, conn: &Connection, reason: CloseReason) {
        let _ = (conn, reason);
    }

    /// See [`Component::on_aspect_change`].
    async fn on_aspect_change(&self, conn: &Connection, name: &str) {
        let _ = (conn, name);
    }

    /// See [`Component::on_error`].
    async fn on_error(&self, conn: &Connection, error: BoxError) {
        let _ = (conn, error);
    }
}

/// The future every asynchronous hook returns (what `async_trait` makes of
/// an `async fn`).
type Hook<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// Written out rather than through `async_trait`, which would box each
// hook's future a second time.
impl<T: SyncComponent> Component for T {
    fn name(&self) -> Cow<'static, str> {
        SyncComponent::name(self)
    }

    fn route(&self) -> Option<Cow<'static, str>> {
        SyncComponent::route(self)
    }

    fn subprotocols(&self) -> Vec<Cow<'static, str>> {
        SyncComponent::subprotocols(self)
    }

    fn configure(self: Arc<Self>, ctx: &mut ServerContext) {
        SyncComponent::configure(self, ctx);
    }

    fn on_open<'a, 'b, 'h>(&'a self, conn: &'b Connection) -> Hook<'h, Result<(), BoxError>>
    where
        'a: 'h,
        'b: 'h,
        Self: 'h,
    {
        SyncComponent::on_open(self, conn)
    }

    fn on_message<'a, 'b, 'h>(
        &'a self,
        conn: &'b Connection,
        msg: Message,
    ) -> Hook<'h, Result<(), BoxError>>
    where
        'a: 'h,
        'b: 'h,
        Self: 'h,
    {
        // Not reached through a server, which calls `__on_message_now`.
        let result = SyncComponent::on_message(self, conn, msg);
        Box::pin(std::future::ready(result))
    }

    fn on_close<'a, 'b, 'h>(&'a self, conn: &'b Connection, reason: CloseReason) -> Hook<'h, ()>
    where
        'a: 'h,
        'b: 'h,
        Self: 'h,
    {
        SyncComponent::on_close(self, conn, reason)
    }

    fn on_aspect_change<'a, 'b, 'c, 'h>(
        &'a self,
        conn: &'b Connection,
        name: &'c str,
    ) -> Hook<'h, ()>
    where
        'a: 'h,
        'b: 'h,
        'c: 'h,
        Self: 'h,
    {
        SyncComponent::on_aspect_change(self, conn, name)
    }

    fn on_error<'a, 'b, 'h>(&'a self, conn: &'b Connection, error: BoxError) -> Hook<'h, ()>
    where
        'a: 'h,
        'b: 'h,
        Self: 'h,
    {
        SyncComponent::on_error(self, conn, error)
    }

    #[inline]
    fn __on_message_now(
        &self,
        _: Sealed,
        conn: &Connection,
        msg: Message,
    ) -> Result<Handled, BoxError> {
        SyncComponent::on_message(self, conn, msg).map(|()| Handled::Done)
    }
}

/// What [`Component::__on_message_now`] did with a message (the runtime's
/// business: see `__runtime::on_message_now`).
#[derive(Debug)]
#[must_use]
pub enum Handled {
    /// Dealt with: `on_message` is not called.
    Done,
    /// Not handled yet: the server calls [`Component::on_message`] with it.
    Later(Message),
}

mod sealed {
    /// The token of [`Component::__on_message_now`](super::Component::__on_message_now):
    /// public, but in a private module, so no other crate can name it, and
    /// so none can implement or call that method.
    #[derive(Clone, Copy, Debug)]
    #[allow(unreachable_pub)]
    pub struct Sealed(pub(crate) ());
}

pub(crate) use sealed::Sealed;

/// A component made of one closure for `on_message`, mounted on `route`
/// (its name is `component_fn(<route>)`).
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
