//! Segment-aware joining of the prefix and a route.

/// Whether `path` lies under `prefix`, segment by segment.
///
/// `prefix` and `path` are normalised (see [`normalize_prefix`] and
/// [`normalize_route`]). The root prefix `""` holds everything.
///
/// ```
/// use ws_routing::is_under;
///
/// assert!(is_under("/socket.io", "/socket.io"));
/// assert!(is_under("/socket.io", "/socket.io/echo"));
/// assert!(!is_under("/socket.io", "/socket.iox"));
/// assert!(is_under("", "/anything"));
/// ```
///
/// [`normalize_prefix`]: crate::normalize_prefix
/// [`normalize_route`]: crate::normalize_route
pub fn is_under(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Mounts a route under the prefix, unless it already lies under it.
///
/// Both arguments are normalised. Like the original, the prefix is not
/// added twice, but segment-aware: with prefix `/socket.io`, the route
/// `/socket.io/echo` stays as it is while `/socket.iox` becomes
/// `/socket.io/socket.iox`. The root route `/` mounts on the prefix itself.
/// Joining is idempotent: `join(p, &join(p, r)) == join(p, r)`.
///
/// ```
/// use ws_routing::join;
///
/// assert_eq!(join("/socket.io", "/echo"), "/socket.io/echo");
/// assert_eq!(join("/socket.io", "/socket.io/echo"), "/socket.io/echo");
/// assert_eq!(join("/socket.io", "/socket.iox"), "/socket.io/socket.iox");
/// assert_eq!(join("/socket.io", "/"), "/socket.io");
/// assert_eq!(join("", "/echo"), "/echo");
/// ```
pub fn join(prefix: &str, route: &str) -> String {
    if is_under(prefix, route) {
        route.to_owned()
    } else if route.is_empty() || route == "/" {
        prefix.to_owned()
    } else if route.starts_with('/') {
        format!("{prefix}{route}")
    } else {
        format!("{prefix}/{route}")
    }
}

#[cfg(test)]
mod tests {
    use super::{is_under, join};

    #[test]
    fn segment_aware() {
        assert!(is_under("/socket.io", "/socket.io"));
        assert!(is_under("/socket.io", "/socket.io/echo"));
        assert!(is_under("/socket.io", "/socket.io/{*rest}"));
        assert!(!is_under("/socket.io", "/socket.iox"));
        assert!(!is_under("/socket.io", "/socket.i"));
        assert!(!is_under("/socket.io", "/"));
        assert!(!is_under("/a/b", "/a"));
        assert!(is_under("", "/"));
        assert!(is_under("", "/x"));
    }

    #[test]
    fn join_cases() {
        assert_eq!(join("/socket.io", "/echo"), "/socket.io/echo");
        assert_eq!(join("/socket.io", "/socket.io/echo"), "/socket.io/echo");
        assert_eq!(join("/socket.io", "/socket.io"), "/socket.io");
        assert_eq!(join("/socket.io", "/socket.iox"), "/socket.io/socket.iox");
        assert_eq!(join("/p", "/"), "/p");
        assert_eq!(join("/p", "/{room}"), "/p/{room}");
        assert_eq!(join("/p", "/p{x}"), "/p/p{x}");
        assert_eq!(join("", "/"), "/");
        assert_eq!(join("", "/echo"), "/echo");
        assert_eq!(join("/ws", "/demo_echo_Echo"), "/ws/demo_echo_Echo");
    }

    #[test]
    fn join_twice_is_join_once() {
        for p in ["", "/p", "/socket.io", "/a/b"] {
            for r in ["/", "/p", "/px", "/socket.io/x", "/a", "/a/b/c", "/{x}"] {
                let once = join(p, r);
                assert_eq!(join(p, &once), once, "{p} {r}");
                assert!(is_under(p, &once), "{p} {r}");
            }
        }
    }
}
