//! Entry points for the fuzz targets in `fuzz/` (`cargo xtask fuzz`): the
//! field mapping and the JWT source, private to this crate, each reached
//! through the smallest wrapper that lets a target call it.
//!
//! **Not for users**: hidden from the docs, no stability promise; the
//! authenticator itself never calls anything here.

use serde_json::{Map, Value};
use ws_core::UserAspect;

use crate::config::{FieldMap, JwtConfig};
use crate::error::ConfigError;

/// The field mapping of one source: JWT claims (`jwt`) or a store record.
#[derive(Debug)]
pub struct Mapping(crate::mapping::Mapping);

impl Mapping {
    /// The mapping of `fields` over the JWT defaults (`sub`, `name`,
    /// `groups`, `exp`) or the record defaults (`id`, `username`, `groups`,
    /// `expires_at`).
    ///
    /// # Errors
    /// An empty field name.
    pub fn new(fields: &FieldMap, jwt: bool) -> Result<Self, ConfigError> {
        let defaults = if jwt {
            &crate::mapping::JWT_DEFAULTS
        } else {
            &crate::mapping::RECORD_DEFAULTS
        };
        crate::mapping::Mapping::new("fuzz", fields, defaults).map(Self)
    }

    /// The user `record` names, `Ok(None)` for nobody.
    ///
    /// # Errors
    /// A mapped field of a type that cannot be used.
    pub fn map(&self, record: Map<String, Value>) -> Result<Option<UserAspect>, String> {
        self.0.map(record)
    }
}

/// A JWT source.
pub struct JwtSource(crate::source::jwt::JwtSource);

impl std::fmt::Debug for JwtSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSource")
    }
}

impl JwtSource {
    /// The source `config` describes (its key read as the server reads it).
    ///
    /// # Errors
    /// A bad key or field.
    pub fn new(config: &JwtConfig) -> Result<Self, ConfigError> {
        crate::source::jwt::JwtSource::new("fuzz", config).map(Self)
    }

    /// The user `token` names, or why it names nobody.
    ///
    /// # Errors
    /// The reason the token makes the aspect anonymous.
    pub fn lookup(&self, token: &str) -> Result<UserAspect, &'static str> {
        match self.0.lookup(token) {
            crate::source::Lookup::User(u) => Ok(u),
            crate::source::Lookup::Anonymous(why) => Err(why),
        }
    }
}
