//! The configuration of aspects, as written in the server's TOML file.
//!
//! Each `[[aspect]]` table names an aspect, says where its credential comes
//! from and has exactly one source table (`[aspect.jwt]`, `[aspect.redis]`,
//! `[aspect.sql]` or `[aspect.http]`). Every table rejects unknown keys.
//! These types only describe; [`Authenticator::new`](crate::Authenticator::new)
//! checks what cannot be checked while parsing (files, environment
//! variables, URLs, templates) and names the aspect and the key in its error.
//!
//! Durations are strings like `"2s"`, `"500ms"`, `"1m"`. Secrets serialize as
//! `"<redacted>"`, so printing the configuration in force shows none.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
pub use ws_runtime::OnSessionEnd;

/// One `[[aspect]]` table.
///
/// ```toml
/// [[aspect]]
/// name = "frontend.user"
/// credential = { cookie = "fe_typo_user" }
/// on_error = "anonymous"
/// revalidate_every = "30s"
/// on_end = "close"
///
/// [aspect.redis]
/// url = "redis://127.0.0.1:6379"
/// key = "sess:{id}"
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawAspect", into = "RawAspect")]
pub struct AspectConfig {
    /// `name`: the aspect's name, as components ask for it
    /// (`conn.aspect("frontend.user")`). Unique among the aspects.
    pub name: String,
    /// `credential`: where the session id or token is found in the handshake.
    pub credential: Credential,
    /// `on_error`: what a failing source (store down, timeout, unusable
    /// answer) means for the handshake. Default: `"anonymous"`.
    pub on_error: OnError,
    /// `revalidate_every`: how often a live connection's session is checked
    /// again (`"0s"` or absent: never periodically). Not allowed for `jwt`,
    /// whose tokens end at their `exp` without any check.
    pub revalidate_every: Option<Duration>,
    /// `on_end`: what ending the session (logout, deletion, expiry) does to
    /// an open connection: `"close"` (default, 1008) or `"downgrade"`.
    pub on_end: OnSessionEnd,
    /// The one source table: `jwt`, `redis`, `sql` or `http`.
    pub source: SourceConfig,
}

/// Where an aspect's credential is found in the handshake request.
///
/// In TOML: `credential = { cookie = "NAME" }`, `{ query = "NAME" }`,
/// `"bearer"`, `"protocol"` or `{ protocol = "PREFIX" }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// The value of the cookie of this name (first one wins).
    Cookie(String),
    /// The value of the query parameter of this name (first one wins,
    /// percent- and `+`-decoded). Query strings end up in access logs:
    /// prefer a cookie or a protocol token.
    Query(String),
    /// `Authorization: Bearer <token>`. Browsers cannot set it on a
    /// WebSocket; for other clients.
    Bearer,
    /// A token offered as one entry of `Sec-WebSocket-Protocol`, written as
    /// the prefix followed by the token (default prefix `bearer.`).
    ///
    /// Browsers cannot set headers on a WebSocket but can offer subprotocols,
    /// so a page writes `new WebSocket(url, ["chat", "bearer." + token])`:
    /// the real subprotocol first, the token entry after it. The server never
    /// chooses the token entry as the subprotocol (see
    /// [`Authenticator::is_credential_protocol`](crate::Authenticator::is_credential_protocol)),
    /// and a browser fails a connection whose answer names no subprotocol when
    /// it offered some, so the page must offer one the route speaks. The token
    /// must consist of HTTP token characters (a JWT or a hex session id
    /// does).
    Protocol {
        /// Text in front of the token in the entry.
        prefix: String,
    },
}

/// The default prefix of a [`Credential::Protocol`] entry.
pub const DEFAULT_PROTOCOL_PREFIX: &str = "bearer.";

/// What a failing source means for the handshake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// The aspect is anonymous and a warning is logged; the handshake goes on.
    #[default]
    Anonymous,
    /// The handshake is refused ([`AuthError`](crate::AuthError), 503).
    Reject,
}

/// The source of an aspect: exactly one per aspect.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceConfig {
    /// `[aspect.jwt]`: a signed token, checked locally.
    Jwt(JwtConfig),
    /// `[aspect.redis]`: a session record in Redis.
    Redis(RedisConfig),
    /// `[aspect.sql]`: a session row from SQLite or PostgreSQL.
    Sql(SqlConfig),
    /// `[aspect.http]`: the application answers who the session belongs to.
    Http(HttpConfig),
}

