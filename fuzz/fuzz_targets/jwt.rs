//! JWTs as the JWT source checks them (HS256 here): tokens as sent, and
//! validly signed tokens around arbitrary headers and claims, so the claim
//! checks and the field mapping behind the signature are reached.

#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use ws_auth::__fuzz::{JwtSource, Mapping};
use ws_auth::{FieldMap, JwtAlgorithm, JwtConfig};

/// The secret, in a file next to the targets (as `jwt.key_file`).
const SECRET_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/jwt-secret.txt");

#[derive(Arbitrary, Debug)]
struct Input {
    /// Sign `header` and `claims` (else `token` is checked as sent).
    sign: bool,
    /// A standard header (`{"alg":"HS256","typ":"JWT"}`) instead of `header`.
    standard_header: bool,
    header: Vec<u8>,
    claims: Vec<u8>,
    token: String,
}

struct Fixture {
    source: JwtSource,
    mapping: Mapping,
    key: EncodingKey,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let mut c = JwtConfig::new(JwtAlgorithm::HS256, SECRET_FILE);
    c.require_exp = false;
    let secret = std::fs::read(SECRET_FILE).expect("the fuzz secret");
    Fixture {
        source: JwtSource::new(&c).expect("a JWT source"),
        mapping: Mapping::new(&FieldMap::default(), true).expect("the JWT mapping"),
        key: EncodingKey::from_secret(secret.trim_ascii_end()),
    }
});

fuzz_target!(|input: Input| {
    let f = &*FIXTURE;
    let token = if input.sign {
        let header = if input.standard_header {
            br#"{"alg":"HS256","typ":"JWT"}"#.to_vec()
        } else {
            input.header
        };
        let signing = format!("{}.{}", B64.encode(&header), B64.encode(&input.claims));
        let sig = jsonwebtoken::crypto::sign(signing.as_bytes(), &f.key, Algorithm::HS256)
            .expect("HMAC signs anything");
        format!("{signing}.{sig}")
    } else {
        input.token
    };
    let first = f.source.lookup(&token);
    // Remembered or not, a token names the same user.
    let second = f.source.lookup(&token);
    assert_eq!(first, second, "{token}");
    let Ok(user) = first else { return };

    // Only a token with our signature names a user.
    let (signing, sig) = token.rsplit_once('.').expect("three parts");
    let ours = jsonwebtoken::crypto::sign(signing.as_bytes(), &f.key, Algorithm::HS256)
        .expect("HMAC signs anything");
    assert_eq!(sig, ours, "a token without our signature was accepted");
    // The user is the claims' user, as the mapping reads them.
    let claims = signing.split_once('.').expect("header.claims").1;
    let claims: Map<String, Value> = B64
        .decode(claims)
        .ok()
        .and_then(|c| serde_json::from_slice(&c).ok())
        .expect("accepted claims are a JSON object");
    assert_eq!(f.mapping.map(claims), Ok(Some(user)));
});
