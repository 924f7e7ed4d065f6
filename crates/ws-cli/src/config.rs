//! The configuration file (TOML), its defaults, and how flags and `WS_*`
//! environment variables override it.
//!
//! Precedence, highest first: command-line flag, environment variable,
//! configuration file, built-in default. Every key has a default, so no file
//! is needed. Unknown keys, wrong types and out-of-range values are errors
//! that name the file and the key.

use std::fmt;
use std::path::{Path, PathBuf};

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
    pub websocket: ws_runtime::WebSocketSettings,
    /// `[log]`: logging.
    pub log: LogSection,
    /// `[tls]`: serve `wss://` (absent: plain `ws://`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ws_runtime::TlsSettings>,
    /// `[[route]]`: per-route overrides.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<ws_runtime::RoutePolicy>,
    /// `[admin]`: the publish API for the web application.
    pub admin: AdminSection,
    /// `[broker]`: channels in-process, or across servers through Redis.
    pub broker: ws_broker::BrokerConfig,
    /// `[[aspect]]`: who is on each connection (authentication).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aspect: Vec<AspectSection>,
}

/// One `[[aspect]]` table: the `ws-auth` aspect configuration
/// ([`ws_auth::AspectConfig`]: `name`, `credential`, `on_error`,
/// `revalidate_every`, `on_end` and one source table).
///
/// Errors inside the table are reported with the aspect's name. Secrets
/// (store URLs, HMAC keys) serialize as `<redacted>`, so `check-config`
/// shows none.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct AspectSection(pub ws_auth::AspectConfig);

impl<'de> Deserialize<'de> for AspectSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let table = toml::Table::deserialize(d)?;
        let name = match table.get("name") {
            Some(toml::Value::String(n)) => format!("aspect `{n}`"),
            _ => "an [[aspect]] table".to_owned(),
        };
        ws_auth::AspectConfig::deserialize(toml::Value::Table(table))
            .map(Self)
            .map_err(|e| D::Error::custom(format!("{name}: {}", e.to_string().trim_end())))
    }
}

/// `[admin]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Where the admin API listens; `""` turns it off.
    pub listen: String,
    /// Bearer key callers must present; `WS_ADMIN_KEY` overrides it. Empty:
    /// the admin API stays off (it never runs unauthenticated).
    pub key: String,
    /// Largest request body, in KiB (413 above).
    pub max_body_in_kb: u32,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:18081".to_owned(),
            key: String::new(),
            max_body_in_kb: 1024,
        }
    }
}

/// `[server]`: where to listen and the state directory (the command
/// line's own keys), and the runtime's keys, read straight into
/// [`ServerConfig`] (its schema: key names, units, defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSection {
    /// `host`: address to listen on.
    pub host: String,
    /// `port`: port to listen on (0 picks a free one).
    pub port: u16,
    /// `state_dir`: where info files of running servers live (default: see
    /// [`Effective::state_dir`]).
    pub state_dir: Option<PathBuf>,
    /// Every other key of `[server]`: the runtime's.
    pub runtime: ServerConfig,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_owned(),
            port: 18080,
            state_dir: None,
            runtime: ServerConfig::default(),
        }
    }
}

