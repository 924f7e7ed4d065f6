//! [`Authenticator`]: every configured aspect, resolved concurrently at a
//! handshake into [`Aspects`] plus the [`Revalidator`]s of the sessions
//! found.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use http::HeaderMap;
use ws_core::{Aspects, UserAspect};

use crate::config::{AspectConfig, Credential, OnError, OnSessionEnd, SourceConfig};
use crate::error::{AuthError, ConfigError};
use crate::revalidate::Revalidator;
use crate::source::{Lookup, Source};

/// Resolves the configured aspects of every handshake.
///
/// Cheap to clone (one `Arc`); share one per server. Built once from the
/// configuration, which it checks completely; it connects to nothing until
/// the first handshake.
#[derive(Clone, Debug, Default)]
pub struct Authenticator {
    entries: Arc<[Arc<Entry>]>,
}

/// One configured aspect, ready to resolve.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) name: Arc<str>,
    pub(crate) credential: Credential,
    pub(crate) on_error: OnError,
    pub(crate) every: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) on_end: OnSessionEnd,
    pub(crate) source: Source,
}

/// What a handshake resolved to.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Resolved {
    /// One aspect per configured name; anonymous where no valid session
    /// was presented.
    pub aspects: Aspects,
    /// One per logged-in aspect that can end while the connection lives
    /// (`revalidate_every` set, or an expiry known: a JWT's `exp`, a Redis
    /// TTL, a mapped `expires_at`). Empty for anonymous visitors.
    pub revalidators: Vec<Revalidator>,
}

impl Authenticator {
    /// Checks every aspect configuration and prepares its source: reads key
    /// files and environment variables, parses URLs and templates, sets up
    /// (lazy) connection pools.
    ///
    /// Must run inside a Tokio runtime (the pools need one); it connects to
    /// nothing, so a store that is down now is a failure at the handshake,
    /// handled by `on_error`.
    ///
    /// # Errors
    /// The first aspect that cannot work, naming it and the key: a missing
    /// key file, an unset environment variable, a bad URL or key template,
    /// a duplicate name, `revalidate_every` on a JWT aspect, …
    pub async fn new(configs: &[AspectConfig]) -> Result<Self, ConfigError> {
        let mut seen = HashSet::new();
        let mut entries = Vec::with_capacity(configs.len());
        for c in configs {
            let name = c.name.as_str();
            if name.trim().is_empty() {
                return Err(ConfigError::invalid(name, "name", "an aspect needs a name"));
            }
            if !seen.insert(name) {
                return Err(ConfigError::Duplicate {
                    name: name.to_owned(),
                });
            }
            check_credential(name, &c.credential)?;
            if matches!(c.source, SourceConfig::Jwt(_)) && c.revalidate_every.is_some() {
                return Err(ConfigError::invalid(
                    name,
                    "revalidate_every",
                    "a JWT cannot be re-checked (it has no store); the connection ends at its `exp`",
                ));
            }
            let (source, timeout) = Source::new(name, &c.source, &c.credential)?;
            entries.push(Arc::new(Entry {
                name: Arc::from(name),
                credential: c.credential.clone(),
                on_error: c.on_error,
                every: c.revalidate_every.filter(|d| !d.is_zero()),
                timeout,
                on_end: c.on_end,
                source,
            }));
        }
        Ok(Self {
            entries: entries.into(),
        })
    }

