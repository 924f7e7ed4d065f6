//! JWT aspects with real keys: HS256 (a secret written by the test), RS256
//! and Ed25519 (`tests/keys/`, made once with the openssl CLI), presented as
//! a cookie, a bearer token, a `Sec-WebSocket-Protocol` entry and a query
//! parameter.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use ws_auth::SessionEnd;

use crate::{authenticator, cookie, header, resolve_one};

const SECRET: &str = "a-test-secret-of-a-decent-length!";

fn keys() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn sign(alg: Algorithm, claims: &Value) -> String {
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::RS256 => {
            EncodingKey::from_rsa_pem(&std::fs::read(keys().join("rs256.key.pem")).unwrap())
                .unwrap()
        }
        Algorithm::EdDSA => {
            EncodingKey::from_ed_pem(&std::fs::read(keys().join("ed25519.key.pem")).unwrap())
                .unwrap()
        }
        other => unreachable!("{other:?}"),
    };
    jsonwebtoken::encode(&Header::new(alg), claims, &key).expect("sign")
}

/// Three aspects, one per algorithm and credential kind; the HS256 secret in
/// a file with a trailing newline (trimmed).
async fn three(dir: &Path, extra: &str) -> ws_auth::Authenticator {
    let secret = dir.join("hs.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let keys = keys();
    let text = format!(
        r#"
[[aspect]]
name = "hs.user"
credential = {{ cookie = "hs" }}
[aspect.jwt]
algorithm = "HS256"
key_file = "{secret}"
{extra}

[[aspect]]
name = "rs.user"
credential = "bearer"
[aspect.jwt]
algorithm = "RS256"
key_file = "{rs}"
{extra}
[aspect.jwt.claims]
username = "preferred_username"
groups = "/realm_access/roles"

[[aspect]]
name = "ed.user"
credential = "protocol"
[aspect.jwt]
algorithm = "EdDSA"
key_file = "{ed}"
{extra}
"#,
        secret = secret.display(),
        rs = keys.join("rs256.pub.pem").display(),
        ed = keys.join("ed25519.pub.pem").display(),
    );
    authenticator(&text).await.expect("valid config")
}

fn all_three(hs: &str, rs: &str, ed: &str) -> HeaderMap {
    let mut h = cookie(&format!("other=1; hs={hs}"));
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {rs}")).unwrap(),
    );
    h.insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("chat, bearer.{ed}")).unwrap(),
    );
    h
}

#[tokio::test]
async fn every_algorithm_logs_in_with_mapped_claims() {
    let dir = tempfile::tempdir().unwrap();
    let auth = three(dir.path(), "").await;
    let exp = now() + 600;
    let hs = sign(
        Algorithm::HS256,
        &json!({"sub": "7", "name": "ann", "groups": ["editors"], "exp": exp, "email": "a@x"}),
    );
    let rs = sign(
        Algorithm::RS256,
        &json!({"sub": "u-8", "preferred_username": "bob",
                "realm_access": {"roles": ["admin", "ops"]}, "exp": exp}),
    );
    let ed = sign(
        Algorithm::EdDSA,
        &json!({"sub": 9, "exp": exp, "groups": "a,b"}),
    );
    let resolved = auth.resolve(&all_three(&hs, &rs, &ed), None).await.unwrap();

    let a = resolved.aspects.get("hs.user");
    assert!(a.logged_in);
    assert_eq!(a.id.as_deref(), Some("7"));
    assert_eq!(a.username.as_deref(), Some("ann"));
    assert_eq!(a.groups, ["editors"]);
    assert_eq!(a.properties.get("email"), Some(&json!("a@x")));
    assert!(!a.properties.contains_key("exp") && !a.properties.contains_key("sub"));
    assert_eq!(a.expires_at, Some(UNIX_EPOCH + Duration::from_secs(exp)));

    let b = resolved.aspects.get("rs.user");
    assert_eq!(
        (b.id.as_deref(), b.username.as_deref()),
        (Some("u-8"), Some("bob"))
    );
    assert_eq!(b.groups, ["admin", "ops"]);

    let c = resolved.aspects.get("ed.user");
    assert_eq!(c.id.as_deref(), Some("9"));
    assert_eq!(c.groups, ["a", "b"]);

    // Every logged-in JWT aspect can end (at exp) and gets a revalidator.
    let mut names: Vec<_> = resolved.revalidators.iter().map(|r| r.name()).collect();
    names.sort_unstable();
    assert_eq!(names, ["ed.user", "hs.user", "rs.user"]);
    assert!(auth.is_credential_protocol("bearer.abc"));
    assert!(!auth.is_credential_protocol("chat"));
}