impl Serialize for ServerSection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let mut out = toml::Table::new();
        out.insert("host".to_owned(), self.host.clone().into());
        out.insert("port".to_owned(), i64::from(self.port).into());
        if let Some(dir) = &self.state_dir {
            let dir = dir
                .to_str()
                .ok_or_else(|| S::Error::custom("state_dir is not UTF-8"))?;
            out.insert("state_dir".to_owned(), dir.into());
        }
        match toml::Value::try_from(&self.runtime).map_err(S::Error::custom)? {
            toml::Value::Table(t) => out.extend(t),
            _ => {
                return Err(S::Error::custom(
                    "the runtime's settings serialize as a table",
                ));
            }
        }
        out.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ServerSection {
    /// The command line's keys are taken out; every other key goes, in the
    /// same pass, to [`ServerConfig`]'s own deserializer (unknown keys are
    /// its errors), so TOML's errors keep pointing at the key and line.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;

        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = ServerSection;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the [server] table")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<ServerSection, A::Error> {
                let mut own = OwnKeys {
                    map,
                    section: ServerSection::default(),
                };
                let runtime = ServerConfig::deserialize(
                    serde::de::value::MapAccessDeserializer::new(&mut own),
                )?;
                Ok(ServerSection {
                    runtime,
                    ..own.section
                })
            }
        }

        /// The table's entries without the command line's, which are read
        /// into `section` on the way.
        struct OwnKeys<A> {
            map: A,
            section: ServerSection,
        }

        impl<'de, A: serde::de::MapAccess<'de>> serde::de::MapAccess<'de> for &mut OwnKeys<A> {
            type Error = A::Error;

            fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
                &mut self,
                seed: K,
            ) -> std::result::Result<Option<K::Value>, A::Error> {
                use serde::de::IntoDeserializer as _;
                while let Some(key) = self.map.next_key::<String>()? {
                    match key.as_str() {
                        "host" => self.section.host = self.map.next_value()?,
                        "port" => self.section.port = self.map.next_value()?,
                        "state_dir" => self.section.state_dir = Some(self.map.next_value()?),
                        _ => return seed.deserialize(key.into_deserializer()).map(Some),
                    }
                }
                Ok(None)
            }

            fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
                &mut self,
                seed: V,
            ) -> std::result::Result<V::Value, A::Error> {
                self.map.next_value_seed(seed)
            }
        }

        d.deserialize_map(Visit)
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
    /// `WS_ADMIN_KEY`.
    pub admin_key: Option<String>,
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
            file.server.runtime.route_prefix = v;
        }
        if let Some(v) = o.state_dir {
            file.server.state_dir = Some(v);
        }
        if let Some(v) = o.log_format {
            file.log.format = v;
        }
        if let Some(v) = o.admin_key {
            file.admin.key = v;
        }
        let eff = Self { file, source };
        eff.server_config()?;
        eff.host_ip()?;
        eff.admin()?;
        Ok(eff)
    }

    /// The admin listener's address and settings; `None` when it is off
    /// (no `listen` address, or no key).
    ///
    /// # Errors
    /// An `admin.listen` that is not `IP:PORT`, or a body limit of 0.
    pub fn admin(&self) -> Result<Option<(std::net::SocketAddr, ws_runtime::AdminConfig)>> {
        let a = &self.file.admin;
        if a.listen.is_empty() || a.key.is_empty() {
            return Ok(None);
        }
        let addr = a.listen.parse().map_err(|_| {
            anyhow::anyhow!(
                "{}: `admin.listen`: `{}` is not an address like 127.0.0.1:18081",
                self.source,
                a.listen
            )
        })?;
        if a.max_body_in_kb == 0 {
            bail!(
                "{}: `admin.max_body_in_kb`: must be at least 1",
                self.source
            );
        }
        let mut config = ws_runtime::AdminConfig::new(a.key.clone());
        config.max_body = a.max_body_in_kb as usize * 1024;
        Ok(Some((addr, config)))
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

    /// The runtime settings: the file's sections as they are, checked.
    ///
    /// # Errors
    /// A value out of range, naming the file and its key.
    pub fn server_config(&self) -> Result<ServerConfig> {
        let c = self.runtime_config();
        if let Err(e) = self.file.broker.validate() {
            bail!("{}: `broker`: {e}", self.source);
        }
        let aspects: Vec<&str> = self.file.aspect.iter().map(|a| a.0.name.as_str()).collect();
        if let Err(e) = c
            .validate()
            .and_then(|()| c.check_required_aspects(&aspects))
        {
            let route = match &e.route {
                Some(path) => format!(" of the [[route]] for {path:?}"),
                None => String::new(),
            };
            bail!("{}: `{}`{route}: {}", self.source, e.file_key(), e.reason);
        }
        if let Err(e) = ws_routing::normalize_prefix(&c.route_prefix) {
            bail!("{}: `server.route_prefix`: {e}", self.source);
        }
        Ok(c)
    }

    /// The runtime settings: the file's sections as they are, unchecked
    /// ([`load`](Self::load) checked them, and the server's build parses
    /// them once more).
    pub(crate) fn runtime_config(&self) -> ServerConfig {
        let mut c = self.file.server.runtime.clone();
        c.websocket = self.file.websocket.clone();
        c.tls = self.file.tls.clone();
        c.routes = self.file.route.clone();
        c.slow_subscriber = self.file.broker.slow_subscriber.into();
        c
    }

    /// The authenticator of every `[[aspect]]`, as the server uses it: key
    /// files, environment variables, URLs and templates are checked, pools
    /// prepared (no session store is contacted). Must run on a Tokio
    /// runtime.
    ///
    /// # Errors
    /// The first aspect that cannot work, naming the file, the aspect and
    /// the key.
    pub async fn authenticator(&self) -> Result<ws_auth::Authenticator> {
        let configs: Vec<ws_auth::AspectConfig> =
            self.file.aspect.iter().map(|a| a.0.clone()).collect();
        ws_auth::Authenticator::new(&configs)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.source))
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
                } else if let Some(tables) = v
                    .as_array()
                    .filter(|a| a.first().is_some_and(toml::Value::is_table))
                {
                    // Arrays of tables: the keys of every element.
                    for t in tables {
                        keys(t, &path, out);
                    }
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
        expected.tls = parsed.tls.clone();
        expected.broker.redis_url = parsed.broker.redis_url.clone();
        expected.route = parsed.route.clone();
        expected.aspect = parsed.aspect.clone();
        assert_eq!(parsed, expected, "the example must show the defaults");
        // Every key the code knows is written in the example.
        let mut known = Vec::new();
        let mut all = FileConfig::default();
        all.server.state_dir = Some("/x".into());
        all.broker.redis_url = Some("redis://x".into());
        all.tls = Some(ws_runtime::TlsSettings::new("c", "k").with_client_ca("ca"));
        let mut route = ws_runtime::RoutePolicy::new("/x");
        route.allowed_origins = Some(vec![]);
        route.require_origin = Some(true);
        route.max_messages_per_second = Some(1);
        route.max_message_size = Some(1024);
        route.max_frame_size = Some(1024);
        route.max_connections = Some(1);
        route.require = vec!["a".into()];
        route.require_groups = vec!["g".into()];
        all.route = vec![route];
        all.aspect = every_aspect_key();
        keys(&toml::Value::try_from(&all).unwrap(), "", &mut known);
        let mut documented = Vec::new();
        // Commented-out settings (`# key = value`, `# [table]`) count as
        // documented; prose does not.
        let is_setting = |r: &str| {
            (r.starts_with('[') && r.ends_with(']'))
                || r.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                })
        };
        let uncommented: String = EXAMPLE
            .lines()
            .map(|l| l.strip_prefix("# ").filter(|r| is_setting(r)).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        keys(&toml::from_str(&uncommented).unwrap(), "", &mut documented);
        // The commented examples are valid once uncommented.
        let examples = parse(&uncommented).expect("the commented examples parse");
        assert_eq!(examples.aspect.len(), 5, "one example per aspect kind");
        for k in &known {
            assert!(
                documented.contains(k),
                "`{k}` is not documented in websocket.example.toml"
            );
        }
    }

    /// One aspect per source, every key set, every credential form used.
    fn every_aspect_key() -> Vec<AspectSection> {
        use ws_auth::{
            AspectConfig, Credential, FieldMap, HttpConfig, HttpMethod, JwtAlgorithm, JwtConfig,
            OnError, RecordFormat, RedisConfig, Secret, SessionHash, SourceConfig, SqlConfig,
        };
        let d = std::time::Duration::from_secs(1);
        let fields = FieldMap {
            id: Some("id".into()),
            username: Some("u".into()),
            groups: Some("g".into()),
            expires_at: Some("e".into()),
            properties: Some(vec!["p".into()]),
        };
        let aspect = |credential, source| {
            AspectSection(AspectConfig {
                name: "a".into(),
                credential,
                on_error: OnError::Reject,
                revalidate_every: Some(d),
                on_end: ws_runtime::OnSessionEnd::Downgrade,
                source,
            })
        };
        vec![
            aspect(
                Credential::Cookie("c".into()),
                SourceConfig::Jwt(JwtConfig {
                    algorithm: JwtAlgorithm::HS256,
                    key_file: Some("k".into()),
                    key_env: Some("K".into()),
                    leeway: d,
                    issuer: Some("i".into()),
                    audience: Some("a".into()),
                    require_exp: true,
                    cache_size: 10,
                    claims: FieldMap {
                        expires_at: None,
                        ..fields.clone()
                    },
                }),
            ),
            aspect(
                Credential::Query("q".into()),
                SourceConfig::Redis(RedisConfig {
                    url: Some(Secret::new("redis://x")),
                    url_env: Some("U".into()),
                    key: "sess:{id}".into(),
                    format: RecordFormat::Hash,
                    timeout: d,
                    fields: fields.clone(),
                }),
            ),
            aspect(
                Credential::Protocol {
                    prefix: "t.".into(),
                },
                SourceConfig::Sql(SqlConfig {
                    url: Some(Secret::new("sqlite://x")),
                    url_env: Some("U".into()),
                    query: "SELECT 1".into(),
                    hash: SessionHash::HmacSha256,
                    secret: Some(Secret::new("s")),
                    secret_env: Some("S".into()),
                    timeout: d,
                    max_connections: 1,
                    fields: fields.clone(),
                }),
            ),
            aspect(
                Credential::Bearer,
                SourceConfig::Http(HttpConfig {
                    url: "http://x".into(),
                    method: HttpMethod::POST,
                    forward_cookies: false,
                    forward_headers: vec!["h".into()],
                    timeout: d,
                    cache_ttl: d,
                    cache_size: 1,
                    ca_file: Some("ca".into()),
                    fields,
                }),
            ),
        ]
    }

    #[test]
    fn aspects_parse_with_on_end_and_print_redacted() {
        let text = r#"
[[aspect]]
name = "frontend.user"
credential = { cookie = "fe_typo_user" }
revalidate_every = "30s"
on_end = "downgrade"
[aspect.redis]
url = "redis://:hunter2@127.0.0.1:6379"

[[aspect]]
name = "backend.user"
credential = "bearer"
[aspect.jwt]
algorithm = "HS256"
key_env = "WS_TEST_JWT_SECRET"
"#;
        let f = parse(text).unwrap();
        assert_eq!(f.aspect.len(), 2);
        assert_eq!(f.aspect[0].0.on_end, ws_runtime::OnSessionEnd::Downgrade);
        assert_eq!(f.aspect[1].0.on_end, ws_runtime::OnSessionEnd::Close);
        assert_eq!(f.aspect[0].0.name, "frontend.user");
        let eff = Effective {
            file: f.clone(),
            source: Source::Defaults,
        };
        eff.server_config().unwrap();
        // The server gets on_end through the authenticator (the Redis one
        // connects lazily: nothing is contacted here).
        let auth = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(ws_auth::Authenticator::new(&[f.aspect[0].0.clone()]))
            .unwrap();
        let aspects = ws_runtime::Authenticate::aspects(&auth);
        assert_eq!(aspects.len(), 1);
        assert_eq!(aspects[0].on_end, ws_runtime::OnSessionEnd::Downgrade);
        // Printed (check-config): the password is redacted, on_end shown.
        let printed = toml::to_string_pretty(&f).unwrap();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
        assert!(printed.contains("on_end = \"downgrade\""), "{printed}");
        // What is printed parses again (secrets aside).
        let again = parse(&printed).unwrap();
        assert_eq!(again.aspect[1], f.aspect[1]);
    }

    #[test]
    fn aspect_errors_name_the_aspect_and_key() {
        let base = "[[aspect]]\nname = \"fe\"\ncredential = \"bearer\"\n";
        let jwt = "[aspect.jwt]\nalgorithm = \"HS256\"\nkey_env = \"K\"\n";
        let e = parse(&format!("{base}on_end = \"logout\"\n{jwt}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("aspect `fe`") && e.contains("on_end") && e.contains("logout"),
            "{e}"
        );
        let e = parse(&format!("{base}revalidate = \"1s\"\n{jwt}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("aspect `fe`") && e.contains("revalidate"), "{e}");
        let e = parse(base).unwrap_err().to_string();
        assert!(e.contains("fe") && e.contains("source"), "{e}");
        let e = parse(&format!("{base}{jwt}algorithm2 = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("aspect `fe`") && e.contains("algorithm2"), "{e}");
        // A route requiring an aspect that is not configured.
        let e = Effective {
            file: parse("[[route]]\npath = \"/x\"\nrequire = [\"fe\"]\n").unwrap(),
            source: Source::File("w.toml".into()),
        }
        .server_config()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("w.toml") && e.contains("route.require") && e.contains("\"fe\""),
            "{e}"
        );
    }

    #[tokio::test]
    async fn check_aspects_names_file_aspect_and_key() {
        let file = parse(
            "[[aspect]]\nname = \"fe\"\ncredential = \"bearer\"\n\
             [aspect.jwt]\nalgorithm = \"HS256\"\nkey_file = \"/nonexistent/secret\"\n",
        )
        .unwrap();
        let eff = Effective {
            file,
            source: Source::File("w.toml".into()),
        };
        let e = format!("{:#}", eff.authenticator().await.unwrap_err());
        assert!(
            e.contains("w.toml")
                && e.contains("aspect `fe`")
                && e.contains("jwt.key_file")
                && e.contains("/nonexistent/secret"),
            "{e}"
        );
        Effective {
            file: FileConfig::default(),
            source: Source::Defaults,
        }
        .authenticator()
        .await
        .unwrap();
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
        // The memory budget must hold the largest message.
        std::fs::write(
            &p,
            "[websocket]\nmax_message_size_in_kb = 4096\nmax_frame_size_in_kb = 64\n\
             max_buffered_memory_in_mb = 2\n",
        )
        .unwrap();
        let e = Effective::load(Some(&p), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("websocket.max_buffered_memory_in_mb") && e.contains("4194304 bytes"),
            "{e}"
        );
        std::fs::write(&p, "[websocket]\nmax_buffered_memory_in_mb = 0\n").unwrap();
        let c = Effective::load(Some(&p), &Overrides::default())
            .unwrap()
            .server_config()
            .unwrap();
        assert_eq!(c.websocket.max_buffered_memory, 0, "0: unlimited");
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
        assert_eq!(eff.file.server.runtime.route_prefix, "/a");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
