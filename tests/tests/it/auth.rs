//! Authentication aspects through a real server and real clients: JWTs
//! (HS256, a secret in a file) in a cookie and in a `Sec-WebSocket-Protocol`
//! entry, a real `redis-server` as the session store, route requirements
//! (401/403), `on_error = "reject"` (503), and revalidation while connected:
//! logout and `exp` close with 1008, a failing store with 1013, a changed
//! user and `on_end = "downgrade"` reach `on_aspect_change`. Everything is
//! asserted through what a client sees (`whoami`'s JSON, status codes,
//! close frames). SQLite (a temporary file) and an HTTP callback to a real
//! in-process application are covered the same way.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use ws_auth::{
    AspectConfig, Authenticator, Credential, HttpConfig, JwtAlgorithm, JwtConfig, OnError,
    RedisConfig, SourceConfig, SqlConfig,
};
use ws_core::{BoxError, Component, Connection, Message};
use ws_runtime::{BuildError, OnSessionEnd, RoutePolicy, Server, ServerConfig};
use ws_test_support::{Redis, TempDir};
use ws_tests::{
    TestServer, body_of, connect_with, expect_close, header_of, next_text, raw_exchange, send,
    status_of, upgrade_request,
};

const SECRET: &str = "an-integration-test-secret-of-some-length";
const WHOAMI: &str = "/demo_echo_Whoami";
const ASPECT: &str = "frontend.user";
const LIMIT: Duration = Duration::from_secs(5);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn sign_with(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// A token for user 42 (`ann`, groups `editors`) valid for `secs` more
/// seconds.
fn token(secs: i64) -> String {
    let exp = now().cast_signed() + secs;
    sign_with(
        SECRET,
        &json!({"sub": "42", "name": "ann", "groups": ["editors"], "exp": exp}),
    )
}

/// The HS256 secret in a file (with a trailing newline, which is trimmed),
/// in a directory of its own removed with it.
struct SecretFile(TempDir);

impl SecretFile {
    fn new() -> Self {
        let dir = TempDir::new("jwt");
        std::fs::write(dir.join("jwt.secret"), format!("{SECRET}\n")).expect("write the secret");
        Self(dir)
    }

    fn path(&self) -> PathBuf {
        self.0.join("jwt.secret")
    }
}

/// `frontend.user` from an HS256 JWT with no leeway (so expiry is exact).
fn jwt_aspect(key_file: &Path, credential: Credential) -> AspectConfig {
    let mut jwt = JwtConfig::new(JwtAlgorithm::HS256, key_file);
    jwt.leeway = Duration::ZERO;
    AspectConfig::new(ASPECT, credential, SourceConfig::Jwt(jwt))
}

fn cookie_jwt(key_file: &Path) -> AspectConfig {
    jwt_aspect(key_file, Credential::Cookie("fe_token".into()))
}

/// `frontend.user` from Redis sessions `sess:{id}` (cookie `sid`),
/// re-checked every second.
fn redis_aspect(url: &str) -> AspectConfig {
    let mut redis = RedisConfig::new(url);
    redis.timeout = Duration::from_millis(500);
    AspectConfig::new(
        ASPECT,
        Credential::Cookie("sid".into()),
        SourceConfig::Redis(redis),
    )
    .revalidate_every(Duration::from_secs(1))
}

/// Answers like `whoami`, speaks the subprotocol `chat`, and tells the
/// client (and records) every `on_aspect_change`.
#[derive(Default)]
struct Recorder {
    changes: Mutex<Vec<(String, bool)>>,
}

#[ws_core::async_trait]
impl Component for Recorder {
    fn name(&self) -> Cow<'static, str> {
        "auth::Recorder".into()
    }

    fn route(&self) -> Option<Cow<'static, str>> {
        Some("/rec".into())
    }

    fn subprotocols(&self) -> Vec<Cow<'static, str>> {
        vec!["chat".into()]
    }

    async fn on_message(&self, conn: &Connection, _msg: Message) -> Result<(), BoxError> {
        conn.send(demo_echo::describe(conn).to_string())?;
        Ok(())
    }

    async fn on_aspect_change(&self, conn: &Connection, name: &str) {
        let logged_in = conn.aspect(name).logged_in;
        self.changes
            .lock()
            .expect("lock")
            .push((name.to_owned(), logged_in));
        let _ = conn.send(format!("changed:{name}:{logged_in}"));
    }
}

