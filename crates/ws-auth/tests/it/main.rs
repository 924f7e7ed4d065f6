//! Integration tests of ws-auth against real parts: a real Redis and a real
//! PostgreSQL (Debian packages, started on free loopback ports by
//! `ws_test_support`), SQLite in a temporary file, a real HTTP application served
//! in-process, and JWTs signed with real keys (`tests/keys/`).
//!
//! One binary of modules, one per source, plus configuration checks.

mod harness;

mod config;
mod http_callback;
mod jwt_source;
mod redis_store;
mod sql_store;

use http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use ws_auth::{AspectConfig, Authenticator, ConfigError, UserAspect};

/// The `[[aspect]]` tables of a TOML text, as the CLI will embed them.
pub(crate) fn aspects(text: &str) -> Vec<AspectConfig> {
    #[derive(Deserialize)]
    struct File {
        aspect: Vec<AspectConfig>,
    }
    toml::from_str::<File>(text)
        .unwrap_or_else(|e| panic!("bad test config: {e}\n{text}"))
        .aspect
}

/// An authenticator from TOML text.
pub(crate) async fn authenticator(text: &str) -> Result<Authenticator, ConfigError> {
    harness::init_tracing();
    Authenticator::new(&aspects(text)).await
}

/// Request headers with one `Cookie` header.
pub(crate) fn cookie(value: &str) -> HeaderMap {
    header("cookie", value)
}

/// Request headers with one header.
pub(crate) fn header(name: &'static str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(name, HeaderValue::from_str(value).expect("header value"));
    h
}

/// The one aspect `name` of a resolution that must succeed.
pub(crate) async fn resolve_one(
    auth: &Authenticator,
    name: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> std::sync::Arc<UserAspect> {
    let resolved = auth
        .resolve(headers, query)
        .await
        .unwrap_or_else(|e| panic!("resolve failed: {e}"));
    assert!(resolved.aspects.contains(name), "aspect {name} missing");
    resolved.aspects.get(name)
}
