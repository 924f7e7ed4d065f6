//! Redis session store against a real `redis-server`: JSON and hash
//! records, TTL as expiry, store down, `on_error = "reject"`, and
//! revalidation noticing a deleted (logged-out) session.

use std::time::{Duration, Instant, SystemTime};

use http::HeaderMap;
use redis::AsyncCommands as _;
use ws_auth::{Check, FailureKind, SessionEnd};

use crate::harness::redis_client;
use crate::{authenticator, cookie, resolve_one};
use ws_test_support::Redis;

fn config(url: &str, extra_aspect: &str, extra_source: &str) -> String {
    format!(
        r#"
[[aspect]]
name = "frontend.user"
credential = {{ cookie = "fe_typo_user" }}
{extra_aspect}
[aspect.redis]
url = "{url}"
key = "app:sess:{{id}}"
timeout = "500ms"
{extra_source}
"#
    )
}

#[tokio::test]
async fn json_record_with_ttl_logs_in() {
    let Some(redis) = Redis::start() else { return };
    let mut db = redis_client(&redis).await;
    let () = db
        .set_ex(
            "app:sess:abc",
            r#"{"id": 7, "username": "ann", "groups": "1,5", "lang": "de"}"#,
            120,
        )
        .await
        .unwrap();
    let auth = authenticator(&config(&redis.url(), "", "")).await.unwrap();
    let a = resolve_one(&auth, "frontend.user", &cookie("fe_typo_user=abc"), None).await;
    assert!(a.logged_in);
    assert_eq!(a.id.as_deref(), Some("7"));
    assert_eq!(a.username.as_deref(), Some("ann"));
    assert_eq!(a.groups, ["1", "5"]);
    assert_eq!(a.properties.get("lang"), Some(&serde_json::json!("de")));
    // The key's TTL is the expiry.
    let left = a
        .expires_at
        .expect("expiry from the TTL")
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(
        left > Duration::from_secs(110) && left <= Duration::from_secs(120),
        "{left:?}"
    );

    // A quoted cookie value, among others and duplicates: the first wins.
    let h = cookie("x=1; fe_typo_user=\"abc\"; fe_typo_user=zzz");
    assert!(
        resolve_one(&auth, "frontend.user", &h, None)
            .await
            .logged_in
    );
}

#[tokio::test]
async fn hash_record_with_field_mapping() {
    let Some(redis) = Redis::start() else { return };
    let mut db = redis_client(&redis).await;
    let () = db
        .hset_multiple(
            "app:sess:h1",
            &[
                ("uid", "12"),
                ("user", "carl"),
                ("roles", "[\"a\",\"b\"]"),
                ("ip", "::1"),
            ],
        )
        .await
        .unwrap();
    let auth = authenticator(&config(
        &redis.url(),
        "",
        "format = \"hash\"\n[aspect.redis.fields]\nid = \"uid\"\nusername = \"user\"\ngroups = \"roles\"",
    ))
    .await
    .unwrap();
    let a = resolve_one(&auth, "frontend.user", &cookie("fe_typo_user=h1"), None).await;
    assert_eq!(a.id.as_deref(), Some("12"));
    assert_eq!(a.username.as_deref(), Some("carl"));
    assert_eq!(a.groups, ["a", "b"]);
    assert_eq!(a.expires_at, None, "no TTL, no expiry");
    assert_eq!(a.properties.get("ip"), Some(&serde_json::json!("::1")));
}

#[tokio::test]
async fn anonymous_expired_and_malformed() {
    let Some(redis) = Redis::start() else { return };
    let mut db = redis_client(&redis).await;
    let past = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 10;
    let () = db
        .set(
            "app:sess:old",
            format!(r#"{{"id": 1, "expires_at": {past}}}"#),
        )
        .await
        .unwrap();
    let () = db.set("app:sess:guest", r#"{"id": null}"#).await.unwrap();
    let () = db.set("app:sess:bad", "not json {").await.unwrap();
    let () = db.hset("app:sess:hash", "id", "1").await.unwrap();
    let auth = authenticator(&config(&redis.url(), "", "")).await.unwrap();
    for (headers, what) in [
        (HeaderMap::new(), "no cookie"),
        (cookie("other=abc"), "another cookie"),
        (cookie("fe_typo_user="), "empty cookie"),
        (cookie("fe_typo_user=unknown"), "unknown session"),
        (cookie("fe_typo_user=old"), "expired record"),
        (cookie("fe_typo_user=guest"), "record without a user"),
        (cookie("fe_typo_user=*"), "a pattern is not a key"),
        (cookie("fe_typo_user=bad"), "record not JSON: a warning"),
        (cookie("fe_typo_user=hash"), "a hash where JSON is expected"),
    ] {
        let a = resolve_one(&auth, "frontend.user", &headers, None).await;
        assert!(!a.logged_in, "{what}");
    }
    // Under `reject`, an unusable record is a typed error, an unknown
    // session is still simply anonymous.
    let strict = authenticator(&config(&redis.url(), "on_error = \"reject\"", ""))
        .await
        .unwrap();
    let e = strict
        .resolve(&cookie("fe_typo_user=bad"), None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.aspect(), e.kind()),
        ("frontend.user", FailureKind::InvalidAnswer)
    );
    let e = strict
        .resolve(&cookie("fe_typo_user=hash"), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), FailureKind::InvalidAnswer);
    let a = resolve_one(
        &strict,
        "frontend.user",
        &cookie("fe_typo_user=unknown"),
        None,
    )
    .await;
    assert!(!a.logged_in);
}

