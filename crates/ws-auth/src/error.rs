//! Typed errors: [`ConfigError`] when an [`Authenticator`](crate::Authenticator)
//! is built, [`AuthError`] when a source fails at a handshake or a
//! revalidation under `on_error = "reject"`.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;

/// A boxed error from a store client (Redis, sqlx, hyper, …).
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// An aspect configuration that cannot work. Every variant names the aspect;
/// the message names the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file named by the configuration cannot be read.
    #[error("aspect `{aspect}`: cannot read {key} `{}`", path.display())]
    ReadFile {
        /// The aspect.
        aspect: String,
        /// The key naming the file (`jwt.key_file`, …).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An environment variable named by the configuration is not set.
    #[error("aspect `{aspect}`: {key}: environment variable `{var}` is not set (or not UTF-8)")]
    MissingEnv {
        /// The aspect.
        aspect: String,
        /// The key naming the variable (`jwt.key_env`, …).
        key: &'static str,
        /// The variable.
        var: String,
    },
    /// A value is missing, out of range or malformed.
    #[error("aspect `{aspect}`: {key}: {reason}")]
    Invalid {
        /// The aspect.
        aspect: String,
        /// The key (`redis.key`, `credential`, …).
        key: &'static str,
        /// What is wrong, for a person.
        reason: String,
    },
    /// Two aspects have the same name.
    #[error("aspect `{name}` is configured more than once")]
    Duplicate {
        /// The name.
        name: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(aspect: &str, key: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            aspect: aspect.to_owned(),
            key,
            reason: reason.into(),
        }
    }
}

/// Why a source could not answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailureKind {
    /// No answer within the source's `timeout`.
    #[error("the session source did not answer in time")]
    Timeout,
    /// The store or application could not be reached or answered with an
    /// error (connection refused, SQL error, HTTP 500, …).
    #[error("the session source is unavailable")]
    Unavailable,
    /// An answer came but cannot be used (not JSON, wrong types, a column
    /// type that cannot be mapped).
    #[error("the session source gave an answer that cannot be used")]
    InvalidAnswer,
}

/// A source failed and its aspect is configured with `on_error = "reject"`:
/// the handshake is refused with [`status`](Self::status) (503), or a live
/// connection should be closed as "try again later" (1013).
#[derive(Debug, thiserror::Error)]
#[error("aspect `{aspect}`: {kind}")]
pub struct AuthError {
    aspect: Arc<str>,
    kind: FailureKind,
    #[source]
    source: Option<BoxError>,
}

impl AuthError {
    pub(crate) fn new(aspect: Arc<str>, failure: Failure) -> Self {
        Self {
            aspect,
            kind: failure.kind,
            source: failure.source,
        }
    }

    /// The aspect whose source failed.
    pub fn aspect(&self) -> &str {
        &self.aspect
    }

    /// Why it failed.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The HTTP status that refuses the handshake: 503 Service Unavailable.
    pub fn status(&self) -> http::StatusCode {
        http::StatusCode::SERVICE_UNAVAILABLE
    }
}

/// A source's failure before it is attributed to an aspect.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) source: Option<BoxError>,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            source: Some(source.into()),
        }
    }

    pub(crate) fn timeout() -> Self {
        Self {
            kind: FailureKind::Timeout,
            source: None,
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::new(FailureKind::InvalidAnswer, reason.into())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kind)?;
        let mut next = self
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static));
        // The chain of causes, skipping one that repeats its predecessor's
        // text (several clients print their source in their own message).
        let mut last = String::new();
        while let Some(e) = next {
            let text = e.to_string();
            if !last.contains(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            next = e.source();
        }
        Ok(())
    }
}
