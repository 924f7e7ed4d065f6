//! `allowed_origins` entries and the `Origin` header.

#![no_main]

use http::HeaderValue;
use http::header::ORIGIN;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use ws_provider_fuzz::headers;
use ws_runtime::__fuzz::OriginPolicy;

#[derive(Arbitrary, Debug)]
struct Input {
    entries: Vec<String>,
    require: bool,
    origins: Vec<Vec<u8>>,
    sub: String,
}

fn one(origin: &str) -> Option<http::HeaderMap> {
    let v = HeaderValue::from_str(origin).ok()?;
    let mut h = http::HeaderMap::new();
    h.insert(ORIGIN, v);
    Some(h)
}

fuzz_target!(|input: Input| {
    let policy = match OriginPolicy::new(&input.entries, input.require) {
        Ok(p) => p,
        Err(e) => {
            assert_eq!(e.key, "allowed_origins");
            return;
        }
    };
    let h = headers(
        input
            .origins
            .iter()
            .map(|v| (ORIGIN.as_str(), v.as_slice())),
    );
    let result = policy.check(&h);
    match h.get_all(ORIGIN).iter().count() {
        0 => assert_eq!(result.is_ok(), !input.require),
        1 => {
            if policy.allows_all() {
                assert_eq!(result, Ok(()));
            }
            // Schemes and hosts compare case-insensitively.
            if let Some(v) = h.get(ORIGIN).and_then(|v| v.to_str().ok())
                && let Some(lower) = one(&v.to_ascii_lowercase())
            {
                assert_eq!(policy.check(&lower).is_ok(), result.is_ok(), "{v:?}");
            }
        }
        _ => assert!(result.is_err()),
    }

    // Every entry allows the origins it describes.
    for entry in &input.entries {
        let e = entry.trim();
        let Ok(alone) = OriginPolicy::new(&[e.to_owned()], false) else {
            continue;
        };
        let sub: String = input
            .sub
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let sub = if sub.is_empty() { "a".to_owned() } else { sub };
        let origin = if e == "*" || e == "null" {
            e.to_owned()
        } else if let Some((scheme, rest)) = e.split_once("://") {
            if rest.ends_with('/') {
                continue;
            }
            match rest.strip_prefix("*.") {
                Some(suffix) => format!("{scheme}://{sub}.{suffix}"),
                None => e.to_owned(),
            }
        } else if let Some(suffix) = e.strip_prefix("*.") {
            format!("https://{sub}.{suffix}")
        } else {
            format!("https://{e}")
        };
        if let Some(h) = one(&origin) {
            assert_eq!(alone.check(&h), Ok(()), "entry {e:?}, origin {origin:?}");
        }
    }
});
