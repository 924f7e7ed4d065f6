//! The handshake pipeline as the server runs it: the built-in stages as
//! plain code, the user's layers as one service ending in the route.

use std::convert::Infallible;
use std::sync::Arc;

use http::StatusCode;
use tower::ServiceExt as _;

use super::Shared;
use super::upgrade::upgrade;
use crate::auth;
use crate::client_addr::ClientAddrResolver;
use crate::origin::OriginPolicy;
use crate::pipeline::{
    self, BoxedLayer, ClientAddr, Guarded, HandshakeRequest, HandshakeResponse, HandshakeService,
};

/// The handshake pipeline (see the [`pipeline`] module): the built-in
/// stages as plain code, and the user's layers, if any, as one service
/// ending in the route.
pub(crate) struct Pipeline {
    resolver: ClientAddrResolver,
    /// The server's origin policy, for a path that matches no route.
    server_origin: Arc<OriginPolicy>,
    /// Whether any policy restricts origins at all.
    checks_origin: bool,
    /// The user's layers over the route; `None`: straight to the route.
    user: Option<HandshakeService>,
}

impl Pipeline {
    pub(super) fn new(
        shared: &Arc<Shared>,
        layers: Vec<BoxedLayer>,
        resolver: ClientAddrResolver,
        server_origin: Arc<OriginPolicy>,
    ) -> Self {
        let user = (!layers.is_empty()).then(|| {
            // 6. route match, the route's own limit, upgrade.
            let shared = Arc::clone(shared);
            let mut service =
                HandshakeService::new(tower::service_fn(move |req: HandshakeRequest| {
                    let resp = upgrade(&shared, req, true);
                    async move { Ok::<_, Infallible>(resp) }
                }));
            // 5. the user's layers; the first added runs first.
            for layer in layers.into_iter().rev() {
                service = layer(service);
            }
            service
        });
        let checks_origin =
            !server_origin.allows_all() || shared.mounted.iter().any(|m| !m.origin.allows_all());
        Self {
            resolver,
            server_origin,
            checks_origin,
            user,
        }
    }

    /// Runs `req` through every stage.
    pub(super) async fn run(
        &self,
        shared: &Arc<Shared>,
        mut req: HandshakeRequest,
    ) -> HandshakeResponse {
        // 1.–3. client address, origin check (by the route's policy: the
        //    route is only looked up; an unknown path is refused later, with
        //    404), connection limits.
        let policy_for = |path: &str| {
            let policy = match shared.routes.at(path) {
                Some(found) => Arc::clone(&shared.mounted[*found.route.value()].origin),
                None => Arc::clone(&self.server_origin),
            };
            (!policy.allows_all()).then_some(policy)
        };
        let policy_for = self.checks_origin.then_some(&policy_for);
        let (client, mut resp) =
            match pipeline::guard(&mut req, &self.resolver, policy_for, &shared.limiter) {
                Guarded::Pass(client) => (Some(client), self.after_guards(shared, req).await),
                Guarded::Refused(client, resp) => (client, resp),
            };
        // For the log line of a refusal (which falls back to the peer when
        // the client's address was never learnt).
        if let Some(client) = client
            && resp.status() != StatusCode::SWITCHING_PROTOCOLS
        {
            resp.extensions_mut().insert(ClientAddr(client));
        }
        resp
    }

    /// 4. authentication, 5. the user's layers, 6. the route.
    async fn after_guards(
        &self,
        shared: &Arc<Shared>,
        mut req: HandshakeRequest,
    ) -> HandshakeResponse {
        // After the limits, so refused clients cost no session look-up;
        // skipped entirely when no aspect is configured, and for a path
        // that matches no route (its 404 comes at the end, without asking
        // any store).
        if let Some(auth) = &shared.auth
            && let Some(found) = shared.routes.at(req.uri().path())
        {
            let requirement = Arc::clone(&shared.mounted[*found.route.value()].requirement);
            if let Some(refused) = auth::authenticate(auth, &requirement, &mut req).await {
                return refused;
            }
        }
        match &self.user {
            Some(service) => match service.clone().oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            },
            None => upgrade(shared, req, false),
        }
    }
}
