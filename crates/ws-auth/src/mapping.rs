//! One record → one [`UserAspect`]: the field mapping shared by every source.
//!
//! Every source turns what it found (JWT claims, a JSON object, a Redis hash,
//! a SQL row, the application's answer) into a JSON object, and [`Mapping`]
//! turns that into the aspect, so the rules of [`FieldMap`] hold for all.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use ws_core::UserAspect;

use crate::config::FieldMap;
use crate::error::ConfigError;

/// Where a field is: a top-level key or a JSON pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FieldPath {
    Key(String),
    Pointer(String),
}

impl FieldPath {
    fn parse(aspect: &str, key: &'static str, text: &str) -> Result<Self, ConfigError> {
        if text.is_empty() {
            return Err(ConfigError::invalid(
                aspect,
                key,
                "a field name cannot be empty",
            ));
        }
        Ok(if text.starts_with('/') {
            Self::Pointer(text.to_owned())
        } else {
            Self::Key(text.to_owned())
        })
    }

    fn get<'r>(&self, record: &'r Map<String, Value>) -> Option<&'r Value> {
        match self {
            Self::Key(k) => record.get(k),
            Self::Pointer(p) => {
                let (first, rest) = p[1..].split_once('/').unwrap_or((&p[1..], ""));
                let first = first.replace("~1", "/").replace("~0", "~");
                let value = record.get(&first)?;
                if rest.is_empty() {
                    Some(value)
                } else {
                    value.pointer(&format!("/{rest}"))
                }
            }
        }
    }

    fn top_level_key(&self) -> Option<&str> {
        match self {
            Self::Key(k) => Some(k),
            Self::Pointer(_) => None,
        }
    }
}

/// The field names of one source, with its defaults applied.
#[derive(Clone, Debug)]
pub(crate) struct Mapping {
    id: FieldPath,
    username: FieldPath,
    groups: FieldPath,
    expires_at: Option<FieldPath>,
    properties: Option<Vec<String>>,
    /// Top-level fields that are never properties unless listed.
    not_properties: &'static [&'static str],
}

/// The default field names of one kind of source.
pub(crate) struct Defaults {
    pub(crate) id: &'static str,
    pub(crate) username: &'static str,
    pub(crate) groups: &'static str,
    pub(crate) expires_at: &'static str,
    /// Top-level fields that describe the credential, not the user: not
    /// properties unless `properties` lists them.
    pub(crate) not_properties: &'static [&'static str],
}

/// JWT claims: `sub`, `name`, `groups`, `exp`.
pub(crate) const JWT_DEFAULTS: Defaults = Defaults {
    id: "sub",
    username: "name",
    groups: "groups",
    expires_at: "exp",
    // The registered claims of RFC 7519, section 4.1.
    not_properties: &["iss", "sub", "aud", "exp", "nbf", "iat", "jti"],
};

/// Store records: `id`, `username`, `groups`, `expires_at`.
pub(crate) const RECORD_DEFAULTS: Defaults = Defaults {
    id: "id",
    username: "username",
    groups: "groups",
    expires_at: "expires_at",
    not_properties: &[],
};

