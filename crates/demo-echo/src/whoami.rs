//! A component that tells a client what the server knows about it.

use std::borrow::Cow;

use serde_json::{Map, Value, json};
use ws_core::{BoxError, Component, Connection, Message};

/// Answers every message with JSON describing the connection: id, client
/// address, path, route, route parameters, subprotocol, and every user
/// aspect (`logged_in`, `id`, `username`, `groups`). Mounted on its default
/// route, `/demo_echo_Whoami`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Whoami;

/// The JSON `Whoami` sends for `conn`.
pub fn describe(conn: &Connection) -> Value {
    let params: Map<String, Value> = conn
        .handshake()
        .params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let aspects: Map<String, Value> = conn
        .aspects()
        .iter()
        .map(|(name, a)| {
            (
                name.to_owned(),
                json!({
                    "logged_in": a.logged_in,
                    "id": a.id,
                    "username": a.username,
                    "groups": a.groups,
                }),
            )
        })
        .collect();
    json!({
        "connection": conn.id().get(),
        "client": conn.client_addr().to_string(),
        "path": conn.path(),
        "route": conn.handshake().route,
        "params": params,
        "subprotocol": conn.subprotocol(),
        "aspects": aspects,
    })
}

#[ws_core::async_trait]
impl Component for Whoami {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("demo_echo::Whoami")
    }

    async fn on_message(&self, conn: &Connection, _msg: Message) -> Result<(), BoxError> {
        conn.send(Message::text(describe(conn).to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ws_core::testing::{Received, TestClient};
    use ws_core::{HandshakeInfo, UserAspect};

    use super::*;

    #[tokio::test]
    async fn reports_aspects_and_params() {
        let mut info = HandshakeInfo::new(([10, 0, 0, 1], 5000).into(), "/demo_echo_Whoami");
        info.params = vec![("room".into(), "a".into())];
        info.aspects.insert(
            "frontend.user",
            UserAspect::user("42")
                .with_username("ann")
                .with_groups(["editors"]),
        );
        info.aspects.insert("backend.user", UserAspect::anonymous());
        let mut c = TestClient::open_with(Arc::new(Whoami), info).await.unwrap();
        c.send("?").await.unwrap();
        let Some(Received::Message(m)) = c.recv().await else {
            panic!("no answer")
        };
        let v: Value = serde_json::from_str(m.as_text().unwrap()).unwrap();
        assert_eq!(v["client"], "10.0.0.1:5000");
        assert_eq!(v["params"]["room"], "a");
        assert_eq!(v["aspects"]["frontend.user"]["logged_in"], true);
        assert_eq!(v["aspects"]["frontend.user"]["username"], "ann");
        assert_eq!(v["aspects"]["frontend.user"]["groups"][0], "editors");
        assert_eq!(v["aspects"]["backend.user"]["logged_in"], false);
        assert_eq!(v["subprotocol"], Value::Null);
    }
}
