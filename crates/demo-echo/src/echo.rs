//! The echo component.

use std::borrow::Cow;

use ws_core::{BoxError, Connection, Message, SyncComponent};

/// Sends every message back unchanged, on `/echo`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo;

#[ws_core::async_trait]
impl SyncComponent for Echo {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("demo_echo::Echo")
    }

    fn route(&self) -> Option<Cow<'static, str>> {
        Some(Cow::Borrowed("/echo"))
    }

    /// Echoes at once: no future per message.
    fn on_message(&self, conn: &Connection, msg: Message) -> Result<(), BoxError> {
        conn.send(msg)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ws_core::testing::{Received, TestClient};

    use super::*;

    #[tokio::test]
    async fn echoes_text_and_binary() {
        let mut c = TestClient::open(Echo, "/echo").await.unwrap();
        c.send("hello").await.unwrap();
        c.send(vec![0u8, 1, 2]).await.unwrap();
        assert_eq!(c.recv().await, Some(Received::Message("hello".into())));
        assert_eq!(
            c.recv().await,
            Some(Received::Message(vec![0u8, 1, 2].into()))
        );
        c.close().await;
    }
}