#[tokio::test]
async fn no_token_is_anonymous_and_every_aspect_is_present() {
    let dir = tempfile::tempdir().unwrap();
    let auth = three(dir.path(), "").await;
    let resolved = auth.resolve(&HeaderMap::new(), None).await.unwrap();
    assert_eq!(resolved.aspects.len(), 3);
    for name in ["hs.user", "rs.user", "ed.user"] {
        assert!(resolved.aspects.contains(name));
        assert!(!resolved.aspects.get(name).logged_in);
    }
    assert!(resolved.revalidators.is_empty());
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let auth = three(dir.path(), "leeway = \"10s\"").await;
    let t = now();
    let cases = [
        (json!({"sub": "1", "exp": t - 60}), false, "expired"),
        (
            json!({"sub": "1", "exp": t - 3}),
            true,
            "expired within the leeway",
        ),
        (
            json!({"sub": "1", "exp": t + 60, "nbf": t + 60}),
            false,
            "not yet valid",
        ),
        (
            json!({"sub": "1", "exp": t + 60, "nbf": t + 3}),
            true,
            "nbf within the leeway",
        ),
    ];
    for (claims, logged_in, what) in cases {
        let token = sign(Algorithm::HS256, &claims);
        let a = resolve_one(&auth, "hs.user", &cookie(&format!("hs={token}")), None).await;
        assert_eq!(a.logged_in, logged_in, "{what}");
    }
}

/// The three aspects with no leeway, and a token for `alg` that expires in
/// two seconds (not one: `now()` is whole seconds, so `+ 1` could be
/// reached before the token is even checked on a busy machine).
async fn expiring_soon(dir: &Path, alg: Algorithm) -> (ws_auth::Authenticator, u64, String) {
    let auth = three(dir, "leeway = \"0s\"").await;
    let exp = now() + 2;
    (auth, exp, sign(alg, &json!({"sub": "1", "exp": exp})))
}

#[tokio::test]
async fn a_token_presented_again_is_refused_once_it_has_expired() {
    // The second and third handshakes find the token among those already
    // checked (`cache_size`, on by default): past `exp` it must still be
    // refused. (The unit tests in `source::jwt` check the cache's own time
    // check; the authenticator checks the user's expiry as well.)
    let dir = tempfile::tempdir().unwrap();
    let (auth, exp, token) = expiring_soon(dir.path(), Algorithm::HS256).await;
    let headers = cookie(&format!("hs={token}"));
    for _ in 0..2 {
        assert!(
            resolve_one(&auth, "hs.user", &headers, None)
                .await
                .logged_in
        );
    }
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a = resolve_one(&auth, "hs.user", &headers, None).await;
    assert!(!a.logged_in, "an expired token was accepted from the cache");
}

