//! The runtime's settings, with the defaults a production server wants, and
//! the schema of their sections of the configuration file.
//!
//! The types here are that schema: serde reads the file's `[server]` keys
//! into [`ServerConfig`], `[websocket]` into [`WebSocketSettings`], `[tls]`
//! into [`TlsSettings`] and each `[[route]]` into a [`RoutePolicy`], with
//! the file's key names and units (`max_message_size_in_kb`). A new setting
//! is one field (its key, its default, its bound in `validate`), and an
//! error names the key as the file writes it: the section comes from the
//! type that checked it ([`ConfigError::file_key`]).
//!
//! Values that need parsing (CIDR lists, origins) are kept as the strings
//! the operator wrote, so an error can quote the entry; they are parsed once
//! when the server is built (`validate` parses them the same way).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use ws_ratelimit::{ConnectionLimits, MessageLimits};

use crate::client_addr::TrustedProxies;
use crate::origin::OriginPolicy;

/// Everything the runtime needs to know besides its components.
///
/// Every field has a default ([`ServerConfig::default`]); [`validate`](Self::validate)
/// names the field that is out of range. Limits of 0 mean unlimited.
///
/// Serde reads and writes it as the configuration file's `[server]` table
/// (the keys the runtime uses; unknown keys are an error). Its other parts
/// are tables of their own: [`websocket`](Self::websocket) is `[websocket]`,
/// [`tls`](Self::tls) `[tls]`, [`routes`](Self::routes) the `[[route]]`
/// entries, [`slow_subscriber`](Self::slow_subscriber) a key of `[broker]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ServerConfig {
    /// `route_prefix`: prefix in front of every route; `""` or `"/"` (the
    /// default) for none.
    pub route_prefix: String,
    /// `max_request_size_in_kb` (× 1024): largest HTTP request head accepted,
    /// in bytes. A larger head is answered with 431.
    #[serde(rename = "max_request_size_in_kb", with = "ws_config::kib")]
    pub max_request_size: usize,
    /// `handshake_timeout`: deadline for the whole pre-upgrade phase: TLS,
    /// request head and answer. Slower clients are dropped.
    #[serde(with = "ws_config::duration")]
    pub handshake_timeout: Duration,
    /// `shutdown_timeout`: how long shutdown waits for clients to answer the
    /// 1001 close.
    #[serde(with = "ws_config::duration")]
    pub shutdown_timeout: Duration,
    /// `health_path`: path answered with `200 ok` for health checks (not an
    /// upgrade); empty for none.
    pub health_path: String,
    /// `allowed_origins`: origins a browser may open connections from. Each
    /// entry is a host (`"example.com"`: any scheme and port), an exact
    /// origin (`"https://example.com:8443"`), a wildcard for subdomains
    /// (`"*.example.com"`, also `"https://*.example.com"`), `"null"`, or `"*"`.
    /// Empty (the default) allows every origin. Refusal: 403.
    pub allowed_origins: Vec<String>,
    /// `require_origin`: refuse handshakes without an `Origin` header (403).
    /// Default false: non-browser clients send none and pass.
    pub require_origin: bool,
    /// `trusted_proxies`: reverse proxies (IP addresses or CIDR networks, e.g.
    /// `"127.0.0.1"`, `"10.0.0.0/8"`, `"fd00::/8"`) whose forwarding header
    /// is believed. Only when the TCP peer is one of them is the client
    /// address taken from [`forwarded_header`](Self::forwarded_header): the
    /// right-most hop that is not itself a trusted proxy. Default: loopback
    /// (`"127.0.0.0/8"`, `"::1"`), so a reverse proxy on the same host is
    /// believed and nobody else; empty: no proxy at all.
    pub trusted_proxies: Vec<String>,
    /// `forwarded_header`: which header trusted proxies set,
    /// `"x-forwarded-for"` (default) or `"forwarded"` (RFC 7239, `for=`).
    pub forwarded_header: ForwardedHeader,
    /// `max_connections`: open connections, all clients together (default
    /// 1000; 0: unlimited). Over it, a handshake gets 429 with `Retry-After`.
    pub max_connections: u32,
    /// `max_connections_per_address`: open connections from one client
    /// address group (default 10; 0: unlimited) → 429.
    pub max_connections_per_address: u32,
    /// `max_connections_per_address_per_second`: new connections from one
    /// address group per second, in bursts of the same number (default 10;
    /// 0: unlimited) → 429 with the exact `Retry-After`.
    pub max_connections_per_address_per_second: u32,
    /// `ipv4_prefix_len`: IPv4 clients are grouped by this prefix for the
    /// per-address limits (default 32: each address on its own).
    pub ipv4_prefix_len: u8,
    /// `ipv6_prefix_len`: IPv6 clients are grouped by this prefix for the
    /// per-address limits (default 64, one host's usual allocation).
    pub ipv6_prefix_len: u8,
    /// `max_messages_per_second`: messages one connection may send per
    /// second, in bursts of the same number (default 100; 0: unlimited).
    /// Over it, the connection is closed with 1008. A `[[route]]` entry may
    /// override it. Only data messages count, not pings.
    pub max_messages_per_second: u32,
    /// `max_messages_per_address_per_second`: messages per second from one
    /// address group, all its connections together (default 0: unlimited);
    /// over it the connection that sent the message is closed with 1008.
    pub max_messages_per_address_per_second: u32,

    /// `[websocket]`: protocol limits, buffers and timers.
    #[serde(skip)]
    pub websocket: WebSocketSettings,
    /// `broker.slow_subscriber`: what a channel publication does to a
    /// subscriber whose outgoing queue is full: close it with 1013
    /// (default) or skip the message for it.
    #[serde(skip)]
    pub slow_subscriber: ws_core::hub::SlowSubscriber,
    /// `[tls]`: serve `wss://` with this certificate and key; `None` (the
    /// default) serves plain `ws://`.
    #[serde(skip)]
    pub tls: Option<TlsSettings>,
    /// `[[route]]`: per-route overrides, keyed by route path.
    #[serde(skip)]
    pub routes: Vec<RoutePolicy>,
}

