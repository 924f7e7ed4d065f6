//! Per-route policy: the `[[route]]` entries resolved against the mounted
//! routes into what each route enforces.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use ws_core::Component;
use ws_ratelimit::{ConnectionLimiter, ConnectionLimits};
use ws_routing::RouteTable;

use crate::auth::Requirement;
use crate::config::{ConfigError, Parsed, RoutePolicy, ServerConfig};
use crate::origin::OriginPolicy;

/// One mounted route, for listings, with the policy in force on it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteInfo {
    /// The full path, prefix included.
    pub path: String,
    /// The component's name (its type path by default).
    pub component: String,
    /// Whether a `[[route]]` entry applies to this route.
    pub has_policy: bool,
    /// The `allowed_origins` in force (empty: every origin).
    pub allowed_origins: Vec<String>,
    /// The `require_origin` in force.
    pub require_origin: bool,
    /// The `max_messages_per_second` in force (0: unlimited).
    pub max_messages_per_second: u32,
    /// The largest message, in bytes.
    pub max_message_size: usize,
    /// The largest frame, in bytes.
    pub max_frame_size: usize,
    /// The route's own cap on open connections (0: none; the server-wide
    /// limits apply in any case).
    pub max_connections: u32,
    /// Aspects that must be logged in (`require`; 401 otherwise).
    pub require: Vec<String>,
    /// Groups, one of which a required aspect's user must be in
    /// (`require_groups`; 403 otherwise).
    pub require_groups: Vec<String>,
}

/// A route as the server runs it.
pub(crate) struct MountedRoute {
    pub(crate) component: Arc<dyn Component>,
    pub(crate) origin: Arc<OriginPolicy>,
    /// The route's own `max_connections`, if it has one.
    pub(crate) limiter: Option<ConnectionLimiter>,
    pub(crate) ws_config: WebSocketConfig,
    /// What the authentication stage enforces on this route.
    pub(crate) requirement: Arc<Requirement>,
    pub(crate) info: RouteInfo,
}

/// tungstenite's settings for the given size limits (`max_frames`: frames
/// per message, 0 for no limit).
pub(crate) fn ws_config(
    max_message: usize,
    max_frame: usize,
    max_frames: usize,
) -> WebSocketConfig {
    WebSocketConfig::default()
        // The socket is read through `ReadAhead` in `read_buffer_size`
        // chunks; tungstenite itself only asks for small pieces.
        .read_buffer_size(crate::read_ahead::TUNGSTENITE_CHUNK)
        // ... and written through it in `write_buffer_size` batches.
        .write_buffer_size(crate::read_ahead::TUNGSTENITE_WRITE)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_frame))
        // Our patch of tungstenite (vendor/README.md).
        .max_frames_per_message((max_frames != 0).then_some(max_frames))
}

/// Finds the route a `[[route]]` entry names: its full path, or the path
/// without the prefix (the prefix is added the way it is added to a
/// component's route, so both spellings lead to one route).
fn find(table: &RouteTable<usize>, entry: &RoutePolicy) -> Result<usize, ConfigError> {
    let normalized = ws_routing::normalize_route(&entry.path)
        .map_err(|why| ConfigError::in_route(entry.path.clone(), "path", why))?;
    let full = ws_routing::join(table.prefix(), &normalized);
    table
        .routes()
        .iter()
        .find(|r| r.path() == full)
        .map(|r| *r.value())
        .ok_or_else(|| {
            let mounted: Vec<&str> = table.routes().iter().map(|r| r.path()).collect();
            ConfigError::in_route(
                entry.path.clone(),
                "path",
                format!(
                    "names no mounted route; the routes are: {}",
                    if mounted.is_empty() {
                        "(none)".to_owned()
                    } else {
                        mounted.join(", ")
                    }
                ),
            )
        })
}