/// The authenticator of `aspects`, as the server gets it.
async fn authenticator(aspects: &[AspectConfig]) -> Authenticator {
    Authenticator::new(aspects).await.expect("aspects set up")
}

async fn start(
    aspects: Vec<AspectConfig>,
    routes: Vec<RoutePolicy>,
    recorder: Option<Arc<Recorder>>,
) -> TestServer {
    let mut config = ServerConfig::default();
    config.routes = routes;
    let mut builder = Server::builder()
        .component(demo_echo::Whoami)
        .config(config)
        .authenticator(authenticator(&aspects).await);
    if let Some(r) = recorder {
        builder = builder.component_arc(r);
    }
    TestServer::serve(builder.build().expect("server builds")).await
}

/// What `whoami` (or the recorder) says about `frontend.user`.
async fn ask(ws: &mut ws_tests::Client) -> Value {
    send(ws, "?").await;
    let v: Value = serde_json::from_str(&next_text(ws).await).expect("JSON");
    v["aspects"][ASPECT].clone()
}

async fn connect_cookie(srv: &TestServer, path: &str, cookie: &str) -> ws_tests::Client {
    connect_with(&srv.url(path), &[("cookie", cookie)])
        .await
        .expect("connects")
}

#[tokio::test]
async fn jwt_in_a_cookie_logs_in() {
    let secret = SecretFile::new();
    let srv = start(vec![cookie_jwt(&secret.path())], vec![], None).await;
    let mut ws = connect_cookie(&srv, WHOAMI, &format!("other=1; fe_token={}", token(300))).await;
    let me = ask(&mut ws).await;
    assert_eq!(me["logged_in"], true, "{me}");
    assert_eq!(me["id"], "42");
    assert_eq!(me["username"], "ann");
    assert_eq!(me["groups"], json!(["editors"]));
}

#[tokio::test]
async fn no_cookie_is_anonymous_but_the_aspect_is_there() {
    let secret = SecretFile::new();
    let srv = start(vec![cookie_jwt(&secret.path())], vec![], None).await;
    let mut ws = srv.connect(WHOAMI).await;
    let me = ask(&mut ws).await;
    assert_eq!(
        me,
        json!({"logged_in": false, "id": null, "username": null, "groups": []})
    );
}

#[tokio::test]
async fn expired_malformed_and_forged_tokens_are_anonymous() {
    let secret = SecretFile::new();
    let srv = start(vec![cookie_jwt(&secret.path())], vec![], None).await;
    let forged = sign_with(
        "another-secret-entirely-0123456789",
        &json!({"sub": "1", "exp": now() + 300}),
    );
    for bad in [token(-60), "not.a.jwt".to_owned(), "x".to_owned(), forged] {
        let mut ws = connect_cookie(&srv, WHOAMI, &format!("fe_token={bad}")).await;
        let me = ask(&mut ws).await;
        assert_eq!(me["logged_in"], false, "{bad}: {me}");
        assert_eq!(me["id"], Value::Null, "{bad}");
    }
}