impl Mapping {
    pub(crate) fn new(
        aspect: &str,
        fields: &FieldMap,
        defaults: &Defaults,
    ) -> Result<Self, ConfigError> {
        let path = |key: &'static str, given: &Option<String>, default: &str| {
            FieldPath::parse(aspect, key, given.as_deref().unwrap_or(default))
        };
        Ok(Self {
            id: path("fields.id", &fields.id, defaults.id)?,
            username: path("fields.username", &fields.username, defaults.username)?,
            groups: path("fields.groups", &fields.groups, defaults.groups)?,
            expires_at: Some(path(
                "fields.expires_at",
                &fields.expires_at,
                defaults.expires_at,
            )?),
            properties: fields.properties.clone(),
            not_properties: defaults.not_properties,
        })
    }

    /// The aspect of `record`: `Ok(None)` when it names no user (no id or a
    /// null one), `Err` when a mapped field has a type that cannot be used.
    pub(crate) fn map(&self, mut record: Map<String, Value>) -> Result<Option<UserAspect>, String> {
        let Some(id) = self.id.get(&record).map(|v| scalar(v, "id")).transpose()? else {
            return Ok(None);
        };
        let Some(id) = id.filter(|id| !id.is_empty()) else {
            return Ok(None);
        };
        let mut user = UserAspect::user(id);
        user.username = self
            .username
            .get(&record)
            .map(|v| scalar(v, "username"))
            .transpose()?
            .flatten();
        user.groups = self
            .groups
            .get(&record)
            .map(groups)
            .transpose()?
            .unwrap_or_default();
        user.expires_at = match &self.expires_at {
            Some(p) => p.get(&record).map(expiry).transpose()?.flatten(),
            None => None,
        };
        for path in [&self.id, &self.username, &self.groups]
            .into_iter()
            .chain(self.expires_at.as_ref())
        {
            if let Some(k) = path.top_level_key() {
                record.remove(k);
            }
        }
        match &self.properties {
            Some(keep) => record.retain(|k, _| keep.iter().any(|p| p == k)),
            None => record.retain(|k, _| !self.not_properties.contains(&k.as_str())),
        }
        // An emptied map may still hold its node: every open connection
        // keeps this.
        if record.is_empty() {
            record = Map::new();
        }
        user.properties = record;
        Ok(Some(user))
    }
}

/// A string or number as text; `null` as none.
fn scalar(v: &Value, field: &str) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(format!(
            "field `{field}` is {}, not a string or number",
            kind(other)
        )),
    }
}

fn groups(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| scalar(i, "groups").transpose())
            .collect(),
        Value::Number(n) => Ok(vec![n.to_string()]),
        Value::String(s) if s.trim_start().starts_with('[') => {
            let parsed: Value = serde_json::from_str(s)
                .map_err(|e| format!("field `groups` is not a JSON array: {e}"))?;
            groups(&parsed)
        }
        Value::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect()),
        other => Err(format!(
            "field `groups` is {}, not a list or a string",
            kind(other)
        )),
    }
}

/// Numbers above this are milliseconds (10^11 s is the year 5138).
const MILLIS_ABOVE: f64 = 1e11;

