//! The configuration file (TOML), its defaults, and how flags and `WS_*`
//! environment variables override it.
//!
//! Precedence, highest first: command-line flag, environment variable,
//! configuration file, built-in default. Every key has a default, so no file
//! is needed. Unknown keys, wrong types and out-of-range values are errors
//! that name the file and the key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use ws_runtime::ServerConfig;

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// `[server]`: where to listen and the original's limits.
    pub server: ServerSection,
    /// `[websocket]`: protocol limits and timers.
    pub websocket: WebSocketSection,
    /// `[log]`: logging.
    pub log: LogSection,
}

/// `[server]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on (0 picks a free one).
    pub port: u16,
    /// Prefix in front of every route.
    pub route_prefix: String,
    /// Where info files of running servers live (default: see `state_dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Largest HTTP request head, in KiB (431 above).
    pub max_request_size_in_kb: u32,
    /// Deadline for TLS, request head and answer.
    #[serde(with = "duration")]
    pub handshake_timeout: Duration,
    /// How long shutdown waits for clients to answer the 1001 close.
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
    /// Health-check path answered with 200 (empty: none).
    pub health_path: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        let rt = ServerConfig::default();
        Self {
            host: "0.0.0.0".to_owned(),
            port: 18080,
            route_prefix: "/".to_owned(),
            state_dir: None,
            max_request_size_in_kb: u32::try_from(rt.max_request_size / 1024).unwrap_or(4),
            handshake_timeout: rt.handshake_timeout,
            shutdown_timeout: rt.shutdown_timeout,
            health_path: rt.health_path,
        }
    }
}

/// `[websocket]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketSection {
    /// Largest message, in KiB (close 1009 above).
    pub max_message_size_in_kb: u32,
    /// Largest frame, in KiB (close 1009 above).
    pub max_frame_size_in_kb: u32,
    /// Messages a connection may have queued for sending.
    pub outgoing_queue: u32,
    /// Silence before a ping; one more interval of silence drops the client. "0s" turns it off.
    #[serde(with = "duration")]
    pub ping_interval: Duration,
    /// Longest time one batch of writes may take.
    #[serde(with = "duration")]
    pub write_timeout: Duration,
    /// Read chunk per connection, in bytes.
    pub read_buffer_size: u32,
    /// Outgoing bytes buffered before a write is forced, in bytes.
    pub write_buffer_size: u32,
}

impl Default for WebSocketSection {
    fn default() -> Self {
        let rt = ServerConfig::default();
        let kib = |b: usize| u32::try_from(b / 1024).unwrap_or(u32::MAX);
        let n = |b: usize| u32::try_from(b).unwrap_or(u32::MAX);
        Self {
            max_message_size_in_kb: kib(rt.max_message_size),
            max_frame_size_in_kb: kib(rt.max_frame_size),
            outgoing_queue: n(rt.outgoing_queue),
            ping_interval: rt.ping_interval,
            write_timeout: rt.write_timeout,
            read_buffer_size: n(rt.read_buffer_size),
            write_buffer_size: n(rt.write_buffer_size),
        }
    }
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` (human-readable) or `json` (one object per line).
    pub format: LogFormat,
    /// Default filter when `RUST_LOG` is not set (`info`, `debug`, `ws_runtime=debug`, …).
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// Durations as human-readable strings: `"10s"`, `"500ms"`, `"1m 30s"`.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim() == "0" {
            return Ok(Duration::ZERO);
        }
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{s}` is not a duration ({e}); write it like \"10s\", \"500ms\" or \"2m\""
            ))
        })
    }
}

/// Where the configuration came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Built-in defaults only.
    Defaults,
    /// This file.
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Defaults => f.write_str("built-in defaults"),
            Self::File(p) => write!(f, "config file `{}`", p.display()),
        }
    }
}

