//! A chat room per route parameter, over the hub.

use std::borrow::Cow;

use serde_json::json;
use ws_core::{BoxError, CloseReason, Component, Connection, HubError, Message};

/// Chat rooms on `/chat/{room}`: every text message goes to everyone in the
/// room as `{"type":"message","room","from","text"}`, with the sender's
/// name from their user aspect (or `anonymous`). A joiner first gets
/// `{"type":"presence","room","members":[{"name","user_id"}]}`, and the
/// room is told `{"type":"join"|"leave","room","name"}`. Rooms work across
/// server processes when the server runs with a broker.
#[derive(Clone, Copy, Debug, Default)]
pub struct Chat;

fn channel(conn: &Connection) -> String {
    format!("chat:{}", conn.param("room").unwrap_or("lobby"))
}

/// Publishes to the room; a broker that cannot forward right now is not an
/// error for the sender (local members got the message, the broker logs it).
fn publish(conn: &Connection, channel: &str, text: String) -> Result<(), HubError> {
    match conn.hub().publish(channel, text) {
        Ok(_) | Err(HubError::Unavailable(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn name_of(conn: &Connection) -> String {
    conn.aspects()
        .user()
        .map_or_else(|| "anonymous".to_owned(), |u| u.display_name().to_owned())
}

#[ws_core::async_trait]
impl Component for Chat {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("demo_echo::Chat")
    }

    fn route(&self) -> Option<Cow<'static, str>> {
        Some(Cow::Borrowed("/chat/{room}"))
    }

    async fn on_open(&self, conn: &Connection) -> Result<(), BoxError> {
        let room = conn.param("room").unwrap_or("lobby").to_owned();
        let ch = channel(conn);
        conn.join(&ch)?;
        // With a broker that is down, the room still works locally: the
        // presence list is marked incomplete and notices reach this server only.
        let (members, complete) = match conn.hub().presence(&ch).await {
            Ok(m) => (m, true),
            Err(HubError::Unavailable(_)) => (Vec::new(), false),
            Err(e) => return Err(e.into()),
        };
        let members: Vec<_> = members
            .into_iter()
            .map(|m| json!({"name": m.name, "user_id": m.user_id}))
            .collect();
        conn.send(
            json!({"type": "presence", "room": room, "members": members, "complete": complete})
                .to_string(),
        )?;
        publish(
            conn,
            &ch,
            json!({"type": "join", "room": room, "name": name_of(conn)}).to_string(),
        )?;
        Ok(())
    }

    async fn on_message(&self, conn: &Connection, msg: Message) -> Result<(), BoxError> {
        let Some(text) = msg.as_text() else {
            return Ok(());
        };
        let room = conn.param("room").unwrap_or("lobby");
        let out = json!({"type": "message", "room": room, "from": name_of(conn), "text": text});
        publish(conn, &channel(conn), out.to_string())?;
        Ok(())
    }

    async fn on_close(&self, conn: &Connection, _reason: CloseReason) {
        let room = conn.param("room").unwrap_or("lobby");
        let notice = json!({"type": "leave", "room": room, "name": name_of(conn)});
        if let Err(e) = conn.hub().publish(&channel(conn), notice.to_string()) {
            // Nothing to tell the leaver; the others miss a notice.
            let _ = e;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::Value;
    use ws_core::testing::{Received, TestClient};
    use ws_core::{HandshakeInfo, Hub, UserAspect};

    use super::*;

    async fn next_json(c: &mut TestClient) -> Value {
        match c.recv().await {
            Some(Received::Message(m)) => serde_json::from_str(m.as_text().unwrap()).unwrap(),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn info(room: &str, user: Option<&str>) -> HandshakeInfo {
        let mut i = HandshakeInfo::new(([127, 0, 0, 1], 1).into(), format!("/chat/{room}"));
        i.params = vec![("room".into(), room.into())];
        if let Some(u) = user {
            i.aspects
                .insert("frontend.user", UserAspect::user(u).with_username(u));
        }
        i
    }

    #[tokio::test]
    async fn room_messages_presence_and_notices() {
        let hub = Hub::local();
        let mut ann =
            TestClient::open_with_hub(Arc::new(Chat), info("r", Some("ann")), hub.clone())
                .await
                .unwrap();
        let p = next_json(&mut ann).await;
        assert_eq!(p["type"], "presence");
        assert_eq!(p["members"][0]["name"], "ann");
        assert_eq!(next_json(&mut ann).await["type"], "join");

        let mut anon = TestClient::open_with_hub(Arc::new(Chat), info("r", None), hub.clone())
            .await
            .unwrap();
        let p = next_json(&mut anon).await;
        assert_eq!(p["members"].as_array().unwrap().len(), 2);
        let j = next_json(&mut ann).await;
        assert_eq!(
            (j["type"].as_str(), j["name"].as_str()),
            (Some("join"), Some("anonymous"))
        );
        assert_eq!(next_json(&mut anon).await["type"], "join");

        // Another room hears nothing.
        let mut other =
            TestClient::open_with_hub(Arc::new(Chat), info("s", Some("bob")), hub.clone())
                .await
                .unwrap();
        let _ = next_json(&mut other).await;
        let _ = next_json(&mut other).await;

        anon.send("hello").await.unwrap();
        for c in [&mut ann, &mut anon] {
            let m = next_json(c).await;
            assert_eq!(m["type"], "message");
            assert_eq!(m["from"], "anonymous");
            assert_eq!(m["text"], "hello");
        }
        anon.close().await;
        let l = next_json(&mut ann).await;
        assert_eq!(
            (l["type"].as_str(), l["name"].as_str()),
            (Some("leave"), Some("anonymous"))
        );
        other.close().await;
        ann.close().await;
    }
}
