//! SQL session stores: SQLite in a temporary file (TYPO3's tables, `ses_id`
//! stored as HMAC-SHA256) and a real PostgreSQL server (arrays, json, a slow
//! query that must not hold up other handshakes, the server stopped).

use std::str::FromStr as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac as _};
use http::HeaderMap;
use serde_json::json;
use sha2::Sha256;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use ws_auth::FailureKind;

use crate::{authenticator, cookie, resolve_one};
use ws_test_support::Postgres;

fn unix_now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn hmac_hex(secret: &str, id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(id.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const TYPO3_QUERY: &str = "SELECT u.uid AS id, u.username, u.usergroup AS groups, \
     s.ses_tstamp + 3600 AS expires_at, u.email \
     FROM fe_sessions s JOIN fe_users u ON u.uid = s.ses_userid WHERE s.ses_id = $1";

fn sqlite_config(url: &str, extra: &str) -> String {
    format!(
        r#"
[[aspect]]
name = "frontend.user"
credential = {{ cookie = "fe_typo_user" }}
{extra}
[aspect.sql]
url = "{url}"
query = "{TYPO3_QUERY}"
hash = "hmac-sha256"
secret = "typo3-session-key"
timeout = "1s"
max_connections = 2
"#
    )
}

#[tokio::test]
async fn sqlite_typo3_sessions_with_hashed_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo3.sqlite");
    let setup = SqlitePool::connect_with(
        SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .unwrap()
            .create_if_missing(true),
    )
    .await
    .unwrap();
    for stmt in [
        "CREATE TABLE fe_sessions (ses_id TEXT PRIMARY KEY, ses_userid INTEGER, ses_tstamp INTEGER)",
        "CREATE TABLE fe_users (uid INTEGER PRIMARY KEY, username TEXT, usergroup TEXT, \
         email TEXT, password TEXT)",
        "INSERT INTO fe_users VALUES (5, 'ann', '1,2', 'ann@example.com', '$argon2…'), \
         (6, 'old', '', NULL, 'x')",
    ] {
        sqlx::query(stmt).execute(&setup).await.unwrap();
    }
    let now = unix_now();
    for (sid, uid, tstamp) in [("s3ss10n", 5, now), ("stale", 6, now - 7200)] {
        sqlx::query("INSERT INTO fe_sessions VALUES (?, ?, ?)")
            .bind(hmac_hex("typo3-session-key", sid))
            .bind(uid)
            .bind(tstamp)
            .execute(&setup)
            .await
            .unwrap();
    }
    // A row stored under the plain id must not match: ids are hashed.
    sqlx::query("INSERT INTO fe_sessions VALUES ('plain', 5, ?)")
        .bind(now)
        .execute(&setup)
        .await
        .unwrap();
    setup.close().await;

    let url = format!("sqlite://{}", path.display());
    let auth = authenticator(&sqlite_config(&url, "")).await.unwrap();
    let a = resolve_one(
        &auth,
        "frontend.user",
        &cookie("fe_typo_user=s3ss10n"),
        None,
    )
    .await;
    assert!(a.logged_in);
    assert_eq!(a.id.as_deref(), Some("5"));
    assert_eq!(a.username.as_deref(), Some("ann"));
    assert_eq!(a.groups, ["1", "2"]);
    assert_eq!(a.properties.get("email"), Some(&json!("ann@example.com")));
    assert!(!a.properties.contains_key("password"));
    let exp = a
        .expires_at
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(i64::try_from(exp).unwrap(), now + 3600);

    for (headers, what) in [
        (HeaderMap::new(), "no cookie"),
        (cookie("fe_typo_user=unknown"), "unknown session"),
        (cookie("fe_typo_user=stale"), "expired session"),
        (cookie("fe_typo_user=plain"), "unhashed id"),
        (cookie("fe_typo_user=x' OR '1'='1"), "injection attempt"),
    ] {
        let a = resolve_one(&auth, "frontend.user", &headers, None).await;
        assert!(!a.logged_in, "{what}");
    }

    // A missing database file: anonymous, or a 503 under reject.
    let gone = format!("sqlite://{}", dir.path().join("missing.sqlite").display());
    let lenient = authenticator(&sqlite_config(&gone, "")).await.unwrap();
    let a = resolve_one(
        &lenient,
        "frontend.user",
        &cookie("fe_typo_user=s3ss10n"),
        None,
    )
    .await;
    assert!(!a.logged_in);
    let strict = authenticator(&sqlite_config(&gone, "on_error = \"reject\""))
        .await
        .unwrap();
    let e = strict
        .resolve(&cookie("fe_typo_user=s3ss10n"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), FailureKind::Unavailable | FailureKind::Timeout),
        "{e}"
    );
}

