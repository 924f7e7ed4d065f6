//! The runtime's authentication seam ([`ws_runtime::Authenticate`]),
//! implemented by [`Authenticator`] and [`Revalidator`]: what the stock
//! server plugs into `ServerBuilder::authenticator`.

use std::time::SystemTime;

use futures_util::future::BoxFuture;
use http::HeaderMap;
use ws_core::UserAspect;
use ws_runtime::{
    AspectInfo, AuthRefusal, Authenticate, Authenticated, OnChange, Revalidate, SessionEnd,
};

use crate::authenticator::Authenticator;
use crate::config::Credential;
use crate::revalidate::{self, Revalidator};

impl Authenticate for Authenticator {
    fn aspects(&self) -> Vec<AspectInfo> {
        self.entries()
            .map(|e| {
                AspectInfo::new(&*e.name)
                    .on_end(e.on_end)
                    .bearer(e.credential == Credential::Bearer)
            })
            .collect()
    }

    fn is_credential_protocol(&self, entry: &str) -> bool {
        Authenticator::is_credential_protocol(self, entry)
    }

    fn resolve<'a>(
        &'a self,
        headers: &'a HeaderMap,
        query: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Authenticated, AuthRefusal>> {
        Box::pin(async move {
            match Authenticator::resolve(self, headers, query).await {
                Ok(resolved) => Ok(Authenticated::new(
                    resolved.aspects,
                    resolved
                        .revalidators
                        .into_iter()
                        .map(|r| Box::new(r) as Box<dyn Revalidate>)
                        .collect(),
                )),
                // The aspect and the kind of failure, never the store's own
                // error text (logged where it failed).
                Err(e) => Err(AuthRefusal::new(
                    e.status(),
                    format!("{e}; try again later"),
                )),
            }
        })
    }
}

impl Revalidate for Revalidator {
    fn aspect(&self) -> &str {
        self.name()
    }

    fn current(&self) -> &UserAspect {
        Revalidator::current(self)
    }

    fn local_end(&self, now: SystemTime) -> Option<SystemTime> {
        // A local check without `revalidate_every` only ever ends the
        // session at its expiry: nothing to ask before.
        if self.is_local() && self.every().is_none() {
            self.next_check(now)
        } else {
            None
        }
    }

    fn until_ended(self: Box<Self>, mut on_change: OnChange) -> BoxFuture<'static, SessionEnd> {
        Box::pin(async move {
            match Revalidator::until_ended(*self, |name, user| on_change(name, user)).await {
                revalidate::SessionEnd::Ended => SessionEnd::Ended,
                revalidate::SessionEnd::Unavailable(e) => SessionEnd::Unavailable(Box::new(e)),
            }
        })
    }
}
