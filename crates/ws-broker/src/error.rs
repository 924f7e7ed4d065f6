//! Why the broker could not start, and why an address did not parse.

use std::time::Duration;

/// A cause from the Redis client, kept opaque so no `redis` type is part of
/// this crate's API.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why [`RedisHub::connect`](crate::RedisHub::connect) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// A configuration value is out of range.
    #[error("broker.{key}: {reason}")]
    Config {
        /// The key, as written in `[broker]`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `redis_url` is not a Redis URL.
    #[error("broker.redis_url `{url}` is not a Redis URL: {source}")]
    InvalidUrl {
        /// The URL, without its password.
        url: String,
        /// What the Redis client said.
        source: Cause,
    },
    /// Redis refused the connection or a first command failed.
    #[error("cannot use Redis at {url}: {source}")]
    Connect {
        /// The URL, without its password.
        url: String,
        /// What failed.
        source: Cause,
    },
    /// Redis did not answer within `command_timeout`.
    #[error("Redis at {url} did not answer within {}", humantime::format_duration(*timeout))]
    Timeout {
        /// The URL, without its password.
        url: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// `connect` was called outside a tokio runtime: the broker needs one for
    /// its background tasks.
    #[error("the Redis broker needs a tokio runtime")]
    NoRuntime,
    /// The operating system gave no random bytes for the server id.
    #[error("no randomness for the server id: {0}")]
    Random(String),
}

/// Why a text is not a [`ServerId`](crate::ServerId) or a
/// [`ConnectionAddr`](crate::ConnectionAddr).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not {expected}")]
pub struct AddrParseError {
    pub(crate) text: String,
    pub(crate) expected: &'static str,
}

impl AddrParseError {
    pub(crate) fn new(text: &str, expected: &'static str) -> Self {
        Self {
            text: text.chars().take(80).collect(),
            expected,
        }
    }
}
