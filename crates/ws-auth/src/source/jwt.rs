//! Signed tokens (JWT): HS256, RS256 and EdDSA through `jsonwebtoken`, with
//! its pure-Rust (RustCrypto) backend.
//!
//! A token is checked locally: signature, the one configured algorithm (no
//! algorithm confusion), `exp` and `nbf` with the leeway, and `iss`/`aud`
//! when configured. A token that fails any check is a malformed or expired
//! credential, so the aspect is anonymous — never a source failure.
//!
//! A token that passed is remembered (`cache_size`) for [`CACHE_TTL`]: the
//! same token again is only checked for `exp` and `nbf`, not decoded and
//! verified again. Its check depends on its bytes and the key alone.

use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use ws_core::UserAspect;

use super::Lookup;
use crate::cache::TtlCache;
use crate::config::{JwtAlgorithm, JwtConfig};
use crate::error::ConfigError;
use crate::mapping::{JWT_DEFAULTS, Mapping};

/// How long a token's check is remembered at most.
const CACHE_TTL: Duration = Duration::from_secs(60);

pub(crate) struct JwtSource {
    key: DecodingKey,
    validation: Validation,
    mapping: Mapping,
    leeway: Duration,
    checked: TtlCache<Checked>,
}

/// A token that passed every check, and its time bounds.
#[derive(Clone)]
struct Checked {
    user: UserAspect,
    exp: Option<u64>,
    nbf: Option<u64>,
}

impl Checked {
    /// Whether the token is still valid at `now` (seconds since the epoch),
    /// as `jsonwebtoken` decides: expired once `exp < now - leeway`, not
    /// yet valid while `nbf > now + leeway`.
    fn in_time(&self, now: u64, leeway: u64) -> bool {
        self.exp.is_none_or(|exp| exp >= now.saturating_sub(leeway))
            && self.nbf.is_none_or(|nbf| nbf <= now.saturating_add(leeway))
    }
}

/// The claim `name` as whole seconds: `Ok(None)` when absent, `Err` when it
/// is there in another form (then the check is not remembered).
fn seconds(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(()),
    }
}