/// The `[websocket]` table: protocol limits, buffers and timers of every
/// connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct WebSocketSettings {
    /// `max_message_size_in_kb` (× 1024): largest message accepted, in
    /// bytes; a larger one closes with 1009. A `[[route]]` entry may
    /// override it.
    #[serde(rename = "max_message_size_in_kb", with = "ws_config::kib")]
    pub max_message_size: usize,
    /// `max_frame_size_in_kb` (× 1024): largest frame accepted, in bytes; a
    /// larger one closes with 1009. A `[[route]]` entry may override it.
    #[serde(rename = "max_frame_size_in_kb", with = "ws_config::kib")]
    pub max_frame_size: usize,
    /// `max_frames_per_message`: most frames one incoming message may be
    /// split into (default 1024; 0: unlimited); more closes with 1009.
    /// Bounds the work a message of empty fragments can cause.
    pub max_frames_per_message: usize,
    /// `max_buffered_memory_in_mb` (× 2^20): most bytes the server holds
    /// for its clients, all together: messages partly received, messages
    /// queued for slow clients, publications waiting for the broker
    /// (default 256 MiB; 0: unlimited). Beyond it the connection that
    /// would grow it is closed, 1009 for an incoming message and 1013 for
    /// a queue, and a publication is refused (see [`ws_core::budget`]).
    #[serde(rename = "max_buffered_memory_in_mb", with = "ws_config::mib")]
    pub max_buffered_memory: usize,
    /// `outgoing_queue`: messages a connection may have queued for sending
    /// before [`Connection::send`](ws_core::Connection::send) reports it full.
    pub outgoing_queue: usize,
    /// `ping_interval`: silence after which the server pings a client; a
    /// client silent for one more interval is dropped. Zero turns keepalive off.
    #[serde(with = "ws_config::duration")]
    pub ping_interval: Duration,
    /// `write_timeout`: longest time one batch of writes may take before the
    /// client is treated as gone (it does not read).
    #[serde(with = "ws_config::duration")]
    pub write_timeout: Duration,
    /// `read_buffer_size`: most bytes read from the socket at once, in
    /// bytes. The buffer exists only while data is pending, so idle
    /// connections hold none.
    pub read_buffer_size: usize,
    /// `write_buffer_size`: most outgoing bytes gathered into one write. The
    /// buffer exists only while there is something to write, so idle
    /// connections hold none.
    pub write_buffer_size: usize,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            max_message_size: 64 << 10,
            max_frame_size: 64 << 10,
            max_frames_per_message: 1024,
            max_buffered_memory: 256 << 20,
            outgoing_queue: 1024,
            ping_interval: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            read_buffer_size: 16 * 1024,
            write_buffer_size: 128 * 1024,
        }
    }
}