/// Resolves the `[[route]]` entries of `config` (with their origin
/// policies as `parsed`) against the routes of `table`, whose values index
/// `components`.
pub(crate) fn mount(
    config: &ServerConfig,
    parsed: &Parsed,
    table: &RouteTable<usize>,
    components: Vec<Arc<dyn Component>>,
) -> Result<Vec<MountedRoute>, ConfigError> {
    // Route index -> index of its entry in `config.routes`.
    let mut entries: HashMap<usize, usize> = HashMap::new();
    for (at, entry) in config.routes.iter().enumerate() {
        let index = find(table, entry)?;
        if let Some(other) = entries.insert(index, at).map(|o| &config.routes[o]) {
            return Err(ConfigError::in_route(
                entry.path.clone(),
                "path",
                format!(
                    "names the same route as the entry {:?} ({})",
                    other.path,
                    table.routes()[index].path()
                ),
            ));
        }
    }
    let mut mounted = Vec::with_capacity(components.len());
    for (route, component) in table.routes().iter().zip(components) {
        let at = entries.get(route.value()).copied();
        let entry = at.map(|at| &config.routes[at]);
        let default = RoutePolicy::default();
        let policy = entry.unwrap_or(&default);
        let in_route = |e: ConfigError| e.within_route(entry.map(|p| p.path.as_str()));
        let (max_message_size, max_frame_size) = config.route_sizes(policy).map_err(in_route)?;
        let allowed_origins = policy
            .allowed_origins
            .clone()
            .unwrap_or_else(|| config.allowed_origins.clone());
        let require_origin = policy.require_origin.unwrap_or(config.require_origin);
        let origin = match at.and_then(|at| parsed.route_origins[at].as_ref()) {
            Some(own) => Arc::clone(own),
            None => Arc::clone(&parsed.origin),
        };
        let max_connections = policy.max_connections.unwrap_or(0);
        let limiter = (max_connections != 0)
            .then(|| {
                ConnectionLimiter::new(ConnectionLimits {
                    max_connections,
                    ..ConnectionLimits::unlimited()
                })
            })
            .transpose()
            .map_err(|e| in_route(ConfigError::new("max_connections", e.to_string())))?;
        mounted.push(MountedRoute {
            component,
            origin,
            limiter,
            ws_config: ws_config(
                max_message_size,
                max_frame_size,
                config.websocket.max_frames_per_message,
            ),
            requirement: Arc::new(Requirement {
                route: route.path().to_owned(),
                aspects: policy.require.clone(),
                groups: policy.require_groups.clone(),
            }),
            info: RouteInfo {
                path: route.path().to_owned(),
                component: route.component().to_owned(),
                has_policy: entry.is_some(),
                allowed_origins,
                require_origin,
                max_messages_per_second: policy
                    .max_messages_per_second
                    .unwrap_or(config.max_messages_per_second),
                max_message_size,
                max_frame_size,
                max_connections,
                require: policy.require.clone(),
                require_groups: policy.require_groups.clone(),
            },
        });
    }
    Ok(mounted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ws_routing::RouteTableBuilder;

    fn table(prefix: &str, routes: &[&str]) -> (RouteTable<usize>, Vec<Arc<dyn Component>>) {
        let mut b = RouteTableBuilder::new(prefix).unwrap();
        let mut components: Vec<Arc<dyn Component>> = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            b.add(Some(r), &format!("c::C{i}"), i).unwrap();
            components.push(Arc::new(ws_core::component_fn(
                r.to_string(),
                |_c, _m| async { Ok(()) },
            )));
        }
        (b.build(), components)
    }

    #[test]
    fn entries_match_with_or_without_the_prefix() {
        let (t, c) = table("/ws", &["/echo", "/chat/{room}"]);
        let mut a = RoutePolicy::new("/ws/echo");
        a.max_messages_per_second = Some(5);
        let mut b = RoutePolicy::new("chat/{room}");
        b.max_connections = Some(3);
        b.allowed_origins = Some(vec!["example.com".into()]);
        let config = ServerConfig {
            routes: vec![a, b],
            ..ServerConfig::default()
        };
        let m = mount(&config, &config.parse().unwrap(), &t, c).unwrap();
        assert_eq!(m[0].info.max_messages_per_second, 5);
        assert!(m[0].info.has_policy);
        assert!(m[0].limiter.is_none());
        assert_eq!(m[1].info.max_connections, 3);
        assert_eq!(m[1].info.allowed_origins, ["example.com"]);
        assert_eq!(m[1].info.max_messages_per_second, 100);
        assert!(m[1].limiter.is_some());
    }

    #[test]
    fn unknown_and_duplicate_entries_are_errors() {
        let (t, c) = table("/ws", &["/echo"]);
        let mut config = ServerConfig {
            routes: vec![RoutePolicy::new("/nope")],
            ..ServerConfig::default()
        };
        let e = mount(&config, &config.parse().unwrap(), &t, c)
            .err()
            .unwrap();
        assert_eq!((e.key, e.route.as_deref()), ("path", Some("/nope")));
        assert!(e.reason.contains("/ws/echo"), "{e}");
        let (t, c) = table("/ws", &["/echo"]);
        config.routes = vec![RoutePolicy::new("/echo"), RoutePolicy::new("/ws/echo")];
        let e = mount(&config, &config.parse().unwrap(), &t, c)
            .err()
            .unwrap();
        assert!(e.reason.contains("same route"), "{e}");
    }
}