#[tokio::test]
async fn redis_session_logs_in_and_logout_closes_with_1008() {
    let Some(redis) = Redis::start() else { return };
    redis.command(&[
        "SET",
        "sess:abc",
        r#"{"id": 7, "username": "carl", "groups": "1,5"}"#,
        "EX",
        "120",
    ]);
    let srv = start(vec![redis_aspect(&redis.url())], vec![], None).await;
    let mut ws = connect_cookie(&srv, WHOAMI, "sid=abc").await;
    let me = ask(&mut ws).await;
    assert_eq!(me["logged_in"], true, "{me}");
    assert_eq!(me["id"], "7");
    assert_eq!(me["username"], "carl");
    assert_eq!(me["groups"], json!(["1", "5"]));
    // An unknown session is anonymous.
    let mut other = connect_cookie(&srv, WHOAMI, "sid=nope").await;
    assert_eq!(ask(&mut other).await["logged_in"], false);

    // Logout: the session key is deleted while the client is connected.
    assert_eq!(redis.command(&["DEL", "sess:abc"]), ":1");
    let deleted = Instant::now();
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1008, "session ended"));
    let took = deleted.elapsed();
    assert!(
        took <= Duration::from_secs(2),
        "closed {took:?} after the logout (revalidate_every = 1s)"
    );
}

#[tokio::test]
async fn redis_change_updates_the_aspect_and_calls_the_hook() {
    let Some(redis) = Redis::start() else { return };
    redis.command(&[
        "SET",
        "sess:s1",
        r#"{"id": 7, "groups": ["a"]}"#,
        "EX",
        "120",
    ]);
    let recorder = Arc::new(Recorder::default());
    let srv = start(
        vec![redis_aspect(&redis.url())],
        vec![],
        Some(Arc::clone(&recorder)),
    )
    .await;
    let mut ws = connect_cookie(&srv, "/rec", "sid=s1").await;
    assert_eq!(ask(&mut ws).await["groups"], json!(["a"]));
    redis.command(&[
        "SET",
        "sess:s1",
        r#"{"id": 7, "groups": ["a", "b"]}"#,
        "EX",
        "120",
    ]);
    assert_eq!(next_text(&mut ws).await, "changed:frontend.user:true");
    assert_eq!(ask(&mut ws).await["groups"], json!(["a", "b"]));
    assert_eq!(
        *recorder.changes.lock().unwrap(),
        [(ASPECT.to_owned(), true)]
    );
}

#[tokio::test]
async fn store_down_with_reject_is_503_naming_the_aspect() {
    // Nothing listens on this port: the store is down.
    let url = format!("redis://127.0.0.1:{}", ws_test_support::free_port());
    let reject = redis_aspect(&url).on_error(OnError::Reject);
    let srv = start(vec![reject], vec![], None).await;
    let resp = raw_exchange(
        srv.addr,
        upgrade_request(WHOAMI, "Cookie: sid=abc\r\n").as_bytes(),
        LIMIT,
    )
    .await;
    assert_eq!(status_of(&resp), 503, "{resp}");
    assert!(body_of(&resp).contains("`frontend.user`"), "{resp}");
    // No credential: nothing to look up, anonymous.
    let mut ws = srv.connect(WHOAMI).await;
    assert_eq!(ask(&mut ws).await["logged_in"], false);
    // An unknown path asks no store: 404, not 503.
    let resp = raw_exchange(
        srv.addr,
        upgrade_request("/nope", "Cookie: sid=abc\r\n").as_bytes(),
        LIMIT,
    )
    .await;
    assert_eq!(status_of(&resp), 404, "{resp}");

    // The default, on_error = "anonymous": the handshake goes on.
    let srv = start(vec![redis_aspect(&url)], vec![], None).await;
    let mut ws = connect_cookie(&srv, WHOAMI, "sid=abc").await;
    assert_eq!(ask(&mut ws).await["logged_in"], false);
}

#[tokio::test]
async fn store_failing_while_connected_with_reject_closes_with_1013() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    redis.command(&["SET", "sess:abc", r#"{"id": 7}"#, "EX", "120"]);
    let reject = redis_aspect(&redis.url()).on_error(OnError::Reject);
    let srv = start(vec![reject], vec![], None).await;
    let mut ws = connect_cookie(&srv, WHOAMI, "sid=abc").await;
    assert_eq!(ask(&mut ws).await["logged_in"], true);
    redis.kill();
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1013, "session store unavailable"));
}