fn pg_config(url: &str, name: &str, query: &str, extra: &str) -> String {
    format!(
        r#"
[[aspect]]
name = "{name}"
credential = {{ cookie = "sid" }}
{extra}
[aspect.sql]
url = "{url}"
query = "{query}"
timeout = "400ms"
max_connections = 2
"#
    )
}

const PG_QUERY: &str = "SELECT uid AS id, name AS username, roles AS groups, \
     expires AS expires_at, profile, active FROM sessions, pg_sleep(delay) WHERE ses_id = $1";

#[tokio::test]
async fn postgres_sessions_slow_queries_and_outage() {
    let Some(mut pg) = Postgres::start() else {
        return;
    };
    let setup = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    sqlx::query(
        "CREATE TABLE sessions (ses_id text PRIMARY KEY, uid integer, name text, roles text[], \
         profile jsonb, expires bigint, active boolean DEFAULT true, \
         created timestamptz DEFAULT now(), delay float8 DEFAULT 0)",
    )
    .execute(&setup)
    .await
    .unwrap();
    let now = unix_now();
    sqlx::query(
        "INSERT INTO sessions (ses_id, uid, name, roles, profile, expires, delay) VALUES \
         ('good', 1, 'ann', ARRAY['admin','ed'], '{\"theme\":\"dark\"}', $1, 0), \
         ('old', 2, 'bob', NULL, NULL, $2, 0), \
         ('slow', 3, 'sid', NULL, NULL, NULL, 5)",
    )
    .bind(now + 600)
    .bind(now - 600)
    .execute(&setup)
    .await
    .unwrap();

    let url = pg.url();
    let auth = authenticator(&pg_config(&url, "pg.user", PG_QUERY, ""))
        .await
        .unwrap();
    let strict = authenticator(&pg_config(
        &url,
        "pg.user",
        PG_QUERY,
        "on_error = \"reject\"",
    ))
    .await
    .unwrap();

    // Logged in, with an array, json and a boolean mapped.
    let a = resolve_one(&auth, "pg.user", &cookie("sid=good"), None).await;
    assert!(a.logged_in);
    assert_eq!(a.id.as_deref(), Some("1"));
    assert_eq!(a.username.as_deref(), Some("ann"));
    assert_eq!(a.groups, ["admin", "ed"]);
    assert_eq!(a.properties.get("profile"), Some(&json!({"theme": "dark"})));
    assert_eq!(a.properties.get("active"), Some(&json!(true)));
    assert!(a.expires_at.is_some());

    // Anonymous, expired, malformed.
    for (headers, what) in [
        (HeaderMap::new(), "no cookie"),
        (cookie("sid=nope"), "unknown session"),
        (cookie("sid=old"), "expired session"),
        (
            cookie("sid='; DROP TABLE sessions; --"),
            "injection attempt",
        ),
    ] {
        let a = resolve_one(&auth, "pg.user", &headers, None).await;
        assert!(!a.logged_in, "{what}");
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&setup)
        .await
        .unwrap();
    assert_eq!(rows, 3, "the table survived");

    // A slow query ends at the timeout and does not hold up the others,
    // even with the pool's two connections both asked for.
    let started = Instant::now();
    let slow_cookie = cookie("sid=slow");
    let good_cookie = cookie("sid=good");
    let slow = auth.resolve(&slow_cookie, None);
    let fast = async {
        let t = Instant::now();
        let a = resolve_one(&auth, "pg.user", &good_cookie, None).await;
        (a, t.elapsed())
    };
    let (slow, (fast, fast_took)) = tokio::join!(slow, fast);
    assert!(!slow.unwrap().aspects.get("pg.user").logged_in);
    assert!(fast.logged_in);
    assert!(
        fast_took < Duration::from_millis(350),
        "fast look-up took {fast_took:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let e = strict.resolve(&slow_cookie, None).await.unwrap_err();
    assert_eq!(e.kind(), FailureKind::Timeout, "{e}");

    // A column type without a mapping is an unusable answer.
    let typed = authenticator(&pg_config(
        &url,
        "typed",
        "SELECT uid AS id, created FROM sessions WHERE ses_id = $1",
        "on_error = \"reject\"",
    ))
    .await
    .unwrap();
    let e = typed.resolve(&cookie("sid=good"), None).await.unwrap_err();
    assert_eq!(e.kind(), FailureKind::InvalidAnswer, "{e}");
    assert!(
        std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("created")),
        "{e:?}"
    );

    // The server stops: anonymous, or a 503 under reject, quickly.
    setup.close().await;
    pg.stop();
    let started = Instant::now();
    let a = resolve_one(&auth, "pg.user", &good_cookie, None).await;
    assert!(!a.logged_in);
    let e = strict.resolve(&good_cookie, None).await.unwrap_err();
    assert!(
        matches!(e.kind(), FailureKind::Unavailable | FailureKind::Timeout),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}