fn expiry(v: &Value) -> Result<Option<SystemTime>, String> {
    let secs = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::String(s) => match s.trim().parse::<f64>() {
            Ok(n) => n,
            Err(_) => {
                return humantime::parse_rfc3339_weak(s.trim())
                    .or_else(|_| humantime::parse_rfc3339(s.trim()))
                    .map(Some)
                    .map_err(|e| {
                        format!("field `expires_at` is neither Unix seconds nor RFC 3339: {e}")
                    });
            }
        },
        other => {
            return Err(format!("field `expires_at` is {}, not a time", kind(other)));
        }
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Ok(None);
    }
    let secs = if secs > MILLIS_ABOVE {
        secs / 1000.0
    } else {
        secs
    };
    // Too far to be a time here (a Duration or a SystemTime): no expiry,
    // never a panic (`Duration::from_secs_f64` panics on overflow; found by
    // the `field_mapping` fuzz target).
    Ok(Duration::try_from_secs_f64(secs)
        .ok()
        .and_then(|d| UNIX_EPOCH.checked_add(d)))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn unix_secs(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    fn record(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn mapping(fields: FieldMap) -> Mapping {
        Mapping::new("a", &fields, &RECORD_DEFAULTS).unwrap()
    }

    #[test]
    fn maps_defaults_and_properties() {
        let m = mapping(FieldMap::default());
        let u = m
            .map(record(json!({
                "id": 7, "username": "ann", "groups": ["admin", 3],
                "expires_at": 2_000_000_000, "email": "a@x"
            })))
            .unwrap()
            .unwrap();
        assert!(u.logged_in);
        assert_eq!(u.id.as_deref(), Some("7"));
        assert_eq!(u.username.as_deref(), Some("ann"));
        assert_eq!(u.groups, ["admin", "3"]);
        assert_eq!(unix_secs(u.expires_at.unwrap()), 2_000_000_000);
        assert_eq!(u.properties, record(json!({"email": "a@x"})));
    }

    #[test]
    fn jwt_registered_claims_are_not_properties_unless_listed() {
        let claims = || {
            record(json!({
                "sub": "42", "name": "ann", "exp": 2_000_000_000, "iat": 1_900_000_000,
                "nbf": 1_900_000_000, "iss": "idp", "aud": "ws", "jti": "t1", "email": "a@x"
            }))
        };
        let m = Mapping::new("a", &FieldMap::default(), &JWT_DEFAULTS).unwrap();
        let u = m.map(claims()).unwrap().unwrap();
        assert_eq!(u.id.as_deref(), Some("42"));
        assert_eq!(u.properties, record(json!({"email": "a@x"})));
        // Only registered claims: no properties at all.
        let mut only = claims();
        only.remove("email");
        assert!(m.map(only).unwrap().unwrap().properties.is_empty());
        // Listed, a registered claim is a property like any other.
        let listed = FieldMap {
            properties: Some(vec!["iss".into(), "email".into()]),
            ..FieldMap::default()
        };
        let m = Mapping::new("a", &listed, &JWT_DEFAULTS).unwrap();
        let u = m.map(claims()).unwrap().unwrap();
        assert_eq!(u.properties, record(json!({"iss": "idp", "email": "a@x"})));
        // Store records keep every unmapped field, whatever its name.
        let u = mapping(FieldMap::default())
            .map(record(json!({"id": 1, "iat": 5})))
            .unwrap()
            .unwrap();
        assert_eq!(u.properties, record(json!({"iat": 5})));
    }

    #[test]
    fn no_id_is_anonymous() {
        let m = mapping(FieldMap::default());
        assert_eq!(m.map(record(json!({"username": "x"}))).unwrap(), None);
        assert_eq!(m.map(record(json!({"id": null}))).unwrap(), None);
        assert_eq!(m.map(record(json!({"id": ""}))).unwrap(), None);
        assert!(m.map(record(json!({"id": {"a": 1}}))).is_err());
    }

    #[test]
    fn groups_forms_and_expiry_forms() {
        let m = mapping(FieldMap::default());
        let g = |v: Value| {
            m.map(record(json!({"id": 1, "groups": v})))
                .unwrap()
                .unwrap()
                .groups
        };
        assert_eq!(g(json!("1, 2,,5")), ["1", "2", "5"]);
        assert_eq!(g(json!("[\"a\",\"b\"]")), ["a", "b"]);
        assert_eq!(g(json!(4)), ["4"]);
        assert_eq!(g(json!(null)), Vec::<String>::new());
        let e = |v: Value| {
            m.map(record(json!({"id": 1, "expires_at": v})))
                .unwrap()
                .unwrap()
                .expires_at
                .map(unix_secs)
        };
        assert_eq!(e(json!(0)), None);
        assert_eq!(e(json!("1700000000")), Some(1_700_000_000));
        assert_eq!(e(json!(1_700_000_000_000_u64)), Some(1_700_000_000));
        assert_eq!(e(json!("2023-11-14T22:13:20Z")), Some(1_700_000_000));
        assert!(
            m.map(record(json!({"id": 1, "expires_at": "soon"})))
                .is_err()
        );
    }

    #[test]
    fn an_expiry_too_far_to_represent_is_none() {
        // fuzz/corpus/field_mapping/regression-expiry-overflow: a huge
        // `expires_at` (number or text) panicked converting to a Duration.
        let m = mapping(FieldMap::default());
        for v in [json!(1e300), json!("1e300"), json!(f64::MAX)] {
            let u = m
                .map(record(json!({"id": 1, "expires_at": v})))
                .unwrap()
                .unwrap();
            assert_eq!(u.expires_at, None, "{v}");
        }
    }

    #[test]
    fn pointers_and_property_allowlist() {
        let m = mapping(FieldMap {
            id: Some("/user/uid".into()),
            groups: Some("/realm_access/roles".into()),
            properties: Some(vec!["email".into()]),
            ..FieldMap::default()
        });
        let u = m
            .map(record(json!({
                "user": {"uid": "u1"}, "realm_access": {"roles": ["r"]},
                "email": "e", "password": "hash"
            })))
            .unwrap()
            .unwrap();
        assert_eq!(u.id.as_deref(), Some("u1"));
        assert_eq!(u.groups, ["r"]);
        assert_eq!(u.properties, record(json!({"email": "e"})));
    }
}
