//! Redis session store: session id → key (`sess:{id}`) → a JSON string or a
//! hash; the key's TTL is the aspect's expiry.
//!
//! One multiplexed [`ConnectionManager`] per aspect, connected lazily (a
//! Redis that is down at start-up is a failure at the handshake, not at
//! start-up) and reconnected by the manager. The record and its TTL are read
//! in one `MULTI`/`EXEC`, so they belong together.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::{Map, Value};

use super::Lookup;
use crate::config::{RecordFormat, RedisConfig};
use crate::error::{ConfigError, Failure, FailureKind};
use crate::mapping::{Mapping, RECORD_DEFAULTS};

pub(crate) struct RedisSource {
    manager: ConnectionManager,
    template: KeyTemplate,
    format: RecordFormat,
    mapping: Mapping,
}

impl RedisSource {
    pub(crate) fn new(aspect: &str, c: &RedisConfig) -> Result<Self, ConfigError> {
        let url = super::secret_text(
            aspect,
            c.url.as_ref().map(|s| s.expose()),
            c.url_env.as_deref(),
            "redis.url",
            "redis.url_env",
        )?;
        let client = redis::Client::open(url.as_str()).map_err(|e| {
            ConfigError::invalid(aspect, "redis.url", format!("not a Redis URL: {e}"))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(c.timeout))
            .set_response_timeout(Some(c.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| ConfigError::invalid(aspect, "redis.url", e.to_string()))?;
        Ok(Self {
            manager,
            template: KeyTemplate::parse(aspect, &c.key)?,
            format: c.format,
            mapping: Mapping::new(aspect, &c.fields, &RECORD_DEFAULTS)?,
        })
    }

    pub(crate) async fn lookup(&self, id: &str) -> Result<Lookup, Failure> {
        let key = self.template.render(id);
        let mut con = self.manager.clone();
        let (record, pttl) = match self.format {
            RecordFormat::Json => {
                let (value, pttl): (Option<Vec<u8>>, i64) = redis::pipe()
                    .atomic()
                    .get(&key)
                    .pttl(&key)
                    .query_async(&mut con)
                    .await
                    .map_err(failure)?;
                let Some(value) = value else {
                    return Ok(Lookup::Anonymous("no such session"));
                };
                let record = match serde_json::from_slice::<Value>(&value) {
                    Ok(Value::Object(m)) => m,
                    Ok(Value::Null) => return Ok(Lookup::Anonymous("session record is null")),
                    Ok(_) => {
                        return Err(Failure::invalid("the session record is not a JSON object"));
                    }
                    Err(e) => {
                        return Err(Failure::invalid(format!(
                            "the session record is not JSON: {e}"
                        )));
                    }
                };
                (record, pttl)
            }
            RecordFormat::Hash => {
                let (fields, pttl): (HashMap<String, String>, i64) = redis::pipe()
                    .atomic()
                    .hgetall(&key)
                    .pttl(&key)
                    .query_async(&mut con)
                    .await
                    .map_err(failure)?;
                if fields.is_empty() {
                    return Ok(Lookup::Anonymous("no such session"));
                }
                let record: Map<String, Value> = fields
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                (record, pttl)
            }
        };
        let mut user = match self.mapping.map(record) {
            Ok(Some(user)) => user,
            Ok(None) => return Ok(Lookup::Anonymous("session names no user")),
            Err(e) => return Err(Failure::invalid(e)),
        };
        // PTTL: -2 gone meanwhile, -1 no expiry, else milliseconds left.
        if pttl == -2 {
            return Ok(Lookup::Anonymous("no such session"));
        }
        if let Ok(ms) = u64::try_from(pttl) {
            let ttl_end = SystemTime::now() + Duration::from_millis(ms);
            user.expires_at = Some(user.expires_at.map_or(ttl_end, |e| e.min(ttl_end)));
        }
        Ok(Lookup::User(user))
    }
}

fn failure(e: redis::RedisError) -> Failure {
    use redis::ErrorKind as K;
    let kind = if e.is_timeout() {
        FailureKind::Timeout
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        FailureKind::Unavailable
    } else {
        match e.kind() {
            // The server answered, but not with a record: WRONGTYPE (a hash
            // where JSON was configured, or the reverse), an unparsable reply.
            K::Parse
            | K::UnexpectedReturnType
            | K::Extension
            | K::Server(redis::ServerErrorKind::ResponseError) => FailureKind::InvalidAnswer,
            _ => FailureKind::Unavailable,
        }
    };
    Failure::new(kind, e)
}

/// A key template with exactly one kind of placeholder, `{id}`.
#[derive(Clone, Debug)]
pub(crate) struct KeyTemplate {
    before: String,
    after: String,
}

impl KeyTemplate {
    pub(crate) fn parse(aspect: &str, text: &str) -> Result<Self, ConfigError> {
        let bad = |reason: &str| {
            ConfigError::invalid(
                aspect,
                "redis.key",
                format!("bad key template `{text}`: {reason}"),
            )
        };
        let Some((before, after)) = text.split_once("{id}") else {
            return Err(bad("it must contain `{id}`, the session id"));
        };
        if after.contains("{id}") {
            return Err(bad("`{id}` may appear only once"));
        }
        if before.contains(['{', '}']) || after.contains(['{', '}']) {
            return Err(bad("the only placeholder is `{id}`"));
        }
        Ok(Self {
            before: before.to_owned(),
            after: after.to_owned(),
        })
    }

    pub(crate) fn render(&self, id: &str) -> String {
        format!("{}{id}{}", self.before, self.after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let t = KeyTemplate::parse("a", "app:sess:{id}:v1").unwrap();
        assert_eq!(t.render("abc"), "app:sess:abc:v1");
        for bad in ["sess:", "{id}{id}", "{user}:{id}", "sess:{id"] {
            let e = KeyTemplate::parse("a", bad).unwrap_err().to_string();
            assert!(
                e.contains("redis.key") && e.contains("bad key template"),
                "{bad}: {e}"
            );
        }
    }
}
