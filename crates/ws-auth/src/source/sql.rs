//! SQL session store: one configured query with one parameter (the session
//! id, optionally hashed as TYPO3 stores `ses_id`), SQLite or PostgreSQL
//! through sqlx.
//!
//! A slow or failing database never holds up other handshakes longer than
//! the aspect's `timeout`: the pool is bounded (`max_connections`), waiting
//! for a connection counts against the timeout, the whole look-up runs under
//! it, and PostgreSQL is told the same `statement_timeout` so it stops the
//! query too. The pool connects lazily: a database that is down at start-up
//! is a failure at the handshake, not at start-up.

use std::str::FromStr as _;
use std::sync::Arc;

use hmac::{Hmac, Mac as _};
use serde_json::{Map, Number, Value};
use sha2::{Digest as _, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{AssertSqlSafe, Column as _, Row as _, TypeInfo as _, ValueRef as _};

use super::Lookup;
use crate::config::{SessionHash, SqlConfig};
use crate::error::{ConfigError, Failure, FailureKind};
use crate::mapping::{Mapping, RECORD_DEFAULTS};

enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

pub(crate) struct SqlSource {
    pool: Pool,
    query: Arc<str>,
    hash: Hasher,
    mapping: Mapping,
}

impl SqlSource {
    pub(crate) fn new(aspect: &str, c: &SqlConfig) -> Result<Self, ConfigError> {
        let url = super::secret_text(
            aspect,
            c.url.as_ref().map(|s| s.expose()),
            c.url_env.as_deref(),
            "sql.url",
            "sql.url_env",
        )?;
        if c.query.trim().is_empty() {
            return Err(ConfigError::invalid(
                aspect,
                "sql.query",
                "the query is empty",
            ));
        }
        if c.max_connections == 0 {
            return Err(ConfigError::invalid(
                aspect,
                "sql.max_connections",
                "must be at least 1",
            ));
        }
        let bad_url = |e: &dyn std::fmt::Display| {
            ConfigError::invalid(aspect, "sql.url", format!("not a database URL: {e}"))
        };
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let ms = c.timeout.as_millis().to_string();
            let options = PgConnectOptions::from_str(&url)
                .map_err(|e| bad_url(&e))?
                .application_name("ws-provider")
                .options([("statement_timeout", ms.as_str())]);
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(c.max_connections)
                    .acquire_timeout(c.timeout)
                    .connect_lazy_with(options),
            )
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(&url)
                .map_err(|e| bad_url(&e))?
                .create_if_missing(false)
                .busy_timeout(c.timeout);
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(c.max_connections)
                    .acquire_timeout(c.timeout)
                    .connect_lazy_with(options),
            )
        } else {
            return Err(ConfigError::invalid(
                aspect,
                "sql.url",
                "unsupported database: the URL must start with postgres://, postgresql:// or sqlite:",
            ));
        };
        let secret = super::optional_secret(
            aspect,
            c.secret.as_ref().map(|s| s.expose()),
            c.secret_env.as_deref(),
            "sql.secret",
            "sql.secret_env",
        )?;
        let hash = match (c.hash, secret) {
            (SessionHash::None, _) => Hasher::None,
            (SessionHash::Sha256, _) => Hasher::Sha256,
            (SessionHash::HmacSha256, Some(s)) if !s.is_empty() => Hasher::Hmac(s.into_bytes()),
            (SessionHash::HmacSha256, _) => {
                return Err(ConfigError::invalid(
                    aspect,
                    "sql.secret",
                    "hash = \"hmac-sha256\" needs `secret` or `secret_env`",
                ));
            }
        };
        Ok(Self {
            pool,
            query: Arc::from(c.query.as_str()),
            hash,
            mapping: Mapping::new(aspect, &c.fields, &RECORD_DEFAULTS)?,
        })
    }

    pub(crate) async fn lookup(&self, id: &str) -> Result<Lookup, Failure> {
        let param = self.hash.apply(id);
        let query = AssertSqlSafe(Arc::clone(&self.query));
        let record = match &self.pool {
            Pool::Postgres(pool) => sqlx::query(query)
                .bind(param)
                .fetch_optional(pool)
                .await
                .map_err(failure)?
                .map(|row| pg_record(&row))
                .transpose()?,
            Pool::Sqlite(pool) => sqlx::query(query)
                .bind(param)
                .fetch_optional(pool)
                .await
                .map_err(failure)?
                .map(|row| sqlite_record(&row))
                .transpose()?,
        };
        let Some(record) = record else {
            return Ok(Lookup::Anonymous("no such session"));
        };
        match self.mapping.map(record) {
            Ok(Some(user)) => Ok(Lookup::User(user)),
            Ok(None) => Ok(Lookup::Anonymous("session names no user")),
            Err(e) => Err(Failure::invalid(e)),
        }
    }
}