impl SourceConfig {
    /// The source's table name: `jwt`, `redis`, `sql` or `http`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Jwt(_) => "jwt",
            Self::Redis(_) => "redis",
            Self::Sql(_) => "sql",
            Self::Http(_) => "http",
        }
    }
}

/// How fields of a record (claims of a token, a JSON object, a hash, a row)
/// become the aspect. Every key is optional; the defaults depend on the
/// source (`sub`/`name`/`groups` for JWT, `id`/`username`/`groups`/
/// `expires_at` for the others).
///
/// A name is a top-level field; a name starting with `/` is a JSON pointer
/// into nested objects (`"/realm_access/roles"`). A record without an id is
/// anonymous. Groups may be an array, a JSON array in a string or a
/// comma-separated string (`"1,2,5"`). An expiry is Unix seconds (numbers
/// above 10^11 are taken as milliseconds; 0 means none), a numeric string or
/// an RFC 3339 date. Every other top-level field goes into the aspect's
/// properties (for a JWT, but its registered claims `iss`, `sub`, `aud`,
/// `exp`, `nbf`, `iat` and `jti`), or only those listed in `properties`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMap {
    /// Field holding the user's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Field holding the user's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Field holding the user's groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<String>,
    /// Field holding when the session ends (not for JWT: that is `exp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Only these top-level fields become properties (default: all others,
    /// for a JWT all but its registered claims).
    /// Select only what components may see: never a password hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<Vec<String>>,
}

/// Signature algorithm of a JWT source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and a shared secret.
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256; the key is an RSA public key in PEM.
    RS256,
    /// Ed25519; the key is an Ed25519 public key in PEM.
    EdDSA,
}

/// `[aspect.jwt]`: a signed token (JWT) checked locally, without a store.
///
/// ```toml
/// [aspect.jwt]
/// algorithm = "RS256"
/// key_file = "/etc/ws-provider/jwt.pub.pem"
/// leeway = "5s"
/// issuer = "https://app.example.com"
/// audience = "ws"
/// [aspect.jwt.claims]
/// username = "preferred_username"
/// groups = "/realm_access/roles"
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// `algorithm`: `"HS256"`, `"RS256"` or `"EdDSA"`; tokens signed
    /// otherwise are refused.
    pub algorithm: JwtAlgorithm,
    /// `key_file`: the key: the secret's bytes for HS256 (trailing
    /// whitespace removed), a PEM public key otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// `key_env`: or the environment variable holding the key (same forms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_env: Option<String>,
    /// `leeway`: clock skew allowed on `exp` and `nbf` (default `"5s"`).
    #[serde(default = "default_leeway", with = "ws_config::duration")]
    pub leeway: Duration,
    /// `issuer`: when set, `iss` must be present and equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `audience`: when set, `aud` must be present and contain it; when not
    /// set, `aud` is not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// `require_exp`: whether a token without `exp` is refused (default
    /// true: a token that never expires cannot be revoked).
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// `cache_size`: most tokens whose check is remembered (default 10000;
    /// 0: none). A token presented again (a reconnect, a second tab) is
    /// not decoded and its signature not checked again for up to a minute;
    /// its `exp` and `nbf` still are, at every use. The result depends on
    /// the token's bytes alone, so this changes no answer, only its cost.
    #[serde(default = "default_jwt_cache_size")]
    pub cache_size: usize,
    /// `[aspect.jwt.claims]`: claim mapping (defaults `sub`, `name`,
    /// `groups`; the expiry is always `exp`).
    #[serde(default)]
    pub claims: FieldMap,
}

/// How a Redis session record is stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    /// A string key holding a JSON object (`SET sess:abc '{"id":7}'`).
    #[default]
    Json,
    /// A hash (`HSET sess:abc id 7 username ann`).
    Hash,
}

/// `[aspect.redis]`: session id → key → JSON or hash record; the key's TTL
/// is the aspect's expiry.
///
/// ```toml
/// [aspect.redis]
/// url = "redis://127.0.0.1:6379/0"
/// key = "sess:{id}"
/// format = "json"
/// timeout = "1s"
/// [aspect.redis.fields]
/// id = "uid"
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `url`: `redis://[user:password@]host:port[/db]` (no TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// `url_env`: or the environment variable holding the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// `key`: key template; `{id}` is replaced by the session id
    /// (default `"sess:{id}"`).
    #[serde(default = "default_redis_key")]
    pub key: String,
    /// `format`: `"json"` (default) or `"hash"`.
    #[serde(default)]
    pub format: RecordFormat,
    /// `timeout`: longest wait for an answer (default `"2s"`).
    #[serde(default = "default_timeout", with = "ws_config::duration")]
    pub timeout: Duration,
    /// `[aspect.redis.fields]`: field mapping.
    #[serde(default)]
    pub fields: FieldMap,
}