/// Reads and parses a configuration file.
///
/// # Errors
/// An unreadable file, invalid TOML, an unknown key or a wrong type; the
/// message names the file and the key.
pub fn load_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file `{}`", path.display()))?;
    parse(&text).with_context(|| format!("config file `{}`", path.display()))
}

/// Parses configuration text.
///
/// # Errors
/// Invalid TOML, an unknown key or a wrong type.
pub fn parse(text: &str) -> Result<FileConfig> {
    toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
}

/// Overrides from flags and the environment (already merged by clap: a flag
/// wins over its variable).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--host` / `WS_HOST`.
    pub host: Option<String>,
    /// `--port` / `WS_PORT`.
    pub port: Option<u16>,
    /// `--prefix` / `WS_ROUTE_PREFIX`.
    pub route_prefix: Option<String>,
    /// `--state-dir` / `WS_STATE_DIR`.
    pub state_dir: Option<PathBuf>,
    /// `--log-format` / `WS_LOG_FORMAT`.
    pub log_format: Option<LogFormat>,
}

/// The configuration in force: file (or defaults) with overrides applied.
#[derive(Clone, Debug)]
pub struct Effective {
    /// The merged values.
    pub file: FileConfig,
    /// Where the file part came from.
    pub source: Source,
}

impl Effective {
    /// Loads `path` (if any), applies `overrides`, and checks every value.
    ///
    /// # Errors
    /// Any problem with the file or a value, naming the file and the key.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self> {
        let (mut file, source) = match path {
            Some(p) => (load_file(p)?, Source::File(p.to_path_buf())),
            None => (FileConfig::default(), Source::Defaults),
        };
        let o = overrides.clone();
        if let Some(v) = o.host {
            file.server.host = v;
        }
        if let Some(v) = o.port {
            file.server.port = v;
        }
        if let Some(v) = o.route_prefix {
            file.server.route_prefix = v;
        }
        if let Some(v) = o.state_dir {
            file.server.state_dir = Some(v);
        }
        if let Some(v) = o.log_format {
            file.log.format = v;
        }
        let eff = Self { file, source };
        eff.server_config()?;
        eff.host_ip()?;
        Ok(eff)
    }

    /// The listen IP address.
    ///
    /// # Errors
    /// When `server.host` is not an IP address.
    pub fn host_ip(&self) -> Result<std::net::IpAddr> {
        let host = self
            .file
            .server
            .host
            .trim_start_matches('[')
            .trim_end_matches(']');
        host.parse().map_err(|_| {
            anyhow::anyhow!(
                "{}: `server.host`: `{}` is not an IP address (for example 0.0.0.0, 127.0.0.1 or ::)",
                self.source,
                self.file.server.host
            )
        })
    }

    /// The runtime settings.
    ///
    /// # Errors
    /// A value out of range, naming its key.
    pub fn server_config(&self) -> Result<ServerConfig> {
        let s = &self.file.server;
        let w = &self.file.websocket;
        let mut c = ServerConfig::default();
        c.route_prefix = s.route_prefix.clone();
        c.max_request_size = s.max_request_size_in_kb as usize * 1024;
        c.handshake_timeout = s.handshake_timeout;
        c.shutdown_timeout = s.shutdown_timeout;
        c.health_path = s.health_path.clone();
        c.max_message_size = w.max_message_size_in_kb as usize * 1024;
        c.max_frame_size = w.max_frame_size_in_kb as usize * 1024;
        c.outgoing_queue = w.outgoing_queue as usize;
        c.ping_interval = w.ping_interval;
        c.write_timeout = w.write_timeout;
        c.read_buffer_size = w.read_buffer_size as usize;
        c.write_buffer_size = w.write_buffer_size as usize;
        if let Err(e) = c.validate() {
            bail!("{}: `{}`: {}", self.source, file_key(e.key), e.reason);
        }
        if let Err(e) = ws_routing::normalize_prefix(&c.route_prefix) {
            bail!("{}: `server.route_prefix`: {e}", self.source);
        }
        Ok(c)
    }

    /// The state directory: configured, or `$XDG_RUNTIME_DIR/ws-provider`,
    /// or a per-user folder under the system temp dir.
    pub fn state_dir(&self) -> PathBuf {
        self.file
            .server
            .state_dir
            .clone()
            .unwrap_or_else(crate::state::default_dir)
    }
}

