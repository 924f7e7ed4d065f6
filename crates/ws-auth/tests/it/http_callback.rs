//! HTTP session callback against a real in-process HTTP application:
//! forwarded cookies and headers, 401/403 as anonymous, the cache, a slow,
//! failing or absent application.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;
use ws_auth::FailureKind;

use crate::harness::{App, Seen};
use crate::{authenticator, cookie, resolve_one};

/// The application: knows session `good` (cookie `sess`), says 401 for
/// `gone`, 403 for `banned`, answers slowly for `slow`, fails for `boom`,
/// answers garbage for `garbage`, an expired session for `old`.
fn application(seen: &Seen) -> (StatusCode, String) {
    let cookies = seen
        .headers
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let session = cookies
        .split("; ")
        .find_map(|c| c.strip_prefix("sess="))
        .unwrap_or("");
    let past = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 5;
    match session {
        "good" => (
            StatusCode::OK,
            json!({
                "user": {"uid": 42, "name": "ann"},
                "groups": ["chat"],
                "seen_agent": seen.headers.get("user-agent").and_then(|v| v.to_str().ok()),
                "seen_lang": seen.headers.get("accept-language").and_then(|v| v.to_str().ok()),
                "seen_method": seen.method.as_str(),
                "seen_body": String::from_utf8_lossy(&seen.body),
                "seen_query": seen.uri.query(),
            })
            .to_string(),
        ),
        "gone" => (StatusCode::UNAUTHORIZED, String::new()),
        "banned" => (StatusCode::FORBIDDEN, String::new()),
        "nobody" => (StatusCode::OK, "null".to_owned()),
        "slow" => (StatusCode::GATEWAY_TIMEOUT, String::new()),
        "boom" => (StatusCode::INTERNAL_SERVER_ERROR, "oops".to_owned()),
        "garbage" => (StatusCode::OK, "<html>".to_owned()),
        "old" => (
            StatusCode::OK,
            json!({"user": {"uid": 1}, "expires_at": past}).to_string(),
        ),
        _ => (StatusCode::UNAUTHORIZED, String::new()),
    }
}

fn config(url: &str, extra_aspect: &str, extra_source: &str) -> String {
    format!(
        r#"
[[aspect]]
name = "app.user"
credential = {{ cookie = "sess" }}
{extra_aspect}
[aspect.http]
url = "{url}"
forward_headers = ["accept-language"]
timeout = "300ms"
{extra_source}
[aspect.http.fields]
id = "/user/uid"
username = "/user/name"
"#
    )
}

fn request(session: &str) -> HeaderMap {
    let mut h = cookie(&format!("theme=dark; sess={session}"));
    h.insert("accept-language", HeaderValue::from_static("de"));
    h.insert("x-secret", HeaderValue::from_static("not forwarded"));
    h
}

