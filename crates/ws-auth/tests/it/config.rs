//! Configuration checked up front: every error names the aspect and the key
//! (or file), and a full example with every source builds.

use std::path::Path;

use ws_auth::ConfigError;

use crate::{aspects, authenticator};

fn keys() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
}

async fn error(text: &str) -> String {
    match authenticator(text).await {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            msg
        }
    }
}

#[tokio::test]
async fn missing_key_file_names_the_aspect_and_the_file() {
    let text = r#"
[[aspect]]
name = "backend.user"
credential = "bearer"
[aspect.jwt]
algorithm = "RS256"
key_file = "/nonexistent/jwt.pub.pem"
"#;
    let e = authenticator(text).await.unwrap_err();
    assert!(matches!(e, ConfigError::ReadFile { .. }), "{e:?}");
    let msg = error(text).await;
    assert!(
        msg.contains("backend.user")
            && msg.contains("jwt.key_file")
            && msg.contains("/nonexistent/jwt.pub.pem"),
        "{msg}"
    );
}

#[tokio::test]
async fn every_mistake_is_named() {
    let rs_private = keys().join("rs256.key.pem");
    let ed_public = keys().join("ed25519.pub.pem");
    let cases = [
        (
            r#"[aspect.jwt]
algorithm = "HS256"
key_env = "WS_AUTH_TEST_SURELY_UNSET""#
                .to_owned(),
            "WS_AUTH_TEST_SURELY_UNSET",
        ),
        (
            r#"[aspect.jwt]
algorithm = "HS256""#
                .to_owned(),
            "missing: give `jwt.key_file` or `jwt.key_env`",
        ),
        (
            format!(
                "[aspect.jwt]\nalgorithm = \"RS256\"\nkey_file = \"{}\"",
                ed_public.display()
            ),
            "not an RSA public key",
        ),
        (
            format!(
                "[aspect.jwt]\nalgorithm = \"RS256\"\nkey_file = \"{}\"",
                rs_private.display()
            ),
            "this is a private key",
        ),
        (
            r#"[aspect.redis]
url = "redis://127.0.0.1"
key = "sess:{user}""#
                .to_owned(),
            "redis.key: bad key template `sess:{user}`",
        ),
        (
            r#"[aspect.redis]
url = "mongodb://x""#
                .to_owned(),
            "redis.url",
        ),
        (
            r#"[aspect.sql]
url = "mysql://x/db"
query = "SELECT 1""#
                .to_owned(),
            "unsupported database",
        ),
        (
            r#"[aspect.sql]
url = "sqlite://x.db"
query = "SELECT 1"
hash = "hmac-sha256""#
                .to_owned(),
            "needs `secret` or `secret_env`",
        ),
        (
            r#"[aspect.http]
url = "ftp://app/session""#
                .to_owned(),
            "http:// or https://",
        ),
        (
            r#"[aspect.http]
url = "http://app/"
forward_headers = ["bad header"]"#
                .to_owned(),
            "`bad header` is not a header name",
        ),
        (
            r#"[aspect.http]
url = "https://app/"
ca_file = "/nonexistent/ca.pem""#
                .to_owned(),
            "http.ca_file",
        ),
    ];
    for (source, want) in cases {
        let text =
            format!("[[aspect]]\nname = \"frontend.user\"\ncredential = \"bearer\"\n{source}\n");
        let msg = error(&text).await;
        assert!(
            msg.contains("frontend.user") && msg.contains(want),
            "{want:?} not in {msg:?}"
        );
    }
}

#[tokio::test]
async fn aspect_level_mistakes() {
    let jwt = format!(
        "[aspect.jwt]\nalgorithm = \"EdDSA\"\nkey_file = \"{}\"\n",
        keys().join("ed25519.pub.pem").display()
    );
    let twice = format!(
        "[[aspect]]\nname = \"a\"\ncredential = \"bearer\"\n{jwt}\
         [[aspect]]\nname = \"a\"\ncredential = \"protocol\"\n{jwt}"
    );
    assert!(
        error(&twice)
            .await
            .contains("aspect `a` is configured more than once")
    );
    let reval = format!(
        "[[aspect]]\nname = \"a\"\ncredential = \"bearer\"\nrevalidate_every = \"1m\"\n{jwt}"
    );
    assert!(error(&reval).await.contains("revalidate_every"));
    let cookie = format!("[[aspect]]\nname = \"a\"\ncredential = {{ cookie = \"a b\" }}\n{jwt}");
    assert!(error(&cookie).await.contains("not a valid cookie name"));
}

#[tokio::test]
async fn source_timeouts_are_bounded() {
    let cases = [
        ("redis", "url = \"redis://127.0.0.1:1\"", "0s"),
        (
            "sql",
            "url = \"sqlite:/nonexistent.db\"\nquery = \"SELECT 1\"",
            "2m",
        ),
        ("http", "url = \"http://127.0.0.1:1/s\"", "0s"),
    ];
    for (kind, rest, timeout) in cases {
        let text = format!(
            "[[aspect]]\nname = \"slow\"\ncredential = {{ cookie = \"sid\" }}\n\
             [aspect.{kind}]\n{rest}\ntimeout = \"{timeout}\"\n"
        );
        let e = error(&text).await;
        assert!(
            e.contains("`slow`")
                && e.contains(&format!("{kind}.timeout"))
                && e.contains("1ms to 1m"),
            "{kind}: {e}"
        );
        // The bounds themselves are fine.
        for ok in ["1ms", "1m"] {
            let text = text.replace(&format!("\"{timeout}\""), &format!("\"{ok}\""));
            authenticator(&text)
                .await
                .unwrap_or_else(|e| panic!("{kind} {ok}: {e}"));
        }
    }
}

#[tokio::test]
async fn a_full_example_builds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.sqlite");
    std::fs::File::create(&db).unwrap();
    let text = format!(
        r#"
[[aspect]]
name = "frontend.user"
credential = {{ cookie = "fe_typo_user" }}
revalidate_every = "30s"
[aspect.sql]
url = "sqlite://{db}"
query = "SELECT uid AS id, username FROM fe_users WHERE ses_id = $1"
hash = "hmac-sha256"
secret = "key"

[[aspect]]
name = "backend.user"
credential = {{ cookie = "be_typo_user" }}
on_error = "reject"
[aspect.redis]
url = "redis://127.0.0.1:1"
key = "be:{{id}}"
format = "hash"

[[aspect]]
name = "api.user"
credential = "protocol"
[aspect.jwt]
algorithm = "EdDSA"
key_file = "{ed}"
leeway = "2s"

[[aspect]]
name = "shop.user"
credential = {{ query = "session" }}
[aspect.http]
url = "http://127.0.0.1:1/session"
method = "POST"
cache_ttl = "10s"
"#,
        db = db.display(),
        ed = keys().join("ed25519.pub.pem").display(),
    );
    let auth = authenticator(&text).await.unwrap();
    assert_eq!(
        auth.names().collect::<Vec<_>>(),
        ["frontend.user", "backend.user", "api.user", "shop.user"]
    );
    assert_eq!(aspects(&text).len(), 4);
}