/// How the session id is transformed before it is bound to the SQL query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionHash {
    /// The id as presented.
    #[default]
    #[serde(rename = "none")]
    None,
    /// Lower-case hex SHA-256 of the id.
    #[serde(rename = "sha256")]
    Sha256,
    /// Lower-case hex HMAC-SHA256 of the id with `secret` as the key.
    ///
    /// TYPO3 (v11+) stores `ses_id` as
    /// `hash_hmac('sha256', $id, sha1($encryptionKey . 'core-session-backend'))`:
    /// its `secret` is that sha1 hex string.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
}

/// `[aspect.sql]`: one query, one parameter (the session id, optionally
/// hashed), one row or none.
///
/// ```toml
/// [aspect.sql]
/// url = "postgres://ws@127.0.0.1/typo3"      # or "sqlite:///var/lib/app.db"
/// query = """
///   SELECT u.uid AS id, u.username, u.usergroup AS groups
///   FROM fe_sessions s JOIN fe_users u ON u.uid = s.ses_userid
///   WHERE s.ses_id = $1"""
/// hash = "hmac-sha256"
/// secret_env = "TYPO3_SESSION_KEY"
/// timeout = "2s"
/// max_connections = 8
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// `url`: `postgres://…` / `postgresql://…` (TLS through rustls when the
    /// URL asks for it with `sslmode`) or `sqlite://PATH` / `sqlite:PATH`
    /// (the file must exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// `url_env`: or the environment variable holding the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// `query`: the query; its one parameter is `$1` (both databases; `?`
    /// also works with SQLite). Columns are mapped by name through `fields`.
    /// PostgreSQL columns must be text, integers, floats, booleans, json,
    /// text or integer arrays: cast others (`extract(epoch FROM t)::bigint`,
    /// `uuid::text`).
    pub query: String,
    /// `hash`: `"none"` (default), `"sha256"` or `"hmac-sha256"`.
    #[serde(default)]
    pub hash: SessionHash,
    /// `secret`: the HMAC key (for `hmac-sha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// `secret_env`: or the environment variable holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// `timeout`: longest time for a connection and the query together
    /// (default `"2s"`); PostgreSQL also cancels the statement then.
    #[serde(default = "default_timeout", with = "ws_config::duration")]
    pub timeout: Duration,
    /// `max_connections`: size bound of the pool (default 8).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// `[aspect.sql.fields]`: column mapping.
    #[serde(default)]
    pub fields: FieldMap,
}

/// Method of the HTTP session callback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpMethod {
    /// `GET`; the URL may contain `{credential}`.
    #[default]
    GET,
    /// `POST` with the JSON body `{"aspect": NAME, "credential": VALUE}`.
    POST,
}

/// `[aspect.http]`: the server asks the application who the session belongs
/// to.
///
/// The request carries the client's `Cookie` header (unless
/// `forward_cookies = false`), the headers listed in `forward_headers`, an
/// `Authorization: Bearer` header when the credential is a bearer token, and
/// the credential in the URL (`{credential}`, percent-encoded) or the POST
/// body. A 200 answer is a JSON object mapped through `fields` (no id, or
/// `null`: anonymous); 204, 401 and 403 mean anonymous; anything else is a
/// failure. Answers are cached per credential for `cache_ttl`.
///
/// ```toml
/// [aspect.http]
/// url = "http://127.0.0.1:8080/api/ws-session"
/// method = "GET"
/// forward_headers = ["user-agent", "x-forwarded-for"]
/// timeout = "2s"
/// cache_ttl = "5s"
/// cache_size = 10000
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `url`: `http://` or `https://` (rustls; system CA roots, or `ca_file`).
    pub url: String,
    /// `method`: `"GET"` (default) or `"POST"`.
    #[serde(default)]
    pub method: HttpMethod,
    /// `forward_cookies`: send the client's `Cookie` header (default true).
    #[serde(default = "yes")]
    pub forward_cookies: bool,
    /// `forward_headers`: further client headers to send, by name.
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// `timeout`: longest wait for the whole answer (default `"2s"`).
    #[serde(default = "default_timeout", with = "ws_config::duration")]
    pub timeout: Duration,
    /// `cache_ttl`: how long an answer is reused for the same credential
    /// (default `"5s"`; `"0s"`: no cache). A logout is noticed at the latest
    /// this much after the application forgot the session.
    #[serde(default = "default_cache_ttl", with = "ws_config::duration")]
    pub cache_ttl: Duration,
    /// `cache_size`: most answers cached (default 10000); the oldest go first.
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
    /// `ca_file`: PEM file of CA certificates trusted for `https` instead of
    /// the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// `[aspect.http.fields]`: field mapping of the JSON answer.
    #[serde(default)]
    pub fields: FieldMap,
}