impl WebSocketSettings {
    /// The section's name in the configuration file.
    const SECTION: &str = "websocket";

    /// Checks every key's range; `largest_message`: the largest
    /// `max_message_size` of any route, which the memory budget must hold.
    fn validate(&self, largest_message: usize) -> Result<(), ConfigError> {
        check_sizes(self.max_message_size, self.max_frame_size)?;
        if self.max_buffered_memory != 0 && self.max_buffered_memory < largest_message.max(1 << 20)
        {
            return Err(ConfigError::new(
                "max_buffered_memory_in_mb",
                format!(
                    "must be 0 (unlimited) or at least 1 (MiB) and at least the largest \
                     max_message_size ({largest_message} bytes)"
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
        Ok(())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        let limits = ConnectionLimits::default();
        let messages = MessageLimits::default();
        Self {
            route_prefix: "/".to_owned(),
            max_request_size: 4 * 1024,
            handshake_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(5),
            health_path: "/healthz".to_owned(),
            allowed_origins: Vec::new(),
            require_origin: false,
            trusted_proxies: vec!["127.0.0.0/8".to_owned(), "::1".to_owned()],
            forwarded_header: ForwardedHeader::default(),
            max_connections: limits.max_connections,
            max_connections_per_address: limits.max_connections_per_address,
            max_connections_per_address_per_second: limits.max_connections_per_address_per_second,
            ipv4_prefix_len: limits.ipv4_prefix_len,
            ipv6_prefix_len: limits.ipv6_prefix_len,
            max_messages_per_second: messages.max_messages_per_second,
            max_messages_per_address_per_second: messages.max_messages_per_address_per_second,
            websocket: WebSocketSettings::default(),
            slow_subscriber: ws_core::hub::SlowSubscriber::default(),
            tls: None,
            routes: Vec::new(),
        }
    }
}

/// The header trusted proxies put the client address in
/// (`forwarded_header`).
///
/// Only one is read: a proxy that sets one usually passes the other through
/// from the client unchanged, so reading both would let clients forge their
/// address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, most load
    /// balancers). Config value `"x-forwarded-for"`.
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239). Config value
    /// `"forwarded"`.
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, lower case, as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

impl fmt::Display for ForwardedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ForwardedHeader {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ForwardedHeader {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(|e: ConfigError| serde::de::Error::custom(e.reason))
    }
}

impl FromStr for ForwardedHeader {
    type Err = ConfigError;

    /// `"x-forwarded-for"` or `"forwarded"`, in any case.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            _ => Err(ConfigError::new(
                "forwarded_header",
                format!("must be \"x-forwarded-for\" or \"forwarded\", got {s:?}"),
            )),
        }
    }
}