fn failure(e: sqlx::Error) -> Failure {
    let kind = match &e {
        sqlx::Error::PoolTimedOut => FailureKind::Timeout,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => FailureKind::InvalidAnswer,
        // 57014: query_canceled (our statement_timeout).
        sqlx::Error::Database(db) if db.code().as_deref() == Some("57014") => FailureKind::Timeout,
        _ => FailureKind::Unavailable,
    };
    Failure::new(kind, e)
}

/// How the session id is turned into the query's parameter.
enum Hasher {
    None,
    Sha256,
    Hmac(Vec<u8>),
}

impl Hasher {
    fn apply(&self, id: &str) -> String {
        match self {
            Self::None => id.to_owned(),
            Self::Sha256 => hex(&Sha256::digest(id.as_bytes())),
            Self::Hmac(key) => {
                // HMAC takes keys of any length.
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
                    unreachable!("HMAC accepts keys of every length")
                };
                mac.update(id.as_bytes());
                hex(&mac.finalize().into_bytes())
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn column_error(column: &str, type_name: &str, e: impl std::fmt::Display) -> Failure {
    Failure::invalid(format!(
        "column `{column}` of type {type_name} cannot be read ({e}); cast it to text, \
         an integer or json in the query"
    ))
}

fn pg_record(row: &PgRow) -> Result<Map<String, Value>, Failure> {
    let mut record = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let raw = row.try_get_raw(i).map_err(failure)?;
        if raw.is_null() {
            record.insert(name.to_owned(), Value::Null);
            continue;
        }
        let type_name = raw.type_info().name().to_owned();
        let err = |e: sqlx::Error| column_error(name, &type_name, e);
        let value = match type_name.as_str() {
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "CITEXT" => {
                Value::String(row.try_get::<String, _>(i).map_err(err)?)
            }
            "INT2" => Value::from(row.try_get::<i16, _>(i).map_err(err)?),
            "INT4" => Value::from(row.try_get::<i32, _>(i).map_err(err)?),
            "INT8" => Value::from(row.try_get::<i64, _>(i).map_err(err)?),
            "FLOAT4" => float(f64::from(row.try_get::<f32, _>(i).map_err(err)?)),
            "FLOAT8" => float(row.try_get::<f64, _>(i).map_err(err)?),
            "BOOL" => Value::Bool(row.try_get::<bool, _>(i).map_err(err)?),
            "JSON" | "JSONB" => row.try_get::<Value, _>(i).map_err(err)?,
            "TEXT[]" | "VARCHAR[]" | "NAME[]" => {
                Value::from(row.try_get::<Vec<String>, _>(i).map_err(err)?)
            }
            "INT2[]" => Value::from(row.try_get::<Vec<i16>, _>(i).map_err(err)?),
            "INT4[]" => Value::from(row.try_get::<Vec<i32>, _>(i).map_err(err)?),
            "INT8[]" => Value::from(row.try_get::<Vec<i64>, _>(i).map_err(err)?),
            other => return Err(column_error(name, other, "no mapping for this type")),
        };
        record.insert(name.to_owned(), value);
    }
    Ok(record)
}

fn sqlite_record(row: &SqliteRow) -> Result<Map<String, Value>, Failure> {
    let mut record = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let raw = row.try_get_raw(i).map_err(failure)?;
        if raw.is_null() {
            record.insert(name.to_owned(), Value::Null);
            continue;
        }
        // SQLite is dynamically typed: go by the value's storage class.
        let type_name = raw.type_info().name().to_owned();
        let err = |e: sqlx::Error| column_error(name, &type_name, e);
        let value = match type_name.as_str() {
            "INTEGER" | "BOOLEAN" => Value::from(row.try_get_unchecked::<i64, _>(i).map_err(err)?),
            "REAL" | "NUMERIC" => float(row.try_get_unchecked::<f64, _>(i).map_err(err)?),
            "TEXT" | "DATE" | "TIME" | "DATETIME" => {
                Value::String(row.try_get_unchecked::<String, _>(i).map_err(err)?)
            }
            other => return Err(column_error(name, other, "no mapping for this type")),
        };
        record.insert(name.to_owned(), value);
    }
    Ok(record)
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_lower_case_hex() {
        assert_eq!(Hasher::None.apply("abc"), "abc");
        assert_eq!(
            Hasher::Sha256.apply("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 4231, test case 2.
        assert_eq!(
            Hasher::Hmac(b"Jefe".to_vec()).apply("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