impl JwtSource {
    pub(crate) fn new(aspect: &str, c: &JwtConfig) -> Result<Self, ConfigError> {
        if c.claims.expires_at.is_some() {
            return Err(ConfigError::invalid(
                aspect,
                "jwt.claims.expires_at",
                "a JWT expires at its `exp` claim; remove this key",
            ));
        }
        let raw = super::secret_bytes(
            aspect,
            c.key_file.as_deref(),
            c.key_env.as_deref(),
            "jwt.key_file",
            "jwt.key_env",
        )?;
        let (alg, key, key_name) = match c.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = trim_end(&raw);
                if secret.is_empty() {
                    return Err(ConfigError::invalid(
                        aspect,
                        "jwt.key_file",
                        "the HS256 secret is empty",
                    ));
                }
                (
                    Algorithm::HS256,
                    Ok(DecodingKey::from_secret(secret)),
                    "an HS256 secret",
                )
            }
            JwtAlgorithm::RS256 => (
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(&raw),
                "an RSA public key in PEM",
            ),
            JwtAlgorithm::EdDSA => (
                Algorithm::EdDSA,
                DecodingKey::from_ed_pem(&raw),
                "an Ed25519 public key in PEM",
            ),
        };
        if c.algorithm != JwtAlgorithm::HS256
            && String::from_utf8_lossy(&raw).contains("PRIVATE KEY-----")
        {
            return Err(ConfigError::invalid(
                aspect,
                if c.key_file.is_some() {
                    "jwt.key_file"
                } else {
                    "jwt.key_env"
                },
                format!(
                    "this is a private key; give {key_name} (`openssl pkey -in KEY -pubout`), \
                     the server only verifies"
                ),
            ));
        }
        let origin = if c.key_file.is_some() {
            "jwt.key_file"
        } else {
            "jwt.key_env"
        };
        let key =
            key.map_err(|e| ConfigError::invalid(aspect, origin, format!("not {key_name}: {e}")))?;
        // A key that parses can still be unusable (a private key, a key of
        // another type): try it once, so the mistake shows at start-up.
        if let Err(e) = jsonwebtoken::crypto::verify("AAAA", b"probe", &key, alg) {
            return Err(ConfigError::invalid(
                aspect,
                origin,
                format!("not {key_name}: {e}"),
            ));
        }

        let mut validation = Validation::new(alg);
        validation.leeway = c.leeway.as_secs();
        validation.validate_nbf = true;
        validation.validate_exp = true;
        validation.required_spec_claims.clear();
        if c.require_exp {
            validation.required_spec_claims.insert("exp".to_owned());
        }
        if let Some(iss) = &c.issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        match &c.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".to_owned());
            }
            None => validation.validate_aud = false,
        }
        Ok(Self {
            key,
            validation,
            mapping: Mapping::new(aspect, &c.claims, &JWT_DEFAULTS)?,
            leeway: c.leeway,
            checked: TtlCache::new(CACHE_TTL, c.cache_size),
        })
    }

    pub(crate) fn leeway(&self) -> Duration {
        self.leeway
    }

    pub(crate) fn lookup(&self, token: &str) -> Lookup {
        let at = Instant::now();
        // Remembered and still in its time; out of it, the full check below
        // says why.
        if let Some(c) = self.checked.get(token, at)
            && c.in_time(jsonwebtoken::get_current_timestamp(), self.leeway.as_secs())
        {
            return Lookup::User(c.user);
        }
        let claims =
            match jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation) {
                Ok(data) => data.claims,
                Err(e) => {
                    return Lookup::Anonymous(match e.kind() {
                        ErrorKind::ExpiredSignature => "token expired",
                        ErrorKind::ImmatureSignature => "token not valid yet",
                        ErrorKind::InvalidSignature => "token signature invalid",
                        ErrorKind::InvalidAlgorithm => "token signed with another algorithm",
                        ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                            "token for another issuer or audience"
                        }
                        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
                        _ => "token malformed",
                    });
                }
            };
        let bounds = seconds(&claims, "exp").and_then(|e| Ok((e, seconds(&claims, "nbf")?)));
        match self.mapping.map(claims) {
            Ok(Some(user)) => {
                if let Ok((exp, nbf)) = bounds {
                    let checked = Checked {
                        user: user.clone(),
                        exp,
                        nbf,
                    };
                    self.checked.insert(token, checked, at);
                }
                Lookup::User(user)
            }
            Ok(None) => Lookup::Anonymous("token names no user"),
            Err(e) => {
                tracing::warn!(error = %e, "a validly signed token has claims that cannot be mapped");
                Lookup::Anonymous("token claims cannot be mapped")
            }
        }
    }
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::config::JwtAlgorithm;

    const SECRET: &str = "a-unit-test-secret-of-some-length";

    fn source(dir: &std::path::Path, cache_size: usize) -> JwtSource {
        let file = dir.join("secret");
        std::fs::write(&file, SECRET).unwrap();
        let mut c = JwtConfig::new(JwtAlgorithm::HS256, file);
        c.cache_size = cache_size;
        JwtSource::new("t.user", &c).unwrap()
    }

    fn token(claims: &Value) -> String {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&Header::default(), claims, &key).unwrap()
    }

    #[test]
    fn a_token_that_passed_is_remembered_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let s = source(dir.path(), 2);
        let exp = jsonwebtoken::get_current_timestamp() + 600;
        let good = token(&json!({"sub": "7", "exp": exp}));
        for _ in 0..2 {
            assert!(matches!(s.lookup(&good), Lookup::User(u) if u.id.as_deref() == Some("7")));
        }
        assert_eq!(s.checked.len(), 1);
        // A forged signature, an expired token, a token without a user:
        // refused, and none of them remembered.
        let other = EncodingKey::from_secret(b"another secret entirely!!");
        let forged =
            jsonwebtoken::encode(&Header::default(), &json!({"sub": "7", "exp": exp}), &other)
                .unwrap();
        let expired = token(&json!({"sub": "7", "exp": exp - 6_000}));
        let nobody = token(&json!({"exp": exp}));
        for t in [&forged, &expired, &nobody] {
            assert!(matches!(s.lookup(t), Lookup::Anonymous(_)));
        }
        assert_eq!(s.checked.len(), 1);
        // `exp` in another form than whole seconds: checked every time.
        let float = token(&json!({"sub": "8", "exp": exp as f64 + 0.5}));
        assert!(matches!(s.lookup(&float), Lookup::User(_)));
        assert_eq!(s.checked.len(), 1);

        // Remembered while it was valid, expired since: refused.
        let old = exp - 6_000;
        let remembered = Checked {
            user: UserAspect::user("7"),
            exp: Some(old),
            nbf: None,
        };
        s.checked.insert(&expired, remembered, Instant::now());
        assert!(matches!(
            s.lookup(&expired),
            Lookup::Anonymous("token expired")
        ));

        let off = source(dir.path(), 0);
        assert!(matches!(off.lookup(&good), Lookup::User(_)));
        assert_eq!(off.checked.len(), 0);
    }

    #[test]
    fn a_remembered_token_keeps_the_library_s_time_bounds() {
        let c = |exp, nbf| Checked {
            user: UserAspect::user("1"),
            exp,
            nbf,
        };
        let (now, leeway) = (1_000, 5);
        // Expired once `exp < now - leeway`; not valid while `nbf > now + leeway`.
        assert!(c(Some(995), None).in_time(now, leeway));
        assert!(!c(Some(994), None).in_time(now, leeway));
        assert!(c(Some(2_000), Some(1_005)).in_time(now, leeway));
        assert!(!c(Some(2_000), Some(1_006)).in_time(now, leeway));
        assert!(c(None, None).in_time(now, leeway));
        assert!(c(Some(0), None).in_time(3, 5), "no underflow");
    }
}