/// The file key for a runtime setting's name.
fn file_key(runtime_key: &str) -> String {
    let section = match runtime_key {
        "max_message_size" | "max_frame_size" | "outgoing_queue" | "ping_interval"
        | "write_timeout" | "read_buffer_size" | "write_buffer_size" => "websocket",
        _ => "server",
    };
    let key = match runtime_key {
        "max_message_size" => "max_message_size_in_kb",
        "max_frame_size" => "max_frame_size_in_kb",
        other => other,
    };
    format!("{section}.{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../websocket.example.toml");

    /// Every key path (`server.port`) of a TOML value.
    fn keys(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if matches!(v, toml::Value::Table(_)) {
                    keys(v, &path, out);
                } else {
                    out.push(path);
                }
            }
        }
    }

    #[test]
    fn example_parses_and_documents_every_key() {
        let parsed = parse(EXAMPLE).expect("websocket.example.toml parses");
        // The example shows the defaults, so it must equal them (state_dir aside).
        let mut expected = FileConfig::default();
        expected.server.state_dir = parsed.server.state_dir.clone();
        assert_eq!(parsed, expected, "the example must show the defaults");
        // Every key the code knows is written in the example.
        let mut known = Vec::new();
        let mut all = FileConfig::default();
        all.server.state_dir = Some("/x".into());
        keys(&toml::Value::try_from(&all).unwrap(), "", &mut known);
        let mut documented = Vec::new();
        let uncommented: String = EXAMPLE
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| r.contains(" = "))
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        keys(&toml::from_str(&uncommented).unwrap(), "", &mut documented);
        for k in &known {
            assert!(
                documented.contains(k),
                "`{k}` is not documented in websocket.example.toml"
            );
        }
    }

    #[test]
    fn unknown_keys_and_bad_types_are_named() {
        let e = parse("[server]\nprot = 1\n").unwrap_err().to_string();
        assert!(e.contains("prot"), "{e}");
        let e = parse("[server]\nport = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("port"), "{e}");
        let e = parse("[server]\nport = 70000\n").unwrap_err().to_string();
        assert!(e.contains("port"), "{e}");
        let e = parse("[websocket]\nping_interval = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ping_interval") && e.contains("soon"), "{e}");
    }

    #[test]
    fn ranges_are_checked_with_the_file_key() {
        let dir = std::env::temp_dir().join(format!("ws-cli-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.toml");
        std::fs::write(&p, "[websocket]\nmax_frame_size_in_kb = 40000\n").unwrap();
        let e = Effective::load(Some(&p), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.toml") && e.contains("websocket.max_frame_size_in_kb"),
            "{e}"
        );
        std::fs::write(&p, "[server]\nroute_prefix = \"a b\"\n").unwrap();
        let e = format!(
            "{:#}",
            Effective::load(Some(&p), &Overrides::default()).unwrap_err()
        );
        assert!(e.contains("server.route_prefix"), "{e}");
        std::fs::write(&p, "[server]\nhost = \"localhost:80\"\n").unwrap();
        let e = format!(
            "{:#}",
            Effective::load(Some(&p), &Overrides::default()).unwrap_err()
        );
        assert!(e.contains("server.host"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn overrides_win_over_the_file() {
        let dir = std::env::temp_dir().join(format!("ws-cli-ovr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(&p, "[server]\nport = 1234\nroute_prefix = \"/a\"\n").unwrap();
        let eff = Effective::load(
            Some(&p),
            &Overrides {
                port: Some(4321),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(eff.file.server.port, 4321);
        assert_eq!(eff.file.server.route_prefix, "/a");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