/// The `[tls]` table: certificate and key in PEM, and optionally the CA
/// client certificates must be signed by (mutual TLS).
///
/// The files are read by [`ServerBuilder::build`](crate::ServerBuilder::build)
/// (an unreadable, empty or mismatched file fails it, naming the file) and
/// again by [`Server::reload_tls`](crate::Server::reload_tls) and on SIGHUP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsSettings {
    /// `cert`: the certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// `key`: the private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// `client_ca`: PEM file of CA certificates; when set, every client must
    /// present a certificate signed by one of them, or the TLS handshake fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

impl TlsSettings {
    /// The section's name in the configuration file.
    const SECTION: &str = "tls";

    fn validate(&self) -> Result<(), ConfigError> {
        for (key, path) in [("cert", &self.cert), ("key", &self.key)] {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::new(key, "must name a PEM file"));
            }
        }
        if self
            .client_ca
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(ConfigError::new("client_ca", "must name a PEM file"));
        }
        Ok(())
    }
}

impl TlsSettings {
    /// Certificate and key files, no client certificates.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
        }
    }

    /// Requires client certificates signed by a CA in `client_ca`.
    #[must_use]
    pub fn with_client_ca(mut self, client_ca: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(client_ca.into());
        self
    }
}

/// One `[[route]]` entry: settings that replace the server-wide ones for one
/// route. `None` keeps the server-wide value.
///
/// `path` names the route as [`Server::routes`](crate::Server::routes) lists
/// it (prefix included, pattern syntax as declared, e.g. `/ws/chat/{room}`);
/// the path without the prefix is accepted too (`/chat/{room}`), since the
/// prefix is added the same way it is added to components' routes. An entry
/// that names no mounted route fails the build, as do two entries naming the
/// same route.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RoutePolicy {
    /// `path`: the route this entry applies to.
    pub path: String,
    /// `allowed_origins` for this route (same syntax as the server-wide key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<String>>,
    /// `require_origin` for this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_origin: Option<bool>,
    /// `max_messages_per_second` for this route's connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages_per_second: Option<u32>,
    /// `max_message_size_in_kb` (× 1024): the largest message on this
    /// route, in bytes.
    #[serde(
        default,
        rename = "max_message_size_in_kb",
        with = "ws_config::optional_kib",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_message_size: Option<usize>,
    /// `max_frame_size_in_kb` (× 1024): the largest frame on this route, in
    /// bytes. When only the message limit is set, the frame limit is the
    /// smaller of the server-wide frame limit and this route's message
    /// limit.
    #[serde(
        default,
        rename = "max_frame_size_in_kb",
        with = "ws_config::optional_kib",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_frame_size: Option<usize>,
    /// `max_connections`: open connections on this route (0: no route-level
    /// cap). The server-wide limits still apply on top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// `require`: aspects (by name, each one the server's
    /// [`Authenticate`](crate::Authenticate) has) that must all be logged
    /// in on this route. A handshake where any of them is
    /// anonymous is refused with 401 before the upgrade, naming the aspect.
    /// Empty (the default): anonymous visitors are welcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<String>,
    /// `require_groups`: groups, any one of which the user must be in, in
    /// any of the `require`d aspects (so with one required aspect: "the user
    /// is in at least one of these groups"). Otherwise 403 before the
    /// upgrade. Needs `require`. Empty (the default): no group check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_groups: Vec<String>,
}

impl RoutePolicy {
    /// An entry for `path` that overrides nothing yet.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }
}

/// What happens to an open connection when a session of one of its aspects
/// ends (the revalidation finds it logged out, deleted or expired; a JWT
/// reaches its `exp`). Config key `on_end` of an `[[aspect]]`.
///
/// Either way a source that fails during revalidation under
/// `on_error = "reject"` closes the connection with 1013 (try again later).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnSessionEnd {
    /// `"close"` (default): the connection is closed with 1008 (policy
    /// violation) and the reason `session ended`.
    #[default]
    Close,
    /// `"downgrade"`: the connection stays open; the aspect becomes
    /// anonymous (the server replaces it and tells the hub) and the
    /// component is told through
    /// [`Component::on_aspect_change`](ws_core::Component::on_aspect_change).
    /// Route requirements (`require`) are checked at the handshake only: a
    /// component on a route that requires the aspect should close the
    /// connection itself if it must not serve anonymous visitors.
    Downgrade,
}

