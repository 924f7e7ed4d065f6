//! A component that uses `configure` for a periodic timer.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ws_core::{
    BoxError, CloseReason, Component, Connection, ConnectionId, Message, SendError, ServerContext,
};

/// Sends `tick <milliseconds since the Unix epoch>` to each of its
/// connections every period (one second by default), on `/ticker`.
/// Messages from clients are ignored.
#[derive(Debug)]
pub struct Ticker {
    period: Duration,
    open: Mutex<HashMap<ConnectionId, Connection>>,
}

impl Default for Ticker {
    fn default() -> Self {
        Self::with_period(Duration::from_secs(1))
    }
}

impl Ticker {
    /// A ticker with another period.
    pub fn with_period(period: Duration) -> Self {
        Self {
            period,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Connection>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one tick to every connection; a client whose queue is full skips it.
    pub fn tick(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let msg = Message::text(format!("tick {now}"));
        for conn in self.connections().values() {
            // A full queue skips this tick; a closed connection is removed in on_close.
            let _: Result<(), SendError> = conn.send(msg.clone());
        }
    }
}

#[ws_core::async_trait]
impl Component for Ticker {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("demo_echo::Ticker")
    }

    fn route(&self) -> Option<Cow<'static, str>> {
        Some(Cow::Borrowed("/ticker"))
    }

    fn configure(self: Arc<Self>, ctx: &mut ServerContext) {
        let period = self.period;
        ctx.every(period, move || self.tick());
    }

    async fn on_open(&self, conn: &Connection) -> Result<(), BoxError> {
        self.connections().insert(conn.id(), conn.clone());
        Ok(())
    }

    async fn on_message(&self, _conn: &Connection, _msg: Message) -> Result<(), BoxError> {
        Ok(())
    }

    async fn on_close(&self, conn: &Connection, _reason: CloseReason) {
        self.connections().remove(&conn.id());
    }
}

#[cfg(test)]
mod tests {
    use ws_core::testing::{Received, TestClient};

    use super::*;

    #[tokio::test]
    async fn ticks_reach_open_connections_only() {
        let ticker = Arc::new(Ticker::default());
        let mut c = TestClient::open_with(
            ticker.clone(),
            ws_core::HandshakeInfo::new(([127, 0, 0, 1], 1).into(), "/ticker"),
        )
        .await
        .unwrap();
        ticker.tick();
        let Some(Received::Message(m)) = c.recv().await else {
            panic!("no tick")
        };
        let text = m.as_text().unwrap();
        assert!(text.starts_with("tick "), "{text}");
        assert!(text[5..].parse::<u128>().unwrap() > 1_600_000_000_000);
        c.close().await;
        assert!(ticker.connections().is_empty());
    }

    #[test]
    fn configure_registers_one_timer() {
        let mut ctx = ServerContext::new("/ticker");
        Arc::new(Ticker::with_period(Duration::from_millis(10))).configure(&mut ctx);
        let tasks = ws_core::testing::tasks(ctx);
        assert_eq!(tasks.len(), 1);
        assert!(
            matches!(tasks[0], ws_core::testing::Task::Every { period, .. } if period == Duration::from_millis(10))
        );
    }
}