#[tokio::test]
async fn store_down_is_anonymous_or_a_503() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let mut db = redis_client(&redis).await;
    let () = db.set("app:sess:abc", r#"{"id": 7}"#).await.unwrap();
    let lenient = authenticator(&config(&redis.url(), "", "")).await.unwrap();
    let strict = authenticator(&config(&redis.url(), "on_error = \"reject\"", ""))
        .await
        .unwrap();
    let h = cookie("fe_typo_user=abc");
    assert!(
        resolve_one(&lenient, "frontend.user", &h, None)
            .await
            .logged_in
    );
    assert!(
        resolve_one(&strict, "frontend.user", &h, None)
            .await
            .logged_in
    );

    redis.kill();
    let started = Instant::now();
    let a = resolve_one(&lenient, "frontend.user", &h, None).await;
    assert!(!a.logged_in);
    let e = strict.resolve(&h, None).await.unwrap_err();
    assert!(
        matches!(e.kind(), FailureKind::Unavailable | FailureKind::Timeout),
        "{e}"
    );
    assert_eq!(e.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(e.to_string().contains("frontend.user"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by the timeout"
    );
    // No credential: no look-up, so no failure either.
    assert!(strict.resolve(&HeaderMap::new(), None).await.is_ok());
}

#[tokio::test]
async fn a_store_down_at_start_up_is_not_a_config_error() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let auth = authenticator(&config(&url, "", "")).await.expect("lazy");
    let a = resolve_one(&auth, "frontend.user", &cookie("fe_typo_user=abc"), None).await;
    assert!(!a.logged_in);
}

#[tokio::test]
async fn revalidation_notices_logout_and_changes() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let mut db = redis_client(&redis).await;
    let () = db
        .set("app:sess:abc", r#"{"id": 7, "groups": ["a"]}"#)
        .await
        .unwrap();
    let every = Duration::from_millis(200);
    let auth = authenticator(&config(&redis.url(), "revalidate_every = \"200ms\"", ""))
        .await
        .unwrap();
    let mut resolved = auth
        .resolve(&cookie("fe_typo_user=abc"), None)
        .await
        .unwrap();
    let mut r = resolved.revalidators.pop().expect("a revalidator");
    assert_eq!((r.name(), r.every()), ("frontend.user", Some(every)));

    // A change is seen by `check`.
    let () = db
        .set("app:sess:abc", r#"{"id": 7, "groups": ["a", "b"]}"#)
        .await
        .unwrap();
    let Check::Valid(u) = r.check().await else {
        panic!("still valid")
    };
    assert_eq!(u.groups, ["a", "b"]);

    // Logout: the session is deleted while the connection lives.
    let (changes_tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(r.until_ended(move |name, user| {
        let _ = changes_tx.send((name.to_owned(), user.groups.clone()));
    }));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let () = db
        .set("app:sess:abc", r#"{"id": 7, "groups": ["c"]}"#)
        .await
        .unwrap();
    let change = tokio::time::timeout(Duration::from_secs(2), changes.recv())
        .await
        .expect("a change reported")
        .unwrap();
    assert_eq!(change, ("frontend.user".to_owned(), vec!["c".to_owned()]));
    let deleted = Instant::now();
    let _: i64 = db.del("app:sess:abc").await.unwrap();
    let end = tokio::time::timeout(every + Duration::from_secs(1), task)
        .await
        .expect("ended within revalidate_every + 1 s")
        .unwrap();
    assert!(matches!(end, SessionEnd::Ended), "{end:?}");
    assert!(deleted.elapsed() <= every + Duration::from_secs(1));

    // Store down during revalidation: kept by default, `Unavailable` under reject.
    let () = db.set("app:sess:abc", r#"{"id": 7}"#).await.unwrap();
    let strict = authenticator(&config(
        &redis.url(),
        "revalidate_every = \"1s\"\non_error = \"reject\"",
        "",
    ))
    .await
    .unwrap();
    let mut lenient_r = auth
        .resolve(&cookie("fe_typo_user=abc"), None)
        .await
        .unwrap()
        .revalidators
        .pop()
        .unwrap();
    let mut strict_r = strict
        .resolve(&cookie("fe_typo_user=abc"), None)
        .await
        .unwrap()
        .revalidators
        .pop()
        .unwrap();
    redis.kill();
    assert!(matches!(lenient_r.check().await, Check::Valid(u) if u.id.as_deref() == Some("7")));
    let Check::Unavailable(e) = strict_r.check().await else {
        panic!("unavailable under reject")
    };
    assert_eq!(e.aspect(), "frontend.user");
}

#[tokio::test]
async fn revalidation_at_the_ttl_follows_sliding_sessions() {
    let Some(redis) = Redis::start() else { return };
    let mut db = redis_client(&redis).await;
    let () = db.pset_ex("app:sess:s", r#"{"id": 1}"#, 800).await.unwrap();
    // No revalidate_every: only the known expiry (the TTL) is checked.
    let auth = authenticator(&config(&redis.url(), "", "")).await.unwrap();
    let mut resolved = auth.resolve(&cookie("fe_typo_user=s"), None).await.unwrap();
    let r = resolved
        .revalidators
        .pop()
        .expect("expiry known: a revalidator");
    assert_eq!(r.every(), None);
    // The application extends the session before it expires…
    let () = db.pexpire("app:sess:s", 1600).await.unwrap();
    let started = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(4), r.until_ended(|_, _| {}))
        .await
        .expect("ends when the key is gone");
    assert!(matches!(end, SessionEnd::Ended));
    // …so the connection outlives the first TTL and ends with the second.
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
}