impl OnSessionEnd {
    /// The value as written in the configuration: `close` or `downgrade`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Close => "close",
            Self::Downgrade => "downgrade",
        }
    }
}

impl fmt::Display for OnSessionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OnSessionEnd {
    type Err = ConfigError;

    /// `"close"` or `"downgrade"`.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "close" => Ok(Self::Close),
            "downgrade" => Ok(Self::Downgrade),
            _ => Err(ConfigError::new(
                "on_end",
                format!("must be \"close\" or \"downgrade\", got {s:?}"),
            )),
        }
    }
}

/// A setting that is out of range.
///
/// Displays as ``invalid setting `SECTION.KEY`: REASON`` (`server.`,
/// `websocket.`, `tls.`), or for a key inside a `[[route]]` entry as
/// ``invalid setting `KEY` of the route "PATH": REASON``.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid setting `{}{key}`{}: {reason}",
    section.map(|s| format!("{s}.")).unwrap_or_default(),
    route.as_ref().map(|p| format!(" of the route {p:?}")).unwrap_or_default()
)]
#[non_exhaustive]
pub struct ConfigError {
    /// The table of the configuration file the key is in (`server`,
    /// `websocket`, `tls`), set by the part of the schema that checked it;
    /// `None` for a `[[route]]` entry's key.
    pub section: Option<&'static str>,
    /// The key, as the configuration file writes it inside its table
    /// (`max_frame_size_in_kb`).
    pub key: &'static str,
    /// The `path` of the `[[route]]` entry the key belongs to, if it is one.
    pub route: Option<String>,
    /// Why it is refused.
    pub reason: String,
}

impl ConfigError {
    /// An error for `key`.
    pub fn new(key: &'static str, reason: impl Into<String>) -> Self {
        Self {
            section: None,
            key,
            route: None,
            reason: reason.into(),
        }
    }

    /// An error for `key` of the `[[route]]` entry for `path`.
    pub fn in_route(path: impl Into<String>, key: &'static str, reason: impl Into<String>) -> Self {
        Self {
            section: None,
            key,
            route: Some(path.into()),
            reason: reason.into(),
        }
    }

    /// The key's full path in the configuration file:
    /// `websocket.max_frame_size_in_kb`, `route.require`, `tls.cert`.
    pub fn file_key(&self) -> String {
        match (&self.route, self.section) {
            (Some(_), _) => format!("route.{}", self.key),
            (None, Some(section)) => format!("{section}.{}", self.key),
            (None, None) => self.key.to_owned(),
        }
    }

    /// The same error, in the table `section` (unless it is a route's).
    #[must_use]
    pub(crate) fn in_section(mut self, section: &'static str) -> Self {
        if self.route.is_none() && self.section.is_none() {
            self.section = Some(section);
        }
        self
    }

    /// The same error, moved into the `[[route]]` entry for `path`.
    #[must_use]
    pub(crate) fn within_route(mut self, path: Option<&str>) -> Self {
        if let Some(path) = path {
            self.route = Some(path.to_owned());
            self.section = None;
        }
        self
    }
}

/// Checks that a frame and message limit pair is usable.
fn check_sizes(message: usize, frame: usize) -> Result<(), ConfigError> {
    if message < 125 {
        return Err(ConfigError::new(
            "max_message_size_in_kb",
            "must be at least 125 bytes",
        ));
    }
    if frame < 125 {
        return Err(ConfigError::new(
            "max_frame_size_in_kb",
            "must be at least 125 bytes",
        ));
    }
    if frame > message {
        return Err(ConfigError::new(
            "max_frame_size_in_kb",
            format!("must not exceed max_message_size ({message} bytes)"),
        ));
    }
    Ok(())
}