/// A configuration value that must not be shown: compares by value,
/// debug-prints and serializes as `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl JwtConfig {
    /// A configuration for `algorithm` with the key in `key_file` and every
    /// other key at its default.
    pub fn new(algorithm: JwtAlgorithm, key_file: impl Into<PathBuf>) -> Self {
        Self {
            algorithm,
            key_file: Some(key_file.into()),
            key_env: None,
            leeway: default_leeway(),
            issuer: None,
            audience: None,
            require_exp: true,
            cache_size: default_jwt_cache_size(),
            claims: FieldMap::default(),
        }
    }
}

impl RedisConfig {
    /// A configuration for the server at `url`, every other key at its
    /// default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Some(Secret::new(url)),
            url_env: None,
            key: default_redis_key(),
            format: RecordFormat::default(),
            timeout: default_timeout(),
            fields: FieldMap::default(),
        }
    }
}

impl SqlConfig {
    /// A configuration for the database at `url` and `query`, every other
    /// key at its default.
    pub fn new(url: impl Into<String>, query: impl Into<String>) -> Self {
        Self {
            url: Some(Secret::new(url)),
            url_env: None,
            query: query.into(),
            hash: SessionHash::default(),
            secret: None,
            secret_env: None,
            timeout: default_timeout(),
            max_connections: default_max_connections(),
            fields: FieldMap::default(),
        }
    }
}

impl HttpConfig {
    /// A configuration for the callback at `url`, every other key at its
    /// default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            method: HttpMethod::default(),
            forward_cookies: true,
            forward_headers: Vec::new(),
            timeout: default_timeout(),
            cache_ttl: default_cache_ttl(),
            cache_size: default_cache_size(),
            ca_file: None,
            fields: FieldMap::default(),
        }
    }
}

impl AspectConfig {
    /// An aspect with the default `on_error` and no periodic revalidation.
    pub fn new(name: impl Into<String>, credential: Credential, source: SourceConfig) -> Self {
        Self {
            name: name.into(),
            credential,
            on_error: OnError::default(),
            revalidate_every: None,
            on_end: OnSessionEnd::default(),
            source,
        }
    }

    /// Sets `on_end`.
    #[must_use]
    pub fn on_end(mut self, on_end: OnSessionEnd) -> Self {
        self.on_end = on_end;
        self
    }

    /// Sets `on_error`.
    #[must_use]
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }

    /// Sets `revalidate_every`.
    #[must_use]
    pub fn revalidate_every(mut self, every: Duration) -> Self {
        self.revalidate_every = Some(every).filter(|d| !d.is_zero());
        self
    }
}

fn yes() -> bool {
    true
}

fn default_leeway() -> Duration {
    Duration::from_secs(5)
}

fn default_jwt_cache_size() -> usize {
    10_000
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(5)
}

fn default_cache_size() -> usize {
    10_000
}

fn default_max_connections() -> u32 {
    8
}

fn default_redis_key() -> String {
    "sess:{id}".to_owned()
}

/// The table as written: every source optional, checked to be exactly one.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAspect {
    name: String,
    credential: Credential,
    #[serde(default)]
    on_error: OnError,
    #[serde(
        default,
        with = "ws_config::optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    revalidate_every: Option<Duration>,
    #[serde(default, with = "on_end")]
    on_end: OnSessionEnd,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jwt: Option<JwtConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redis: Option<RedisConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sql: Option<SqlConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http: Option<HttpConfig>,
}

impl TryFrom<RawAspect> for AspectConfig {
    type Error = String;