#[tokio::test]
async fn route_require_is_401_for_anonymous_and_101_when_logged_in() {
    let secret = SecretFile::new();
    let mut route = RoutePolicy::new(WHOAMI);
    route.require = vec![ASPECT.into()];
    let srv = start(vec![cookie_jwt(&secret.path())], vec![route], None).await;
    assert_eq!(srv.server.routes()[0].require, [ASPECT]);
    for extra in [String::new(), "Cookie: fe_token=garbage\r\n".to_owned()] {
        let resp = raw_exchange(srv.addr, upgrade_request(WHOAMI, &extra).as_bytes(), LIMIT).await;
        assert_eq!(status_of(&resp), 401, "{resp}");
        assert!(body_of(&resp).contains("`frontend.user`"), "{resp}");
        assert_eq!(
            header_of(&resp, "www-authenticate"),
            None,
            "a cookie aspect"
        );
    }
    let extra = format!("Cookie: fe_token={}\r\n", token(300));
    let resp = raw_exchange(
        srv.addr,
        upgrade_request(WHOAMI, &extra).as_bytes(),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(status_of(&resp), 101, "{resp}");
    let mut ws = connect_cookie(&srv, WHOAMI, &format!("fe_token={}", token(300))).await;
    assert_eq!(ask(&mut ws).await["id"], "42");
}

#[tokio::test]
async fn bearer_aspects_answer_401_with_www_authenticate() {
    let secret = SecretFile::new();
    let mut route = RoutePolicy::new(WHOAMI);
    route.require = vec![ASPECT.into()];
    let aspect = jwt_aspect(&secret.path(), Credential::Bearer);
    let srv = start(vec![aspect], vec![route], None).await;
    let resp = raw_exchange(srv.addr, upgrade_request(WHOAMI, "").as_bytes(), LIMIT).await;
    assert_eq!(status_of(&resp), 401, "{resp}");
    assert_eq!(
        header_of(&resp, "www-authenticate").as_deref(),
        Some("Bearer")
    );
    let auth = format!("Bearer {}", token(300));
    let mut ws = connect_with(&srv.url(WHOAMI), &[("authorization", &auth)])
        .await
        .expect("connects");
    assert_eq!(ask(&mut ws).await["logged_in"], true);
}

#[tokio::test]
async fn require_groups_is_403_outside_the_groups() {
    let secret = SecretFile::new();
    let mut admins = RoutePolicy::new(WHOAMI);
    admins.require = vec![ASPECT.into()];
    admins.require_groups = vec!["admins".into(), "root".into()];
    let mut editors = RoutePolicy::new("/rec");
    editors.require = vec![ASPECT.into()];
    editors.require_groups = vec!["admins".into(), "editors".into()];
    let srv = start(
        vec![cookie_jwt(&secret.path())],
        vec![admins, editors],
        Some(Arc::default()),
    )
    .await;
    let extra = format!("Cookie: fe_token={}\r\n", token(300));
    let resp = raw_exchange(srv.addr, upgrade_request(WHOAMI, &extra).as_bytes(), LIMIT).await;
    assert_eq!(status_of(&resp), 403, "{resp}");
    let body = body_of(&resp);
    assert!(
        body.contains("`admins`") && body.contains("`frontend.user`"),
        "{body}"
    );
    // Anonymous is still 401 first.
    let resp = raw_exchange(srv.addr, upgrade_request(WHOAMI, "").as_bytes(), LIMIT).await;
    assert_eq!(status_of(&resp), 401, "{resp}");
    // Any one of the groups will do.
    let mut ws = connect_cookie(&srv, "/rec", &format!("fe_token={}", token(300))).await;
    assert_eq!(ask(&mut ws).await["groups"], json!(["editors"]));
}

#[tokio::test]
async fn a_jwt_closes_the_connection_at_its_exp() {
    let secret = SecretFile::new();
    let srv = start(vec![cookie_jwt(&secret.path())], vec![], None).await;
    let exp = now() + 2;
    let jwt = sign_with(SECRET, &json!({"sub": "42", "exp": exp}));
    let mut ws = connect_cookie(&srv, WHOAMI, &format!("fe_token={jwt}")).await;
    assert_eq!(ask(&mut ws).await["logged_in"], true);
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1008, "session ended"));
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let exp = exp as f64;
    assert!(
        at >= exp - 0.05 && at <= exp + 1.0,
        "closed at {at}, exp is {exp}"
    );
}