/// The settings that need parsing, parsed: what
/// [`ServerConfig::validate`] checks is what the server is built from.
pub(crate) struct Parsed {
    /// `trusted_proxies`.
    pub(crate) trusted: TrustedProxies,
    /// The server's `allowed_origins` and `require_origin`.
    pub(crate) origin: Arc<OriginPolicy>,
    /// Per `[[route]]` entry (same order): its own origin policy, when it
    /// sets `allowed_origins` or `require_origin`.
    pub(crate) route_origins: Vec<Option<Arc<OriginPolicy>>>,
}

impl ServerConfig {
    /// The section's name in the configuration file.
    const SECTION: &str = "server";

    /// Checks every field's range and parses the lists.
    ///
    /// Whether each `[[route]]` entry names a mounted route is only known
    /// when the components are, and the aspects a route may `require` when
    /// the authenticator is; [`ServerBuilder::build`](crate::ServerBuilder::build)
    /// checks both. TLS files are read by `build` too.
    ///
    /// # Errors
    /// The first field out of range, by its configuration key
    /// ([`ConfigError::file_key`]); for lists, the error quotes the bad
    /// entry.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.parse().map(drop)
    }

    /// Checks every field and parses what needs parsing, once.
    pub(crate) fn parse(&self) -> Result<Parsed, ConfigError> {
        self.check_server()
            .map_err(|e| e.in_section(Self::SECTION))?;
        let largest_message = self
            .routes
            .iter()
            .filter_map(|r| r.max_message_size)
            .chain([self.websocket.max_message_size])
            .max()
            .unwrap_or(self.websocket.max_message_size);
        self.websocket
            .validate(largest_message)
            .map_err(|e| e.in_section(WebSocketSettings::SECTION))?;
        if let Some(tls) = &self.tls {
            tls.validate()
                .map_err(|e| e.in_section(TlsSettings::SECTION))?;
        }
        let server = || -> Result<_, ConfigError> {
            Ok((
                TrustedProxies::parse(&self.trusted_proxies)?,
                OriginPolicy::parse(&self.allowed_origins, self.require_origin)?,
            ))
        };
        let (trusted, origin) = server().map_err(|e| e.in_section(Self::SECTION))?;
        let mut route_origins = Vec::with_capacity(self.routes.len());
        for route in &self.routes {
            self.route_sizes(route)?;
            let own = route.allowed_origins.is_some() || route.require_origin.is_some();
            route_origins.push(if own {
                let origins = route
                    .allowed_origins
                    .as_deref()
                    .unwrap_or(&self.allowed_origins);
                let require = route.require_origin.unwrap_or(self.require_origin);
                Some(Arc::new(
                    OriginPolicy::parse(origins, require)
                        .map_err(|e| e.within_route(Some(&route.path)))?
                        .for_route(),
                ))
            } else {
                None
            });
            Self::check_requirement(route)?;
        }
        Ok(Parsed {
            trusted,
            origin: Arc::new(origin),
            route_origins,
        })
    }

    /// Checks the ranges of the `[server]` keys.
    fn check_server(&self) -> Result<(), ConfigError> {
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
        if !self.health_path.is_empty() && !self.health_path.starts_with('/') {
            return Err(ConfigError::new("health_path", "must start with `/`"));
        }
        if self.ipv4_prefix_len > 32 {
            return Err(ConfigError::new(
                "ipv4_prefix_len",
                format!("must be between 0 and 32, got {}", self.ipv4_prefix_len),
            ));
        }
        if self.ipv6_prefix_len > 128 {
            return Err(ConfigError::new(
                "ipv6_prefix_len",
                format!("must be between 0 and 128, got {}", self.ipv6_prefix_len),
            ));
        }
        Ok(())
    }

    /// Checks that every route's `require` names one of `aspects` (the
    /// names the server's [`Authenticate`](crate::Authenticate) has).
    /// [`ServerBuilder::build`](crate::ServerBuilder::build) checks this
    /// with the authenticator it is given.
    ///
    /// # Errors
    /// The first `require` entry that names no aspect, with the route.
    pub fn check_required_aspects(&self, aspects: &[&str]) -> Result<(), ConfigError> {
        for route in &self.routes {
            for name in &route.require {
                if !aspects.contains(&name.as_str()) {
                    return Err(ConfigError::in_route(
                        route.path.clone(),
                        "require",
                        format!(
                            "names the aspect {name:?}, which is not configured; the aspects are: {}",
                            if aspects.is_empty() {
                                "(none; add an [[aspect]] table)".to_owned()
                            } else {
                                aspects.join(", ")
                            }
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks a route's `require_groups` (its `require` is checked against
    /// the aspects by [`check_required_aspects`](Self::check_required_aspects)).
    fn check_requirement(route: &RoutePolicy) -> Result<(), ConfigError> {
        let in_route = |key, reason: String| ConfigError::in_route(route.path.clone(), key, reason);
        if !route.require_groups.is_empty() && route.require.is_empty() {
            return Err(in_route(
                "require_groups",
                "needs `require`: the aspects whose groups are checked".to_owned(),
            ));
        }
        if route.require_groups.iter().any(|g| g.trim().is_empty()) {
            return Err(in_route(
                "require_groups",
                "a group name must not be empty".to_owned(),
            ));
        }
        Ok(())
    }

    /// The message and frame limits in force on a route with `policy`.
    pub(crate) fn route_sizes(&self, policy: &RoutePolicy) -> Result<(usize, usize), ConfigError> {
        let message = policy
            .max_message_size
            .unwrap_or(self.websocket.max_message_size);
        let frame = policy
            .max_frame_size
            .unwrap_or(self.websocket.max_frame_size.min(message));
        check_sizes(message, frame).map_err(|e| e.within_route(Some(&policy.path)))?;
        Ok((message, frame))
    }

    /// The connection limits, as the limiter takes them.
    pub(crate) fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            max_connections_per_address_per_second: self.max_connections_per_address_per_second,
            ipv4_prefix_len: self.ipv4_prefix_len,
            ipv6_prefix_len: self.ipv6_prefix_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_the_originals() {
        let c = ServerConfig::default();
        c.validate().unwrap();
        assert_eq!(c.max_connections, 1000);
        assert_eq!(c.max_connections_per_address, 10);
        assert_eq!(c.max_connections_per_address_per_second, 10);
        assert_eq!(c.max_messages_per_second, 100);
        assert_eq!(c.max_request_size, 4096);
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = ServerConfig::default();
        c.websocket.max_frame_size = 32 << 20;
        let e = c.validate().unwrap_err();
        // The key as the file writes it, in its table.
        assert_eq!(e.key, "max_frame_size_in_kb");
        assert_eq!(e.file_key(), "websocket.max_frame_size_in_kb");
        assert!(e.to_string().contains("max_message_size"), "{e}");
        let c = ServerConfig {
            max_request_size: 10,
            ..ServerConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "max_request_size_in_kb");
        let c = ServerConfig {
            ipv6_prefix_len: 129,
            ..ServerConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "ipv6_prefix_len");
        assert_eq!(e.file_key(), "server.ipv6_prefix_len");
    }

    #[test]
    fn the_schema_reads_the_files_keys_and_units() {
        let c: ServerConfig = toml::from_str(
            "max_request_size_in_kb = 8
shutdown_timeout = \"2s\"\n",
        )
        .unwrap();
        assert_eq!(c.max_request_size, 8 * 1024);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(2));
        let w: WebSocketSettings =
            toml::from_str("max_message_size_in_kb = 2\nmax_buffered_memory_in_mb = 3\n").unwrap();
        assert_eq!((w.max_message_size, w.max_buffered_memory), (2048, 3 << 20));
        let r: RoutePolicy = toml::from_str("path = \"/x\"\nmax_frame_size_in_kb = 1\n").unwrap();
        assert_eq!(r.max_frame_size, Some(1024));
        // Unknown keys are errors naming them.
        let e = toml::from_str::<ServerConfig>("max_message_size_in_kb = 1\n").unwrap_err();
        assert!(e.to_string().contains("max_message_size_in_kb"), "{e}");
        // What is written reads back the same.
        let c = ServerConfig::default();
        let again: ServerConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn list_errors_quote_the_entry() {
        let c = ServerConfig {
            trusted_proxies: vec!["10.0.0.0/8".into(), "10.0.0.0/33".into()],
            ..ServerConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "trusted_proxies");
        assert!(e.to_string().contains("\"10.0.0.0/33\""), "{e}");
        let c = ServerConfig {
            allowed_origins: vec!["https://example.com/path".into()],
            ..ServerConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "allowed_origins");
        assert!(e.to_string().contains("https://example.com/path"), "{e}");
    }

    #[test]
    fn route_entries_are_checked() {
        let mut route = RoutePolicy::new("/chat");
        route.max_frame_size = Some(1 << 20);
        route.max_message_size = Some(1024);
        let c = ServerConfig {
            routes: vec![route],
            ..ServerConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(
            (e.key, e.route.as_deref()),
            ("max_frame_size_in_kb", Some("/chat"))
        );
        assert_eq!(e.file_key(), "route.max_frame_size_in_kb");
        assert_eq!(
            e.to_string(),
            "invalid setting `max_frame_size_in_kb` of the route \"/chat\": \
             must not exceed max_message_size (1024 bytes)"
        );
        // Only the message limit lowered: the frame limit follows it.
        let mut route = RoutePolicy::new("/chat");
        route.max_message_size = Some(1024);
        let c = ServerConfig::default();
        assert_eq!(c.route_sizes(&route).unwrap(), (1024, 1024));
        let mut route = RoutePolicy::new("/chat");
        route.allowed_origins = Some(vec!["*.".into()]);
        let c = ServerConfig {
            routes: vec![route],
            ..ServerConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(
            (e.key, e.route.as_deref()),
            ("allowed_origins", Some("/chat"))
        );
    }

    #[test]
    fn requirements_name_configured_aspects() {
        let mut route = RoutePolicy::new("/chat");
        route.require = vec!["frontend.user".into()];
        let mut c = ServerConfig {
            routes: vec![route],
            ..ServerConfig::default()
        };
        c.validate().unwrap();
        let e = c.check_required_aspects(&[]).unwrap_err();
        assert_eq!((e.key, e.route.as_deref()), ("require", Some("/chat")));
        assert!(e.reason.contains("frontend.user"), "{e}");
        c.check_required_aspects(&["frontend.user"]).unwrap();
        c.routes[0].require_groups = vec![String::new()];
        assert_eq!(c.validate().unwrap_err().key, "require_groups");
        c.routes[0].require.clear();
        c.routes[0].require_groups = vec!["editors".into()];
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "require_groups");
        assert!(e.reason.contains("needs `require`"), "{e}");
    }

    #[test]
    fn on_end_parses() {
        assert_eq!(
            "close".parse::<OnSessionEnd>().unwrap(),
            OnSessionEnd::Close
        );
        assert_eq!(
            "downgrade".parse::<OnSessionEnd>().unwrap(),
            OnSessionEnd::Downgrade
        );
        let e = "logout".parse::<OnSessionEnd>().unwrap_err();
        assert_eq!(e.key, "on_end");
        assert!(e.reason.contains("\"logout\""), "{e}");
    }

    #[test]
    fn forwarded_header_parses() {
        assert_eq!(
            "X-Forwarded-For".parse::<ForwardedHeader>().unwrap(),
            ForwardedHeader::XForwardedFor
        );
        assert_eq!(
            "forwarded".parse::<ForwardedHeader>().unwrap(),
            ForwardedHeader::Forwarded
        );
        let e = "via".parse::<ForwardedHeader>().unwrap_err();
        assert_eq!(e.key, "forwarded_header");
    }
}
