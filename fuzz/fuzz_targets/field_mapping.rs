//! The field mapping every session source shares: a record (JWT claims, a
//! store's JSON or hash, a SQL row, a callback's answer) into a user.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use ws_auth::__fuzz::Mapping;
use ws_auth::FieldMap;

#[derive(Arbitrary, Debug)]
struct Input {
    jwt: bool,
    id: Option<String>,
    username: Option<String>,
    groups: Option<String>,
    expires_at: Option<String>,
    properties: Option<Vec<String>>,
    record: Vec<u8>,
}

/// The registered claims of RFC 7519: never properties of a JWT user
/// unless listed.
const REGISTERED: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];

fuzz_target!(|input: Input| {
    let Ok(record) = serde_json::from_slice::<Map<String, Value>>(&input.record) else {
        return;
    };
    let fields = FieldMap {
        id: input.id,
        username: input.username,
        groups: input.groups,
        expires_at: input.expires_at,
        properties: input.properties,
    };
    let Ok(mapping) = Mapping::new(&fields, input.jwt) else {
        return;
    };
    let result = mapping.map(record.clone());
    // The same record, the same answer.
    assert_eq!(result, mapping.map(record.clone()));
    let user = match result {
        Ok(Some(u)) => u,
        Ok(None) => return,
        Err(e) => {
            assert!(e.contains("field `"), "{e}");
            return;
        }
    };
    assert!(user.logged_in);
    assert!(user.id.as_deref().is_some_and(|id| !id.is_empty()));
    for g in &user.groups {
        assert!(g.trim() == g || !g.is_empty());
    }
    // Mapped top-level fields are not properties too; only listed ones
    // are, else all but a JWT's registered claims.
    let (d_id, d_name, d_groups, d_exp) = if input.jwt {
        ("sub", "name", "groups", "exp")
    } else {
        ("id", "username", "groups", "expires_at")
    };
    for (given, default) in [
        (&fields.id, d_id),
        (&fields.username, d_name),
        (&fields.groups, d_groups),
        (&fields.expires_at, d_exp),
    ] {
        let key = given.as_deref().unwrap_or(default);
        if !key.starts_with('/') {
            assert!(!user.properties.contains_key(key), "{key} kept");
        }
    }
    for k in user.properties.keys() {
        assert!(record.contains_key(k));
        match &fields.properties {
            Some(keep) => assert!(keep.contains(k)),
            None if input.jwt => assert!(!REGISTERED.contains(&k.as_str())),
            None => {}
        }
    }
});