/// Swallows every message: a client flooding it gets nothing back, so the
/// server always has the next frame to read.
struct Silent;

#[ws_core::async_trait]
impl Component for Silent {
    fn name(&self) -> Cow<'static, str> {
        "auth::Silent".into()
    }

    fn route(&self) -> Option<Cow<'static, str>> {
        Some("/silent".into())
    }

    async fn on_message(&self, _conn: &Connection, _msg: Message) -> Result<(), BoxError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_client_that_never_stops_sending_is_still_closed_at_its_exp() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    let secret = SecretFile::new();
    let mut config = ServerConfig::default();

    // No message-rate limit: only the session's end may close.
    config.max_messages_per_second = 0;
    config.max_messages_per_address_per_second = 0;
    let server = Server::builder()
        .component(Silent)
        .config(config)
        .authenticator(authenticator(&[cookie_jwt(&secret.path())]).await)
        .build()
        .expect("server builds");
    let srv = TestServer::serve(server).await;
    let exp = now() + 2;
    let jwt = sign_with(SECRET, &json!({"sub": "42", "exp": exp}));
    let ws = connect_cookie(&srv, "/silent", &format!("fe_token={jwt}")).await;
    let (mut tx, mut rx) = ws.split();
    // Pipelined frames as fast as the socket takes them, for at most 6 s
    // (the close comes after about 2).
    let flood = tokio::spawn(async move {
        let until = Instant::now() + Duration::from_secs(6);
        let mut sent = 0u64;
        while Instant::now() < until {
            for _ in 0..64 {
                if tx.feed(WsMessage::text("x")).await.is_err() {
                    return sent;
                }
                sent += 1;
            }
            if tx.flush().await.is_err() {
                return sent;
            }
        }
        sent
    });
    let frame = tokio::time::timeout(ws_tests::WAIT, async {
        loop {
            match rx.next().await {
                Some(Ok(WsMessage::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("the stream ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("closed within the wait limit")
    .expect("a close frame with a code");
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let sent = flood.await.expect("the flooding task");
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (1008, "session ended")
    );
    assert!(sent > 1_000, "the client sent only {sent} messages");
    #[allow(clippy::cast_precision_loss)]
    let exp = exp as f64;
    assert!(
        at >= exp - 0.05 && at <= exp + 1.0,
        "closed at {at}, exp is {exp}"
    );
}

#[tokio::test]
async fn downgrade_keeps_the_connection_and_calls_the_hook() {
    let secret = SecretFile::new();
    let recorder = Arc::new(Recorder::default());
    let aspect = cookie_jwt(&secret.path()).on_end(OnSessionEnd::Downgrade);
    let srv = start(vec![aspect], vec![], Some(Arc::clone(&recorder))).await;
    let jwt = sign_with(SECRET, &json!({"sub": "42", "exp": now() + 2}));
    let mut ws = connect_cookie(&srv, "/rec", &format!("fe_token={jwt}")).await;
    assert_eq!(ask(&mut ws).await["logged_in"], true);
    // At exp: the hook runs (and tells the client), the connection stays.
    assert_eq!(next_text(&mut ws).await, "changed:frontend.user:false");
    let me = ask(&mut ws).await;
    assert_eq!(me["logged_in"], false, "{me}");
    assert_eq!(me["id"], Value::Null);
    assert_eq!(
        *recorder.changes.lock().unwrap(),
        [(ASPECT.to_owned(), false)]
    );
}

#[tokio::test]
async fn a_protocol_credential_is_never_echoed_back() {
    let secret = SecretFile::new();
    let aspect = jwt_aspect(
        &secret.path(),
        Credential::Protocol {
            prefix: "bearer.".into(),
        },
    );
    let srv = start(vec![aspect], vec![], Some(Arc::default())).await;
    let jwt = token(300);
    let entry = format!("bearer.{jwt}");
    // The token entry first: still not chosen; the route's `chat` is.
    let offer = format!("{entry}, chat");
    let resp = raw_exchange(
        srv.addr,
        upgrade_request("/rec", &format!("Sec-WebSocket-Protocol: {offer}\r\n")).as_bytes(),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(status_of(&resp), 101, "{resp}");
    assert_eq!(
        header_of(&resp, "sec-websocket-protocol").as_deref(),
        Some("chat")
    );
    assert!(!resp.contains(&jwt), "{resp}");
    // Only the token offered: no subprotocol at all in the answer.
    let resp = raw_exchange(
        srv.addr,
        upgrade_request("/rec", &format!("Sec-WebSocket-Protocol: {entry}\r\n")).as_bytes(),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(status_of(&resp), 101, "{resp}");
    assert_eq!(header_of(&resp, "sec-websocket-protocol"), None, "{resp}");
    // A real client is logged in through the entry and speaks `chat`.
    let offer = format!("chat, {entry}");
    let mut ws = connect_with(&srv.url("/rec"), &[("sec-websocket-protocol", &offer)])
        .await
        .expect("connects");
    send(&mut ws, "?").await;
    let v: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(v["subprotocol"], "chat");
    assert_eq!(v["aspects"][ASPECT]["id"], "42");
}

#[tokio::test]
async fn configuration_errors_name_the_aspect_and_the_key() {
    // An aspect that cannot work fails before the server is built.
    let e = Authenticator::new(&[cookie_jwt(Path::new("/nonexistent/jwt.secret"))])
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("`frontend.user`")
            && text.contains("jwt.key_file")
            && text.contains("/nonexistent/jwt.secret"),
        "{text}"
    );
    // A route requiring an aspect that is not configured.
    let secret = SecretFile::new();
    let mut config = ServerConfig::default();
    let mut route = RoutePolicy::new(WHOAMI);
    route.require = vec!["backend.user".into()];
    config.routes = vec![route];
    let e = Server::builder()
        .component(demo_echo::Whoami)
        .config(config)
        .authenticator(authenticator(&[cookie_jwt(&secret.path())]).await)
        .build()
        .unwrap_err();
    let BuildError::Config(e) = e else {
        panic!("{e:?}")
    };
    assert_eq!((e.key, e.route.as_deref()), ("require", Some(WHOAMI)));
    assert!(
        e.reason.contains("backend.user") && e.reason.contains("frontend.user"),
        "{e}"
    );
}

/// Sessions joined to users; only unexpired rows match.
const SQL_QUERY: &str = "SELECT u.id, u.name AS username, u.groups, s.expires AS expires_at \
     FROM sessions s JOIN users u ON u.id = s.user_id \
     WHERE s.sid = $1 AND s.expires > CAST(strftime('%s', 'now') AS INTEGER)";

/// `frontend.user` from the SQLite database at `path` (cookie `sid`).
fn sql_aspect(path: &Path) -> AspectConfig {
    let mut sql = SqlConfig::new(format!("sqlite://{}", path.display()), SQL_QUERY);
    sql.timeout = Duration::from_secs(1);
    sql.max_connections = 2;
    AspectConfig::new(
        ASPECT,
        Credential::Cookie("sid".into()),
        SourceConfig::Sql(sql),
    )
}

/// A SQLite file with user 5 (`ann`, groups `1,2`) behind session `live`
/// and user 6 behind the expired session `stale`.
async fn sqlite_sessions(path: &Path) {
    use std::str::FromStr as _;
    let options =
        sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .expect("sqlite URL")
            .create_if_missing(true);
    let db = sqlx::SqlitePool::connect_with(options)
        .await
        .expect("create the database");
    for stmt in [
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, groups TEXT, password TEXT)",
        "CREATE TABLE sessions (sid TEXT PRIMARY KEY, user_id INTEGER, expires INTEGER)",
        "INSERT INTO users VALUES (5, 'ann', '1,2', 'x'), (6, 'old', '', 'y')",
    ] {
        sqlx::query(stmt).execute(&db).await.expect(stmt);
    }
    let now = now().cast_signed();
    for (sid, user, expires) in [("live", 5, now + 3600), ("stale", 6, now - 60)] {
        sqlx::query("INSERT INTO sessions VALUES (?, ?, ?)")
            .bind(sid)
            .bind(user)
            .bind(expires)
            .execute(&db)
            .await
            .expect("insert a session");
    }
    db.close().await;
}

#[tokio::test]
async fn sqlite_session_logs_in_and_others_are_anonymous() {
    let dir = TempDir::new("sqlite");
    let path = dir.path().join("sessions.sqlite");
    sqlite_sessions(&path).await;
    let srv = start(vec![sql_aspect(&path)], vec![], None).await;

    let mut ws = connect_cookie(&srv, WHOAMI, "theme=dark; sid=live").await;
    let me = ask(&mut ws).await;
    assert_eq!(me["logged_in"], true, "{me}");
    assert_eq!(me["id"], "5");
    assert_eq!(me["username"], "ann");
    assert_eq!(me["groups"], json!(["1", "2"]));

    for (cookie, what) in [
        ("sid=unknown", "unknown session"),
        ("sid=stale", "expired session"),
        ("sid=x' OR '1'='1", "injection attempt"),
        ("sid=live' --", "injection attempt with a comment"),
    ] {
        let mut ws = connect_cookie(&srv, WHOAMI, cookie).await;
        let me = ask(&mut ws).await;
        assert_eq!(
            me,
            json!({"logged_in": false, "id": null, "username": null, "groups": []}),
            "{what}"
        );
    }
    // The database is untouched by the attempts.
    let mut ws = connect_cookie(&srv, WHOAMI, "sid=live").await;
    assert_eq!(ask(&mut ws).await["id"], "5");
}

#[tokio::test]
async fn sqlite_missing_database_is_503_under_reject_else_anonymous() {
    let dir = TempDir::new("sqlite");
    let gone = dir.path().join("missing.sqlite");
    let reject = sql_aspect(&gone).on_error(OnError::Reject);
    let srv = start(vec![reject], vec![], None).await;
    let resp = raw_exchange(
        srv.addr,
        upgrade_request(WHOAMI, "Cookie: sid=live\r\n").as_bytes(),
        LIMIT,
    )
    .await;
    assert_eq!(status_of(&resp), 503, "{resp}");
    assert!(body_of(&resp).contains("`frontend.user`"), "{resp}");
    assert!(!gone.exists(), "the database file must not be created");
    // No credential: nothing to look up.
    let mut ws = srv.connect(WHOAMI).await;
    assert_eq!(ask(&mut ws).await["logged_in"], false);

    // The default, on_error = "anonymous".
    let srv = start(vec![sql_aspect(&gone)], vec![], None).await;
    let mut ws = connect_cookie(&srv, WHOAMI, "sid=live").await;
    assert_eq!(ask(&mut ws).await["logged_in"], false);
}

/// A minimal HTTP application on 127.0.0.1: session `good` (cookie `sess`)
/// is user 42, anything else is 401. Records every `Cookie` header it gets.
struct App {
    addr: std::net::SocketAddr,
    cookies: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cookies = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&cookies);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(LIMIT, Self::answer(stream, &seen)).await;
                });
            }
        });
        Self {
            addr,
            cookies,
            task,
        }
    }

    async fn answer(mut stream: tokio::net::TcpStream, seen: &Mutex<Vec<String>>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let cookie = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("cookie")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default();
        let session = cookie
            .split("; ")
            .find_map(|c| c.strip_prefix("sess="))
            .unwrap_or("")
            .to_owned();
        seen.lock().expect("lock").push(cookie);
        let (status, body) = if session == "good" {
            (
                "200 OK",
                json!({"id": 42, "username": "ann", "groups": ["chat"]}).to_string(),
            )
        } else {
            ("401 Unauthorized", String::new())
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(resp.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    fn url(&self) -> String {
        format!("http://{}/api/ws-session", self.addr)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `frontend.user` from the HTTP callback at `url` (cookie `sess`), no
/// cache.
fn http_aspect(url: &str) -> AspectConfig {
    let mut http = HttpConfig::new(url);
    http.timeout = Duration::from_millis(500);
    http.cache_ttl = Duration::ZERO;
    AspectConfig::new(
        ASPECT,
        Credential::Cookie("sess".into()),
        SourceConfig::Http(http),
    )
}

#[tokio::test]
async fn http_callback_forwards_the_cookie_and_logs_in() {
    let app = App::start().await;
    let srv = start(vec![http_aspect(&app.url())], vec![], None).await;
    let mut ws = connect_cookie(&srv, WHOAMI, "theme=dark; sess=good").await;
    let me = ask(&mut ws).await;
    assert_eq!(me["logged_in"], true, "{me}");
    assert_eq!(me["id"], "42");
    assert_eq!(me["username"], "ann");
    assert_eq!(me["groups"], json!(["chat"]));
    assert_eq!(
        *app.cookies.lock().expect("lock"),
        ["theme=dark; sess=good"],
        "the client's Cookie header, forwarded as is"
    );

    // The application's 401: anonymous, the connection is accepted.
    let mut ws = connect_cookie(&srv, WHOAMI, "sess=gone").await;
    let me = ask(&mut ws).await;
    assert_eq!(
        me,
        json!({"logged_in": false, "id": null, "username": null, "groups": []})
    );
    assert_eq!(app.cookies.lock().expect("lock").len(), 2);
    // A 401 is an answer, not a failure: no 503 even under reject.
    let reject = http_aspect(&app.url()).on_error(OnError::Reject);
    let srv = start(vec![reject], vec![], None).await;
    let mut ws = connect_cookie(&srv, WHOAMI, "sess=gone").await;
    assert_eq!(ask(&mut ws).await["logged_in"], false);
}

#[tokio::test]
async fn http_application_down_is_503_under_reject_else_anonymous() {
    // Nothing listens on this port: the application is down.
    let url = format!(
        "http://127.0.0.1:{}/api/ws-session",
        ws_test_support::free_port()
    );
    let reject = http_aspect(&url).on_error(OnError::Reject);
    let srv = start(vec![reject], vec![], None).await;
    let resp = raw_exchange(
        srv.addr,
        upgrade_request(WHOAMI, "Cookie: sess=good\r\n").as_bytes(),
        LIMIT,
    )
    .await;
    assert_eq!(status_of(&resp), 503, "{resp}");
    assert!(body_of(&resp).contains("`frontend.user`"), "{resp}");

    // The default, on_error = "anonymous": the handshake goes on.
    let srv = start(vec![http_aspect(&url)], vec![], None).await;
    let mut ws = connect_cookie(&srv, WHOAMI, "sess=good").await;
    assert_eq!(ask(&mut ws).await["logged_in"], false);
}
