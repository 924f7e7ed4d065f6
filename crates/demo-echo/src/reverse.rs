//! A component on its default route.

use ws_core::{BoxError, Component, Connection, Message};

/// Answers text reversed (by character) and binary reversed (by byte). It
/// declares no route, so it is mounted on its default one,
/// `/demo_echo_Reverse`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reverse;

#[ws_core::async_trait]
impl Component for Reverse {
    // The public path (the type is defined in the private module
    // `demo_echo::reverse`): the default route is `/demo_echo_Reverse`.
    fn name(&self) -> std::borrow::Cow<'static, str> {
        "demo_echo::Reverse".into()
    }

    async fn on_message(&self, conn: &Connection, msg: Message) -> Result<(), BoxError> {
        let reply = match msg {
            Message::Text(t) => Message::text(t.chars().rev().collect::<String>()),
            Message::Binary(b) => Message::binary(b.iter().rev().copied().collect::<Vec<u8>>()),
        };
        conn.send(reply)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ws_core::testing::{Received, TestClient};

    use super::*;

    #[test]
    fn default_route() {
        assert_eq!(Reverse.route(), None);
        assert_eq!(
            ws_core::default_route(&Reverse.name()),
            "/demo_echo_Reverse"
        );
    }

    #[tokio::test]
    async fn reverses() {
        let mut c = TestClient::open(Reverse, "/demo_echo_Reverse")
            .await
            .unwrap();
        c.send("héllo").await.unwrap();
        assert_eq!(c.recv().await, Some(Received::Message("olléh".into())));
        c.send(vec![1u8, 2, 3]).await.unwrap();
        assert_eq!(
            c.recv().await,
            Some(Received::Message(vec![3u8, 2, 1].into()))
        );
    }
}
