//! A component that sends every message to everyone on its route.

use std::borrow::Cow;

use ws_core::{BoxError, Connection, HubError, Message, SyncComponent};

/// Every data message sent on `/broadcast` goes to every connection on it,
/// the sender included, unchanged (text stays text, binary stays binary).
/// With a broker, connections on other servers get it too. It is the
/// fan-out the benchmark measures.
#[derive(Clone, Copy, Debug, Default)]
pub struct Broadcast;

/// The hub channel `Broadcast` uses.
pub const BROADCAST_CHANNEL: &str = "broadcast";

#[ws_core::async_trait]
impl SyncComponent for Broadcast {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("demo_echo::Broadcast")
    }

    fn route(&self) -> Option<Cow<'static, str>> {
        Some(Cow::Borrowed("/broadcast"))
    }

    async fn on_open(&self, conn: &Connection) -> Result<(), BoxError> {
        conn.join(BROADCAST_CHANNEL)?;
        Ok(())
    }

    /// Publishes at once: no future per message.
    fn on_message(&self, conn: &Connection, msg: Message) -> Result<(), BoxError> {
        match conn.hub().publish(BROADCAST_CHANNEL, msg) {
            // Local members got it; the broker reports what it could not forward.
            Ok(_) | Err(HubError::Unavailable(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ws_core::testing::{Received, TestClient};
    use ws_core::{HandshakeInfo, Hub};

    use super::*;

    #[tokio::test]
    async fn everyone_gets_every_message() {
        let hub = Hub::local();
        let info = || HandshakeInfo::new(([127, 0, 0, 1], 1).into(), "/broadcast");
        let mut a = TestClient::open_with_hub(Arc::new(Broadcast), info(), hub.clone())
            .await
            .unwrap();
        let mut b = TestClient::open_with_hub(Arc::new(Broadcast), info(), hub.clone())
            .await
            .unwrap();
        a.send(vec![1u8, 2]).await.unwrap();
        for c in [&mut a, &mut b] {
            assert_eq!(c.recv().await, Some(Received::Message(vec![1u8, 2].into())));
        }
        b.close().await;
        a.send("only a").await.unwrap();
        assert_eq!(a.recv().await, Some(Received::Message("only a".into())));
    }
}