#[tokio::test]
async fn forwards_cookies_and_maps_the_answer() {
    let app = App::start(application).await;
    let auth = authenticator(&config(&app.url("/session"), "", "cache_ttl = \"0s\""))
        .await
        .unwrap();
    let a = resolve_one(&auth, "app.user", &request("good"), None).await;
    assert!(a.logged_in);
    assert_eq!(a.id.as_deref(), Some("42"));
    assert_eq!(a.username.as_deref(), Some("ann"));
    assert_eq!(a.groups, ["chat"]);
    assert_eq!(a.properties.get("seen_lang"), Some(&json!("de")));
    assert_eq!(a.properties.get("seen_agent"), Some(&json!("ws-provider")));
    assert_eq!(a.properties.get("seen_method"), Some(&json!("GET")));

    // POST carries the credential in a JSON body; GET may put it in the URL.
    let post = authenticator(&config(
        &app.url("/session"),
        "",
        "method = \"POST\"\ncache_ttl = \"0s\"",
    ))
    .await
    .unwrap();
    let a = resolve_one(&post, "app.user", &request("good"), None).await;
    let body: serde_json::Value =
        serde_json::from_str(a.properties["seen_body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"aspect": "app.user", "credential": "good"}));
    let templated = authenticator(&config(&app.url("/session?sid={credential}"), "", ""))
        .await
        .unwrap();
    let a = resolve_one(&templated, "app.user", &request("good"), None).await;
    assert_eq!(a.properties.get("seen_query"), Some(&json!("sid=good")));
}

#[tokio::test]
async fn refusals_and_absent_sessions_are_anonymous() {
    let app = App::start(application).await;
    let auth = authenticator(&config(&app.url("/session"), "", "cache_ttl = \"0s\""))
        .await
        .unwrap();
    let before = app.hits();
    let a = resolve_one(&auth, "app.user", &cookie("theme=dark"), None).await;
    assert!(!a.logged_in);
    assert_eq!(app.hits(), before, "no credential, no request");
    for (session, what) in [
        ("gone", "401"),
        ("banned", "403"),
        ("nobody", "null answer"),
        ("old", "expired"),
        ("%22;,", "malformed credential"),
    ] {
        let a = resolve_one(&auth, "app.user", &request(session), None).await;
        assert!(!a.logged_in, "{what}");
    }
}

#[tokio::test]
async fn answers_are_cached_per_credential() {
    let app = App::start(application).await;
    let auth = authenticator(&config(&app.url("/session"), "", "cache_ttl = \"300ms\""))
        .await
        .unwrap();
    for _ in 0..5 {
        assert!(
            resolve_one(&auth, "app.user", &request("good"), None)
                .await
                .logged_in
        );
        assert!(
            !resolve_one(&auth, "app.user", &request("gone"), None)
                .await
                .logged_in
        );
    }
    assert_eq!(app.hits(), 2, "one request per credential");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        resolve_one(&auth, "app.user", &request("good"), None)
            .await
            .logged_in
    );
    assert_eq!(app.hits(), 3, "asked again after the TTL");
}

#[tokio::test]
async fn failing_slow_or_absent_application() {
    let app = App::start(application).await;
    let url = app.url("/session");
    let lenient = authenticator(&config(&url, "", "")).await.unwrap();
    let strict = authenticator(&config(&url, "on_error = \"reject\"", ""))
        .await
        .unwrap();
    for (session, kind) in [
        ("boom", FailureKind::Unavailable),
        ("garbage", FailureKind::InvalidAnswer),
        ("slow", FailureKind::Timeout),
    ] {
        let started = Instant::now();
        let a = resolve_one(&lenient, "app.user", &request(session), None).await;
        assert!(!a.logged_in, "{session}");
        let e = strict.resolve(&request(session), None).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{session}: {e}");
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(1), "{session}");
    }
    // Failures are not cached: the application is asked again.
    let hits = app.hits();
    let _ = lenient.resolve(&request("boom"), None).await;
    assert_eq!(app.hits(), hits + 1);

    // Nothing listens any more.
    drop(app);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/session");
    let down = authenticator(&config(&url, "on_error = \"reject\"", ""))
        .await
        .unwrap();
    let e = down.resolve(&request("good"), None).await.unwrap_err();
    assert_eq!(e.kind(), FailureKind::Unavailable, "{e}");
    let down = authenticator(&config(&url, "", "")).await.unwrap();
    assert!(
        !resolve_one(&down, "app.user", &request("good"), None)
            .await
            .logged_in
    );
}

#[tokio::test]
async fn bearer_credentials_are_forwarded_as_authorization() {
    let app = App::start(|seen: &Seen| {
        let auth = seen
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        match auth {
            Some("Bearer t0k3n") => (StatusCode::OK, json!({"id": "b"}).to_string()),
            _ => (StatusCode::UNAUTHORIZED, String::new()),
        }
    })
    .await;
    let auth = authenticator(&format!(
        r#"
[[aspect]]
name = "api.user"
credential = "bearer"
[aspect.http]
url = "{}"
forward_cookies = false
"#,
        app.url("/whoami")
    ))
    .await
    .unwrap();
    let mut h = HeaderMap::new();
    h.insert("authorization", HeaderValue::from_static("Bearer t0k3n"));
    let a = resolve_one(&auth, "api.user", &h, None).await;
    assert_eq!(a.id.as_deref(), Some("b"));
    assert_eq!(app.hits(), 1);
}
