//! Signed tokens (JWT): HS256, RS256 and EdDSA through `jsonwebtoken`, with
//! its pure-Rust (RustCrypto) backend.
//!
//! A token is checked locally: signature, the one configured algorithm (no
//! algorithm confusion), `exp` and `nbf` with the leeway, and `iss`/`aud`
//! when configured. A token that fails any check is a malformed or expired
//! credential, so the aspect is anonymous — never a source failure.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::Lookup;
use crate::config::{JwtAlgorithm, JwtConfig};
use crate::error::ConfigError;
use crate::mapping::{JWT_DEFAULTS, Mapping};

pub(crate) struct JwtSource {
    key: DecodingKey,
    validation: Validation,
    mapping: Mapping,
    leeway: Duration,
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
        })
    }

    pub(crate) fn leeway(&self) -> Duration {
        self.leeway
    }

    pub(crate) fn lookup(&self, token: &str) -> Lookup {
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
        match self.mapping.map(claims) {
            Ok(Some(user)) => Lookup::User(user),
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
