//! The four kinds of source, behind one enum: each looks a presented
//! credential up and answers a user, anonymous, or a failure.
//!
//! A source never decides the policy: whether a failure means anonymous or
//! a refused handshake is the aspect's `on_error`, applied by the
//! [`Authenticator`](crate::Authenticator) and the
//! [`Revalidator`](crate::Revalidator).

mod http;
pub(crate) mod jwt;
mod redis;
mod sql;

use std::path::Path;
use std::time::Duration;

use ::http::HeaderMap;
use ws_core::UserAspect;

use crate::config::{Credential, SourceConfig};
use crate::error::{ConfigError, Failure};

/// What a source found for a credential.
#[derive(Clone, Debug)]
pub(crate) enum Lookup {
    /// A logged-in user.
    User(UserAspect),
    /// Nobody (no such session, expired, refused, malformed), and why, for
    /// the debug log.
    Anonymous(&'static str),
}

/// A credential as presented at the handshake, with what a revalidation
/// needs to present it again.
#[derive(Clone, Debug)]
pub(crate) struct Presented {
    /// The session id or token.
    pub(crate) credential: String,
    /// Headers the HTTP callback forwards (empty for other sources).
    pub(crate) forwarded: HeaderMap,
}

/// Bounds of a source's `timeout`.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) enum Source {
    Jwt(jwt::JwtSource),
    Redis(redis::RedisSource),
    Sql(sql::SqlSource),
    Http(http::HttpSource),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Jwt(_) => "Jwt",
            Self::Redis(_) => "Redis",
            Self::Sql(_) => "Sql",
            Self::Http(_) => "Http",
        })
    }
}

impl Source {
    /// Checks the configuration and prepares clients; connects nothing.
    pub(crate) fn new(
        aspect: &str,
        config: &SourceConfig,
        credential: &Credential,
    ) -> Result<(Self, Option<Duration>), ConfigError> {
        let bounded = |key: &'static str, t: Duration| {
            if (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&t) {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    aspect,
                    key,
                    "must be from 1ms to 1m: the longest a look-up may hold a handshake",
                ))
            }
        };
        match config {
            SourceConfig::Jwt(_) => {}
            SourceConfig::Redis(c) => bounded("redis.timeout", c.timeout)?,
            SourceConfig::Sql(c) => bounded("sql.timeout", c.timeout)?,
            SourceConfig::Http(c) => bounded("http.timeout", c.timeout)?,
        }
        Ok(match config {
            SourceConfig::Jwt(c) => (Self::Jwt(jwt::JwtSource::new(aspect, c)?), None),
            SourceConfig::Redis(c) => (
                Self::Redis(redis::RedisSource::new(aspect, c)?),
                Some(c.timeout),
            ),
            SourceConfig::Sql(c) => (Self::Sql(sql::SqlSource::new(aspect, c)?), Some(c.timeout)),
            SourceConfig::Http(c) => (
                Self::Http(http::HttpSource::new(aspect, c, credential)?),
                Some(c.timeout),
            ),
        })
    }

    /// Whether the source checks locally, without I/O (JWT).
    pub(crate) fn is_local(&self) -> bool {
        matches!(self, Self::Jwt(_))
    }

    /// How long after its `expires_at` a user is still accepted (the JWT
    /// leeway; zero for stores, whose expiry is their own).
    pub(crate) fn grace(&self) -> Duration {
        match self {
            Self::Jwt(j) => j.leeway(),
            _ => Duration::ZERO,
        }
    }

    pub(crate) fn present(&self, credential: String, headers: &HeaderMap) -> Presented {
        let forwarded = match self {
            Self::Http(h) => h.forwarded(headers, &credential),
            _ => HeaderMap::new(),
        };
        Presented {
            credential,
            forwarded,
        }
    }

    /// Looks the credential up, bounded by `timeout`.
    pub(crate) async fn lookup(
        &self,
        presented: &Presented,
        timeout: Option<Duration>,
    ) -> Result<Lookup, Failure> {
        let id = presented.credential.as_str();
        let work = async {
            match self {
                Self::Jwt(j) => Ok(j.lookup(id)),
                Self::Redis(r) => r.lookup(id).await,
                Self::Sql(s) => s.lookup(id).await,
                Self::Http(h) => h.lookup(presented).await,
            }
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, work)
                .await
                .unwrap_or_else(|_| Err(Failure::timeout())),
            None => work.await,
        }
    }
}

/// The bytes of a key or secret from `file` or the environment variable
/// `var`: exactly one must be given.
pub(crate) fn secret_bytes(
    aspect: &str,
    file: Option<&Path>,
    var: Option<&str>,
    file_key: &'static str,
    var_key: &'static str,
) -> Result<Vec<u8>, ConfigError> {
    match (file, var) {
        (Some(path), None) => std::fs::read(path).map_err(|source| ConfigError::ReadFile {
            aspect: aspect.to_owned(),
            key: file_key,
            path: path.to_owned(),
            source,
        }),
        (None, Some(var)) => env(aspect, var, var_key).map(String::into_bytes),
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            aspect,
            file_key,
            format!("give `{file_key}` or `{var_key}`, not both"),
        )),
        (None, None) => Err(ConfigError::invalid(
            aspect,
            file_key,
            format!("missing: give `{file_key}` or `{var_key}`"),
        )),
    }
}

/// A text value given inline or through an environment variable; exactly
/// one must be given.
pub(crate) fn secret_text(
    aspect: &str,
    inline: Option<&str>,
    var: Option<&str>,
    key: &'static str,
    var_key: &'static str,
) -> Result<String, ConfigError> {
    optional_secret(aspect, inline, var, key, var_key)?.ok_or_else(|| {
        ConfigError::invalid(aspect, key, format!("missing: give `{key}` or `{var_key}`"))
    })
}

/// Like [`secret_text`], but neither is fine.
pub(crate) fn optional_secret(
    aspect: &str,
    inline: Option<&str>,
    var: Option<&str>,
    key: &'static str,
    var_key: &'static str,
) -> Result<Option<String>, ConfigError> {
    match (inline, var) {
        (Some(v), None) => Ok(Some(v.to_owned())),
        (None, Some(var)) => env(aspect, var, var_key).map(Some),
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            aspect,
            key,
            format!("give `{key}` or `{var_key}`, not both"),
        )),
        (None, None) => Ok(None),
    }
}

fn env(aspect: &str, var: &str, key: &'static str) -> Result<String, ConfigError> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ConfigError::MissingEnv {
            aspect: aspect.to_owned(),
            key,
            var: var.to_owned(),
        })
}
