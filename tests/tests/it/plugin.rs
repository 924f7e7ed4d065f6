//! A component crate that depends on ws-core alone plugs into the server.

use ws_runtime::Server;
use ws_tests::{TestServer, next_text, send};

#[tokio::test]
async fn third_party_component_is_served() {
    let srv = TestServer::start(Server::builder().component(greeter::Greeter)).await;
    assert_eq!(srv.server.routes()[0].path, "/greet/{name}");
    assert_eq!(srv.server.routes()[0].component, "greeter::Greeter");
    let mut ws = srv.connect("/greet/world").await;
    assert_eq!(next_text(&mut ws).await, "hello world");
    send(&mut ws, "who").await;
    assert!(next_text(&mut ws).await.starts_with("path=/greet/world"));
    drop(ws);
    srv.shutdown().await;
}
