//! The `[broker]` configuration: where Redis is, the key prefix, presence
//! timers, the slow-subscriber policy and the forwarding queue.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use ws_core::hub::SlowSubscriber;

use crate::error::BrokerError;

/// Settings of the Redis broker; the `[broker]` section of the server's
/// configuration file.
///
/// Every key has a default. Durations are written like `"5s"` or `"500ms"`.
///
/// ```toml
/// [broker]
/// redis_url = "redis://127.0.0.1:6379/0"
/// prefix = "ws-provider"
/// presence_heartbeat = "5s"
/// presence_expiry = "15s"
/// slow_subscriber = "close"
/// queue_size = 16384
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `redis://[user:password@]host:port[/db]` or `unix:///path/to/socket`
    /// (TLS, `rediss://`, is not built in). Unset: no broker, the server
    /// delivers in-process only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// Start of every Redis key and pub/sub channel name this server uses, so
    /// several deployments can share one Redis (give them prefixes where
    /// neither starts with the other followed by `:`). 1 to 64 bytes, no
    /// whitespace, control or glob characters (`* ? [ ] \`).
    pub prefix: String,
    /// How often this server refreshes its presence entries in Redis.
    #[serde(with = "ws_config::duration")]
    pub presence_heartbeat: Duration,
    /// How long presence entries live without a refresh: the longest a
    /// crashed server's members stay visible. At least twice the heartbeat;
    /// three times is the default.
    #[serde(with = "ws_config::duration")]
    pub presence_expiry: Duration,
    /// What happens to a local subscriber whose outgoing queue is full.
    pub slow_subscriber: SlowSubscriberPolicy,
    /// Publications waiting to be written to Redis; when it is full,
    /// `publish` answers `Unavailable` instead of buffering more.
    pub queue_size: usize,
    /// Longest wait between two reconnection attempts (the wait starts at
    /// 100 ms and doubles up to this).
    #[serde(with = "ws_config::duration")]
    pub reconnect_max_delay: Duration,
    /// Deadline for connecting to Redis and for each command.
    #[serde(with = "ws_config::duration")]
    pub command_timeout: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            prefix: "ws-provider".to_owned(),
            presence_heartbeat: Duration::from_secs(5),
            presence_expiry: Duration::from_secs(15),
            slow_subscriber: SlowSubscriberPolicy::Close,
            queue_size: 16_384,
            reconnect_max_delay: Duration::from_secs(2),
            command_timeout: Duration::from_secs(5),
        }
    }
}

impl BrokerConfig {
    /// Default settings with Redis at `url`.
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            redis_url: Some(url.into()),
            ..Self::default()
        }
    }

    /// Checks the values (not whether Redis answers).
    ///
    /// # Errors
    /// [`BrokerError::Config`] naming the key and the reason.
    pub fn validate(&self) -> Result<(), BrokerError> {
        let bad = |key: &'static str, reason: String| Err(BrokerError::Config { key, reason });
        let p = &self.prefix;
        if p.is_empty() || p.len() > 64 {
            return bad("prefix", "must be 1 to 64 bytes long".into());
        }
        if let Some(c) = p
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || "*?[]\\".contains(*c))
        {
            return bad(
                "prefix",
                format!("must not contain whitespace, control or glob characters (found {c:?})"),
            );
        }
        if self.presence_heartbeat < Duration::from_millis(10) {
            return bad("presence_heartbeat", "must be at least 10ms".into());
        }
        if self.presence_expiry < self.presence_heartbeat * 2 {
            return bad(
                "presence_expiry",
                format!(
                    "must be at least twice presence_heartbeat ({}); three times is usual",
                    humantime::format_duration(self.presence_heartbeat)
                ),
            );
        }
        if self.queue_size == 0 {
            return bad("queue_size", "must be at least 1".into());
        }
        if self.reconnect_max_delay < Duration::from_millis(100) {
            return bad("reconnect_max_delay", "must be at least 100ms".into());
        }
        if self.command_timeout < Duration::from_millis(10) {
            return bad("command_timeout", "must be at least 10ms".into());
        }
        Ok(())
    }
}

/// What a hub does with a subscriber whose outgoing queue is full; the
/// configuration form of [`SlowSubscriber`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowSubscriberPolicy {
    /// `"close"`: close it with 1013 (try again later).
    #[default]
    Close,
    /// `"drop"`: skip the message for it.
    Drop,
}

impl From<SlowSubscriberPolicy> for SlowSubscriber {
    fn from(p: SlowSubscriberPolicy) -> Self {
        match p {
            SlowSubscriberPolicy::Close => Self::Close,
            SlowSubscriberPolicy::Drop => Self::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_broker_section() {
        let text = r#"
            redis_url = "redis://127.0.0.1:6379"
            prefix = "chat"
            presence_heartbeat = "2s"
            presence_expiry = "6s"
            slow_subscriber = "drop"
            queue_size = 100
        "#;
        let c: BrokerConfig = toml::from_str(text).unwrap();
        assert_eq!(c.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(c.prefix, "chat");
        assert_eq!(c.presence_heartbeat, Duration::from_secs(2));
        assert_eq!(c.presence_expiry, Duration::from_secs(6));
        assert_eq!(c.slow_subscriber, SlowSubscriberPolicy::Drop);
        assert_eq!(
            SlowSubscriber::from(c.slow_subscriber),
            SlowSubscriber::Drop
        );
        assert_eq!(c.queue_size, 100);
        assert_eq!(c.reconnect_max_delay, Duration::from_secs(2));
        c.validate().unwrap();

        let empty: BrokerConfig = toml::from_str("").unwrap();
        assert_eq!(empty, BrokerConfig::default());
        // Round trip, as `check-config` prints it.
        let printed = toml::to_string(&BrokerConfig::with_url("redis://r")).unwrap();
        assert!(printed.contains("presence_expiry = \"15s\""), "{printed}");
        assert_eq!(
            toml::from_str::<BrokerConfig>(&printed).unwrap(),
            BrokerConfig::with_url("redis://r")
        );
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let e = toml::from_str::<BrokerConfig>("redis = \"x\"").unwrap_err();
        assert!(e.to_string().contains("unknown field `redis`"), "{e}");
        let e = toml::from_str::<BrokerConfig>("slow_subscriber = \"wait\"").unwrap_err();
        assert!(e.to_string().contains("close"), "{e}");
        let e = toml::from_str::<BrokerConfig>("presence_expiry = \"soon\"").unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");

        let check = |c: BrokerConfig| c.validate().unwrap_err().to_string();
        let base = BrokerConfig::default();
        assert!(
            check(BrokerConfig {
                prefix: "a*".into(),
                ..base.clone()
            })
            .contains("prefix")
        );
        assert!(
            check(BrokerConfig {
                prefix: String::new(),
                ..base.clone()
            })
            .contains("prefix")
        );
        let e = check(BrokerConfig {
            presence_expiry: Duration::from_secs(6),
            ..base.clone()
        });
        assert!(e.contains("presence_expiry") && e.contains("5s"), "{e}");
        assert!(
            check(BrokerConfig {
                queue_size: 0,
                ..base
            })
            .contains("queue_size")
        );
    }
}