    /// Every configured aspect, in configuration order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().map(|e| &**e)
    }

    /// Whether no aspect is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The configured aspect names, in configuration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| &*e.name)
    }

    /// Whether `entry`, one entry of `Sec-WebSocket-Protocol`, carries a
    /// credential of a `protocol` aspect: subprotocol negotiation must skip
    /// it (and never echo it back).
    pub fn is_credential_protocol(&self, entry: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.credential.is_protocol_entry(entry))
    }

    /// Resolves every configured aspect of one handshake, concurrently.
    ///
    /// `query` is the raw query string of the request target (without `?`).
    /// Each aspect's source is bounded by its `timeout`, so this takes at
    /// most the longest of them. An aspect without a credential, or whose
    /// credential is unknown, expired or malformed, is anonymous; one whose
    /// source failed is anonymous too (with a warning) unless it is
    /// configured `on_error = "reject"`.
    ///
    /// # Errors
    /// The failure of the first `on_error = "reject"` aspect whose source
    /// failed; refuse the handshake with [`AuthError::status`] (503).
    pub async fn resolve(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Resolved, AuthError> {
        let results = join_all(self.entries.iter().map(|e| e.resolve(headers, query))).await;
        let mut resolved = Resolved::default();
        for (entry, result) in self.entries.iter().zip(results) {
            let (aspect, revalidator) = result?;
            resolved.aspects.insert(&*entry.name, aspect);
            resolved.revalidators.extend(revalidator);
        }
        Ok(resolved)
    }
}

fn check_credential(aspect: &str, c: &Credential) -> Result<(), ConfigError> {
    let (what, name) = match c {
        Credential::Cookie(n) => ("cookie name", n),
        Credential::Query(n) => ("query parameter name", n),
        Credential::Protocol { prefix } => ("protocol prefix", prefix),
        Credential::Bearer => return Ok(()),
    };
    let bad = |c: char| c.is_ascii_control() || c.is_whitespace() || ";=,\"".contains(c);
    if name.is_empty() || name.chars().any(bad) {
        return Err(ConfigError::invalid(
            aspect,
            "credential",
            format!("`{name}` is not a valid {what}"),
        ));
    }
    Ok(())
}

impl Entry {
    /// Whether `user` is past its expiry (plus the source's grace) at `now`.
    pub(crate) fn expired(&self, user: &UserAspect, now: SystemTime) -> bool {
        user.expires_at
            .is_some_and(|at| at + self.source.grace() <= now)
    }

    async fn resolve(
        self: &Arc<Self>,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<(UserAspect, Option<Revalidator>), AuthError> {
        let Some(credential) = self.credential.extract(headers, query) else {
            return Ok((UserAspect::anonymous(), None));
        };
        let presented = self.source.present(credential, headers);
        match self.source.lookup(&presented, self.timeout).await {
            Ok(Lookup::User(user)) if !self.expired(&user, SystemTime::now()) => {
                let revalidator = (self.every.is_some() || user.expires_at.is_some())
                    .then(|| Revalidator::new(Arc::clone(self), presented, user.clone()));
                Ok((user, revalidator))
            }
            Ok(Lookup::User(_)) => {
                tracing::debug!(aspect = %self.name, "session expired: anonymous");
                Ok((UserAspect::anonymous(), None))
            }
            Ok(Lookup::Anonymous(why)) => {
                tracing::debug!(aspect = %self.name, why, "anonymous");
                Ok((UserAspect::anonymous(), None))
            }
            Err(failure) => match self.on_error {
                OnError::Anonymous => {
                    tracing::warn!(
                        aspect = %self.name,
                        error = %failure,
                        "session source failed; the aspect is anonymous"
                    );
                    Ok((UserAspect::anonymous(), None))
                }
                OnError::Reject => {
                    tracing::warn!(
                        aspect = %self.name,
                        error = %failure,
                        "session source failed; the handshake is refused"
                    );
                    Err(AuthError::new(Arc::clone(&self.name), failure))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send<T: Send>(_: &T) {}

    #[tokio::test]
    async fn futures_can_be_spawned() {
        let auth = Authenticator::new(&[]).await.unwrap();
        let headers = HeaderMap::new();
        let resolve = auth.resolve(&headers, None);
        send(&resolve);
        let resolved = resolve.await.unwrap();
        assert!(resolved.aspects.is_empty() && resolved.revalidators.is_empty());
        assert!(auth.is_empty() && auth.names().next().is_none());
        fn shared<T: Send + Sync + Clone + 'static>() {}
        shared::<Authenticator>();
    }
}
