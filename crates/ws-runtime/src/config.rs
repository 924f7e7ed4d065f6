//! The runtime's settings, with the defaults a production server wants.

use std::time::Duration;

/// Everything the runtime needs to know besides its components.
///
/// Every field has a default ([`ServerConfig::default`]); [`validate`](Self::validate)
/// names the field that is out of range.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Prefix in front of every route (`route_prefix`); `""` or `"/"` for none.
    pub route_prefix: String,
    /// Largest HTTP request head accepted, in bytes (`max_request_size_in_kb` × 1024).
    /// A larger head is answered with 431.
    pub max_request_size: usize,
    /// Deadline for the whole pre-upgrade phase: TLS, request head and answer.
    pub handshake_timeout: Duration,
    /// Largest message accepted, in bytes; a larger one closes with 1009.
    pub max_message_size: usize,
    /// Largest frame accepted, in bytes; a larger one closes with 1009.
    pub max_frame_size: usize,
    /// Messages a connection may have queued for sending before
    /// [`Connection::send`](ws_core::Connection::send) reports it full.
    pub outgoing_queue: usize,
    /// Silence after which the server pings a client; a client silent for one
    /// more interval is dropped. Zero turns keepalive off.
    pub ping_interval: Duration,
    /// Longest time one batch of writes may take before the client is treated
    /// as gone (it does not read).
    pub write_timeout: Duration,
    /// How long shutdown waits for clients to answer the 1001 close.
    pub shutdown_timeout: Duration,
    /// Read chunk of each connection, in bytes: small keeps idle connections cheap.
    pub read_buffer_size: usize,
    /// Outgoing bytes buffered before a write is forced, in bytes.
    pub write_buffer_size: usize,
    /// Path answered with `200 ok` for health checks (not an upgrade); empty for none.
    pub health_path: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            route_prefix: String::new(),
            max_request_size: 4 * 1024,
            handshake_timeout: Duration::from_secs(10),
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            outgoing_queue: 1024,
            ping_interval: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
            read_buffer_size: 8 * 1024,
            write_buffer_size: 16 * 1024,
            health_path: "/healthz".to_owned(),
        }
    }
}

/// A setting that is out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{key}`: {reason}")]
pub struct ConfigError {
    /// The setting's name, as in the configuration file.
    pub key: &'static str,
    /// Why it is refused.
    pub reason: String,
}

impl ConfigError {
    /// An error for `key`.
    pub fn new(key: &'static str, reason: impl Into<String>) -> Self {
        Self {
            key,
            reason: reason.into(),
        }
    }
}

impl ServerConfig {
    /// Checks every field's range.
    ///
    /// # Errors
    /// The first field out of range, by its configuration key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_request_size < 1024 {
            return Err(ConfigError::new(
                "max_request_size_in_kb",
                "must be at least 1 (KiB)",
            ));
        }
        if self.max_request_size > 1024 * 1024 {
            return Err(ConfigError::new(
                "max_request_size_in_kb",
                "must be at most 1024 (KiB)",
            ));
        }
        if self.handshake_timeout.is_zero() {
            return Err(ConfigError::new("handshake_timeout", "must be above zero"));
        }
        if self.max_message_size < 125 {
            return Err(ConfigError::new(
                "max_message_size",
                "must be at least 125 bytes",
            ));
        }
        if self.max_frame_size < 125 {
            return Err(ConfigError::new(
                "max_frame_size",
                "must be at least 125 bytes",
            ));
        }
        if self.max_frame_size > self.max_message_size {
            return Err(ConfigError::new(
                "max_frame_size",
                format!(
                    "must not exceed max_message_size ({} bytes)",
                    self.max_message_size
                ),
            ));
        }
        if self.outgoing_queue == 0 {
            return Err(ConfigError::new("outgoing_queue", "must be at least 1"));
        }
        if self.write_timeout.is_zero() {
            return Err(ConfigError::new("write_timeout", "must be above zero"));
        }
        if !(256..=1 << 20).contains(&self.read_buffer_size) {
            return Err(ConfigError::new(
                "read_buffer_size",
                "must be between 256 bytes and 1 MiB",
            ));
        }
        if !(256..=16 << 20).contains(&self.write_buffer_size) {
            return Err(ConfigError::new(
                "write_buffer_size",
                "must be between 256 bytes and 16 MiB",
            ));
        }
        if !self.health_path.is_empty() && !self.health_path.starts_with('/') {
            return Err(ConfigError::new("health_path", "must start with `/`"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ServerConfig::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let c = ServerConfig {
            max_frame_size: 32 << 20,
            ..ServerConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "max_frame_size");
        assert!(e.to_string().contains("max_message_size"), "{e}");
        let c = ServerConfig {
            max_request_size: 10,
            ..ServerConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "max_request_size_in_kb");
    }
}