    fn try_from(raw: RawAspect) -> Result<Self, String> {
        let mut sources = Vec::new();
        sources.extend(raw.jwt.map(SourceConfig::Jwt));
        sources.extend(raw.redis.map(SourceConfig::Redis));
        sources.extend(raw.sql.map(SourceConfig::Sql));
        sources.extend(raw.http.map(SourceConfig::Http));
        let name = raw.name;
        if sources.len() != 1 {
            let found: Vec<_> = sources.iter().map(SourceConfig::kind).collect();
            return Err(format!(
                "aspect `{name}` needs exactly one source table (jwt, redis, sql or http), found {}",
                if found.is_empty() {
                    "none".to_owned()
                } else {
                    found.join(" and ")
                }
            ));
        }
        let source = sources.remove(0);
        Ok(Self {
            name,
            credential: raw.credential,
            on_error: raw.on_error,
            revalidate_every: raw.revalidate_every,
            on_end: raw.on_end,
            source,
        })
    }
}

impl From<AspectConfig> for RawAspect {
    fn from(c: AspectConfig) -> Self {
        let mut raw = Self {
            name: c.name,
            credential: c.credential,
            on_error: c.on_error,
            revalidate_every: c.revalidate_every,
            on_end: c.on_end,
            jwt: None,
            redis: None,
            sql: None,
            http: None,
        };
        match c.source {
            SourceConfig::Jwt(s) => raw.jwt = Some(s),
            SourceConfig::Redis(s) => raw.redis = Some(s),
            SourceConfig::Sql(s) => raw.sql = Some(s),
            SourceConfig::Http(s) => raw.http = Some(s),
        }
        raw
    }
}

impl Serialize for Credential {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let (key, value) = match self {
            Self::Bearer => return s.serialize_str("bearer"),
            Self::Protocol { prefix } if prefix == DEFAULT_PROTOCOL_PREFIX => {
                return s.serialize_str("protocol");
            }
            Self::Protocol { prefix } => ("protocol", prefix),
            Self::Cookie(name) => ("cookie", name),
            Self::Query(name) => ("query", name),
        };
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(key, value)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Credential {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CredentialVisitor)
    }
}

const CREDENTIAL_FORMS: &str = "`\"bearer\"`, `\"protocol\"`, `{ cookie = \"NAME\" }`, \
     `{ query = \"NAME\" }` or `{ protocol = \"PREFIX\" }`";

struct CredentialVisitor;

