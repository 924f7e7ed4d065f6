//! `on_open`/`on_close` bookkeeping, errors, panics, timers and graceful shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use ws_core::{
    BoxError, CloseCode, CloseReason, Component, Connection, Message, ServerContext, SyncComponent,
};
use ws_runtime::{Server, ServerConfig};
use ws_tests::{TestServer, expect_close, next_text, send};

/// Records every hook call; echoes, and obeys a few commands.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    ticks: Arc<AtomicUsize>,
}

impl Recorder {
    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    fn push(&self, e: String) {
        self.events.lock().unwrap().push(e);
    }

    async fn wait_for(&self, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + ws_tests::WAIT;
        loop {
            let ev = self.events();
            if pred(&ev) {
                return ev;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out; events: {ev:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[ws_core::async_trait]
impl Component for Recorder {
    fn name(&self) -> std::borrow::Cow<'static, str> {
        "lifecycle::Recorder".into()
    }

    fn route(&self) -> Option<std::borrow::Cow<'static, str>> {
        Some("/rec".into())
    }

    fn configure(self: Arc<Self>, ctx: &mut ServerContext) {
        let ticks = Arc::clone(&self.ticks);
        ctx.every(Duration::from_millis(20), move || {
            ticks.fetch_add(1, Ordering::SeqCst);
        });
    }

    async fn on_open(&self, conn: &Connection) -> Result<(), BoxError> {
        self.push(format!("open {}", conn.id()));
        Ok(())
    }

    async fn on_message(&self, conn: &Connection, msg: Message) -> Result<(), BoxError> {
        match msg.as_text() {
            Some("fail") => return Err("asked to fail".into()),
            Some("panic") => panic!("asked to panic"),
            Some("close") => conn.close(CloseCode(4000), "bye"),
            _ => conn.send(msg)?,
        }
        Ok(())
    }

    async fn on_close(&self, conn: &Connection, reason: CloseReason) {
        let code = reason.frame.map_or(0, |f| f.code.0);
        self.push(format!("close {} {:?} {code}", conn.id(), reason.initiator));
    }

    async fn on_error(&self, conn: &Connection, error: BoxError) {
        self.push(format!("error {} {error}", conn.id()));
    }
}

/// The recorder's synchronous twin on `/now`: `now …` answered, failing or
/// panicking on command, anything else echoed; every message handled
/// without a future.
struct Now(Arc<Recorder>);

#[ws_core::async_trait]
impl SyncComponent for Now {
    fn name(&self) -> std::borrow::Cow<'static, str> {
        "lifecycle::Now".into()
    }

    fn route(&self) -> Option<std::borrow::Cow<'static, str>> {
        Some("/now".into())
    }

    async fn on_open(&self, conn: &Connection) -> Result<(), BoxError> {
        self.0.push(format!("open {}", conn.id()));
        Ok(())
    }

    fn on_message(&self, conn: &Connection, msg: Message) -> Result<(), BoxError> {
        match msg.as_text().and_then(|t| t.strip_prefix("now ")) {
            Some("fail") => return Err("asked to fail now".into()),
            Some("panic") => panic!("asked to panic now"),
            Some(text) => conn.send(format!("now:{text}"))?,
            None => conn.send(msg)?,
        }
        Ok(())
    }

    async fn on_close(&self, conn: &Connection, reason: CloseReason) {
        let code = reason.frame.map_or(0, |f| f.code.0);
        self.0
            .push(format!("close {} {:?} {code}", conn.id(), reason.initiator));
    }

    async fn on_error(&self, conn: &Connection, error: BoxError) {
        self.0.push(format!("error {} {error}", conn.id()));
    }
}

fn count(events: &[String], prefix: &str) -> usize {
    events.iter().filter(|e| e.starts_with(prefix)).count()
}

async fn start(rec: &Arc<Recorder>, config: ServerConfig) -> TestServer {
    TestServer::start(
        Server::builder()
            .component_arc(Arc::clone(rec) as Arc<dyn Component>)
            .config(config),
    )
    .await
}

#[tokio::test]
async fn on_close_once_for_client_close_drop_and_shutdown() {
    let rec = Arc::new(Recorder::default());
    let mut srv = start(&rec, ServerConfig::default()).await;

    // 1. The client closes.
    let mut a = srv.connect("/rec").await;
    send(&mut a, "hi").await;
    assert_eq!(next_text(&mut a).await, "hi");
    a.close(Some(CloseFrame {
        code: 1000.into(),
        reason: "done".into(),
    }))
    .await
    .unwrap();
    rec.wait_for(|e| count(e, "close") == 1).await;

    // 2. The TCP connection vanishes without a close frame.
    let mut b = srv.connect("/rec").await;
    send(&mut b, "hi").await;
    assert_eq!(next_text(&mut b).await, "hi");
    drop(b);
    rec.wait_for(|e| count(e, "close") == 2).await;

    // 3. Shutdown: the client gets 1001 and on_close still runs once.
    let mut c = srv.connect("/rec").await;
    send(&mut c, "hi").await;
    assert_eq!(next_text(&mut c).await, "hi");
    srv.begin_shutdown();
    let (code, reason) = expect_close(&mut c).await;
    assert_eq!(code, 1001);
    assert_eq!(reason, "server shutting down");
    drop(c);
    srv.shutdown().await;

    let ev = rec.events();
    assert_eq!(count(&ev, "open"), 3, "{ev:?}");
    assert_eq!(count(&ev, "close"), 3, "{ev:?}");
    assert!(ev.iter().any(|e| e.ends_with("Client 1000")), "{ev:?}");
    assert!(ev.iter().any(|e| e.ends_with("Transport 0")), "{ev:?}");
    assert!(ev.iter().any(|e| e.ends_with("Shutdown 1001")), "{ev:?}");
    // Every opened id was closed exactly once.
    for open in ev.iter().filter(|e| e.starts_with("open ")) {
        let id = &open[5..];
        let closes = ev
            .iter()
            .filter(|e| e.starts_with(&format!("close {id} ")))
            .count();
        assert_eq!(closes, 1, "connection {id}: {ev:?}");
    }
}

#[tokio::test]
async fn component_close_error_and_panic() {
    let rec = Arc::new(Recorder::default());
    let srv = start(&rec, ServerConfig::default()).await;

    let mut a = srv.connect("/rec").await;
    send(&mut a, "one").await;
    send(&mut a, "close").await;
    assert_eq!(next_text(&mut a).await, "one");
    assert_eq!(expect_close(&mut a).await, (4000, "bye".to_owned()));

    let mut b = srv.connect("/rec").await;
    send(&mut b, "fail").await;
    assert_eq!(
        expect_close(&mut b).await,
        (1011, "internal error".to_owned())
    );

    let mut c = srv.connect("/rec").await;
    send(&mut c, "panic").await;
    assert_eq!(expect_close(&mut c).await.0, 1011);

    // The server keeps serving.
    let mut d = srv.connect("/rec").await;
    send(&mut d, "still here").await;
    assert_eq!(next_text(&mut d).await, "still here");

    let ev = rec.wait_for(|e| count(e, "close") == 3).await;
    assert!(ev.iter().any(|e| e.contains("Server 4000")), "{ev:?}");
    assert!(ev.iter().any(|e| e.contains("asked to fail")), "{ev:?}");
    assert!(
        ev.iter().any(|e| e.contains("panicked: asked to panic")),
        "{ev:?}"
    );
    assert_eq!(count(&ev, "error"), 2, "{ev:?}");
    drop((a, b, c, d));
    srv.shutdown().await;
}

#[tokio::test]
async fn a_synchronous_component_answers_in_order_and_fails_like_on_message() {
    let rec = Arc::new(Recorder::default());
    let srv = TestServer::start(
        Server::builder()
            .component_arc(Arc::clone(&rec) as Arc<dyn Component>)
            .component(Now(Arc::clone(&rec))),
    )
    .await;

    // Answered without a future, in the order sent.
    let mut a = srv.connect("/now").await;
    for m in ["now a", "b", "now c", "d"] {
        send(&mut a, m).await;
    }
    for want in ["now:a", "b", "now:c", "d"] {
        assert_eq!(next_text(&mut a).await, want);
    }

    let mut b = srv.connect("/now").await;
    send(&mut b, "now fail").await;
    assert_eq!(
        expect_close(&mut b).await,
        (1011, "internal error".to_owned())
    );
    let mut c = srv.connect("/now").await;
    send(&mut c, "now panic").await;
    assert_eq!(expect_close(&mut c).await.0, 1011);

    // The server keeps serving, the first connection too.
    send(&mut a, "now still here").await;
    assert_eq!(next_text(&mut a).await, "now:still here");

    let ev = rec.wait_for(|e| count(e, "close") == 2).await;
    assert!(ev.iter().any(|e| e.contains("asked to fail now")), "{ev:?}");
    assert!(
        ev.iter()
            .any(|e| e.contains("panicked: asked to panic now")),
        "{ev:?}"
    );
    assert_eq!(count(&ev, "error"), 2, "{ev:?}");
    drop((a, b, c));
    srv.shutdown().await;
}

#[tokio::test]
async fn timers_fire_and_stop_at_shutdown() {
    let rec = Arc::new(Recorder::default());
    let srv = start(&rec, ServerConfig::default()).await;
    let deadline = tokio::time::Instant::now() + ws_tests::WAIT;
    while rec.ticks.load(Ordering::SeqCst) < 3 {
        assert!(tokio::time::Instant::now() < deadline, "timer never fired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    srv.shutdown().await;
    let after = rec.ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        rec.ticks.load(Ordering::SeqCst),
        after,
        "timer still running"
    );
}

#[tokio::test]
async fn ticker_demo_sends_ticks() {
    let srv = TestServer::start(
        Server::builder().component(demo_echo::Ticker::with_period(Duration::from_millis(50))),
    )
    .await;
    let mut ws = srv.connect("/ticker").await;
    for _ in 0..2 {
        let t = next_text(&mut ws).await;
        assert!(t.starts_with("tick "), "{t}");
    }
    drop(ws);
    srv.shutdown().await;
}

#[tokio::test]
async fn keepalive_pings_and_drops_silent_peers() {
    let rec = Arc::new(Recorder::default());
    let mut config = ServerConfig::default();
    config.websocket.ping_interval = Duration::from_millis(200);
    let srv = start(&rec, config).await;
    // A reading client answers pings (tungstenite does it while reading) and stays.
    let (mut tx, mut rx) = futures_util::StreamExt::split(srv.connect("/rec").await);
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = futures_util::StreamExt::next(&mut rx).await {
            let _ = seen_tx.send(m);
        }
    });
    let first = tokio::time::timeout(ws_tests::WAIT, seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(first, WsMessage::Ping(_)),
        "expected a ping, got {first:?}"
    );
    // A raw TCP peer that completes the upgrade but never answers is dropped.
    let mut silent = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut silent,
        ws_tests::upgrade_request("/rec", "").as_bytes(),
    )
    .await
    .unwrap();
    let ev = rec
        .wait_for(|e| e.iter().any(|x| x.contains("Server 1001")))
        .await;
    assert_eq!(count(&ev, "close"), 1, "{ev:?}");
    // Several intervals later the reading client is still served.
    tokio::time::sleep(Duration::from_millis(700)).await;
    futures_util::SinkExt::send(&mut tx, WsMessage::text("ok?"))
        .await
        .unwrap();
    loop {
        let m = tokio::time::timeout(ws_tests::WAIT, seen.recv())
            .await
            .unwrap()
            .unwrap();
        match m {
            WsMessage::Text(t) => {
                assert_eq!(t, "ok?");
                break;
            }
            WsMessage::Ping(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(count(&rec.events(), "close"), 1);
    reader.abort();
    drop((silent, tx));
    srv.shutdown().await;
}