#[tokio::test]
async fn malformed_and_forged_tokens_are_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let auth = three(dir.path(), "").await;
    let exp = now() + 600;
    let good = json!({"sub": "1", "exp": exp});
    let other_secret = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(b"another secret"),
    )
    .unwrap();
    // The RS256 aspect's public key used as an HS256 secret: the classic
    // algorithm-confusion forgery.
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(&std::fs::read(keys().join("rs256.pub.pem")).unwrap()),
    )
    .unwrap();
    let rs_token = sign(Algorithm::RS256, &good);
    let no_exp = sign(Algorithm::HS256, &json!({"sub": "1"}));
    let no_sub = sign(Algorithm::HS256, &json!({"exp": exp}));
    let mut tampered = sign(Algorithm::HS256, &good);
    tampered.insert(tampered.len() - 2, 'A');

    for (token, what) in [
        ("garbage", "not a JWT"),
        ("a.b.c", "three parts of nothing"),
        (other_secret.as_str(), "another secret"),
        (rs_token.as_str(), "another algorithm"),
        (no_exp.as_str(), "no exp"),
        (no_sub.as_str(), "no subject"),
        (tampered.as_str(), "tampered signature"),
    ] {
        let a = resolve_one(&auth, "hs.user", &cookie(&format!("hs={token}")), None).await;
        assert!(!a.logged_in, "{what}");
    }
    let a = resolve_one(
        &auth,
        "rs.user",
        &header("authorization", &format!("Bearer {confused}")),
        None,
    )
    .await;
    assert!(!a.logged_in, "algorithm confusion");
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let auth = three(dir.path(), "issuer = \"app\"\naudience = \"ws\"").await;
    let exp = now() + 600;
    for (claims, ok) in [
        (
            json!({"sub": "1", "exp": exp, "iss": "app", "aud": "ws"}),
            true,
        ),
        (
            json!({"sub": "1", "exp": exp, "iss": "app", "aud": ["x", "ws"]}),
            true,
        ),
        (
            json!({"sub": "1", "exp": exp, "iss": "evil", "aud": "ws"}),
            false,
        ),
        (
            json!({"sub": "1", "exp": exp, "iss": "app", "aud": "other"}),
            false,
        ),
        (json!({"sub": "1", "exp": exp}), false),
    ] {
        let token = sign(Algorithm::HS256, &claims);
        let a = resolve_one(&auth, "hs.user", &cookie(&format!("hs={token}")), None).await;
        assert_eq!(a.logged_in, ok, "{claims}");
    }
}

#[tokio::test]
async fn the_session_ends_at_exp_without_polling() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, exp, token) = expiring_soon(dir.path(), Algorithm::EdDSA).await;
    let headers = header("sec-websocket-protocol", &format!("bearer.{token}"));
    let mut resolved = auth.resolve(&headers, None).await.unwrap();
    assert!(resolved.aspects.get("ed.user").logged_in);
    let r = resolved.revalidators.pop().expect("a revalidator");
    let at = UNIX_EPOCH + Duration::from_secs(exp);
    assert_eq!(r.every(), None);
    assert_eq!(r.expires_at(), Some(at));
    assert_eq!(r.next_check(SystemTime::now()), Some(at));
    let started = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(4), r.until_ended(|_, _| {}))
        .await
        .expect("ended at exp");
    assert!(matches!(end, SessionEnd::Ended), "{end:?}");
    let left = at.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(left.is_zero(), "ended {left:?} before exp");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn query_parameters_and_environment_keys() {
    // Cargo sets CARGO_PKG_NAME for test processes: a variable the test
    // need not (and, in edition 2024, cannot safely) set itself.
    let Ok(secret) = std::env::var("CARGO_PKG_NAME") else {
        eprintln!("SKIPPED: CARGO_PKG_NAME not set by the test runner");
        return;
    };
    let auth = authenticator(
        r#"
[[aspect]]
name = "q.user"
credential = { query = "token" }
[aspect.jwt]
algorithm = "HS256"
key_env = "CARGO_PKG_NAME"
"#,
    )
    .await
    .unwrap();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "q", "exp": now() + 60}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let query = format!("room=1&token={token}&token=second");
    let a = resolve_one(&auth, "q.user", &HeaderMap::new(), Some(&query)).await;
    assert_eq!(a.id.as_deref(), Some("q"));
    let a = resolve_one(&auth, "q.user", &HeaderMap::new(), Some("room=1")).await;
    assert!(!a.logged_in);
}