impl<'de> Visitor<'de> for CredentialVisitor {
    type Value = Credential;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a credential: {CREDENTIAL_FORMS}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Credential, E> {
        match v {
            "bearer" => Ok(Credential::Bearer),
            "protocol" => Ok(Credential::Protocol {
                prefix: DEFAULT_PROTOCOL_PREFIX.to_owned(),
            }),
            "cookie" | "query" => Err(E::custom(format!(
                "credential `{v}` needs a name: `{{ {v} = \"NAME\" }}`"
            ))),
            other => Err(E::custom(format!(
                "unknown credential `{other}`; expected {CREDENTIAL_FORMS}"
            ))),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Credential, A::Error> {
        let Some((key, value)) = map.next_entry::<String, String>()? else {
            return Err(de::Error::custom(format!(
                "empty credential; expected {CREDENTIAL_FORMS}"
            )));
        };
        if map.next_key::<String>()?.is_some() {
            return Err(de::Error::custom(
                "a credential has exactly one key (cookie, query or protocol)",
            ));
        }
        if value.is_empty() {
            return Err(de::Error::custom(format!(
                "credential `{key}` needs a non-empty value"
            )));
        }
        match key.as_str() {
            "cookie" => Ok(Credential::Cookie(value)),
            "query" => Ok(Credential::Query(value)),
            "protocol" => Ok(Credential::Protocol { prefix: value }),
            other => Err(de::Error::custom(format!(
                "unknown credential `{other}`; expected {CREDENTIAL_FORMS}"
            ))),
        }
    }
}

/// The runtime's [`OnSessionEnd`], as `"close"` or `"downgrade"`.
mod on_end {
    use serde::{Deserialize as _, Deserializer, Serializer};
    use ws_runtime::OnSessionEnd;

    pub(super) fn serialize<S: Serializer>(v: &OnSessionEnd, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OnSessionEnd, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(|e: ws_runtime::ConfigError| {
                serde::de::Error::custom(format!("on_end {}", e.reason))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Serialize)]
    struct File {
        aspect: Vec<AspectConfig>,
    }

    fn parse(text: &str) -> Result<Vec<AspectConfig>, String> {
        toml::from_str::<File>(text)
            .map(|f| f.aspect)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn credential_forms() {
        let cases = [
            (
                "{ cookie = \"fe_typo_user\" }",
                Credential::Cookie("fe_typo_user".into()),
            ),
            ("{ query = \"token\" }", Credential::Query("token".into())),
            ("\"bearer\"", Credential::Bearer),
            (
                "\"protocol\"",
                Credential::Protocol {
                    prefix: "bearer.".into(),
                },
            ),
            (
                "{ protocol = \"t.\" }",
                Credential::Protocol {
                    prefix: "t.".into(),
                },
            ),
        ];
        for (text, want) in cases {
            let toml = format!(
                "[[aspect]]\nname = \"a\"\ncredential = {text}\n[aspect.jwt]\nalgorithm = \"HS256\"\nkey_env = \"K\"\n"
            );
            let got = parse(&toml).unwrap();
            assert_eq!(got[0].credential, want, "{text}");
            // Round trip through the printed form.
            let printed = toml::to_string(&File {
                aspect: got.clone(),
            })
            .unwrap();
            assert_eq!(parse(&printed).unwrap(), got, "{printed}");
        }
        for bad in [
            "\"cookie\"",
            "\"header\"",
            "{ cookie = \"a\", query = \"b\" }",
            "{ cookie = \"\" }",
        ] {
            let toml = format!(
                "[[aspect]]\nname = \"a\"\ncredential = {bad}\n[aspect.jwt]\nalgorithm = \"HS256\"\nkey_env = \"K\"\n"
            );
            let err = parse(&toml).unwrap_err();
            assert!(err.contains("credential"), "{bad}: {err}");
        }
    }

    #[test]
    fn exactly_one_source() {
        let none = "[[aspect]]\nname = \"a\"\ncredential = \"bearer\"\n";
        assert!(parse(none).unwrap_err().contains("found none"));
        let two = "[[aspect]]\nname = \"a\"\ncredential = \"bearer\"\n\
                   [aspect.jwt]\nalgorithm = \"HS256\"\nkey_env = \"K\"\n\
                   [aspect.http]\nurl = \"http://127.0.0.1/\"\n";
        assert!(parse(two).unwrap_err().contains("found jwt and http"));
    }

    #[test]
    fn unknown_keys_and_defaults() {
        let typo = "[[aspect]]\nname = \"a\"\ncredential = \"bearer\"\n\
                    [aspect.redis]\nurl = \"redis://x\"\nttl = 3\n";
        assert!(parse(typo).unwrap_err().contains("unknown field `ttl`"));
        let ok = "[[aspect]]\nname = \"a\"\ncredential = \"bearer\"\nrevalidate_every = \"30s\"\n\
                  [aspect.redis]\nurl = \"redis://x\"\n";
        let a = &parse(ok).unwrap()[0];
        assert_eq!(a.revalidate_every, Some(Duration::from_secs(30)));
        assert_eq!(a.on_error, OnError::Anonymous);
        let SourceConfig::Redis(r) = &a.source else {
            panic!("not redis")
        };
        assert_eq!(r.key, "sess:{id}");
        assert_eq!(r.timeout, Duration::from_secs(2));
        let zero = ok.replace("\"30s\"", "\"0s\"");
        assert_eq!(parse(&zero).unwrap()[0].revalidate_every, None);
        let bad = ok.replace("\"30s\"", "\"soon\"");
        assert!(parse(&bad).unwrap_err().contains("not a duration"));
    }

    #[test]
    fn secrets_are_not_printed() {
        let text = "[[aspect]]\nname = \"a\"\ncredential = { cookie = \"s\" }\n\
                    [aspect.sql]\nurl = \"postgres://u:pw@h/db\"\nquery = \"SELECT 1\"\n\
                    hash = \"hmac-sha256\"\nsecret = \"s3cr3t\"\n";
        let parsed = parse(text).unwrap();
        let printed = toml::to_string(&File {
            aspect: parsed.clone(),
        })
        .unwrap();
        assert!(
            !printed.contains("s3cr3t") && !printed.contains("pw@"),
            "{printed}"
        );
        assert!(!format!("{parsed:?}").contains("s3cr3t"));
    }
}
