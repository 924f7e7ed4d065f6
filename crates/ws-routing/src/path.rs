//! Normalisation of the server-wide prefix and of component routes.
//!
//! Both come out canonical: a prefix is `""` (root) or `/seg(/seg)*`, a route
//! is `/` or `/seg(/seg)*`; no empty segments, no trailing slash. Normalising
//! a normalised value returns it unchanged.

use crate::error::RouteError;
use crate::pattern::{check_dot_segment, check_segment, check_static_char};

/// Normalises the server-wide route prefix.
///
/// Slashes are collapsed and trimmed; the root (no prefix) is `""`. The
/// prefix is static text: whitespace, control characters, `?`, `#`, `{`, `}`,
/// `*`, `.` and `..` segments and anything else a URL path cannot hold
/// unencoded are refused, with the reason.
///
/// ```
/// use ws_routing::normalize_prefix;
///
/// assert_eq!(normalize_prefix("").unwrap(), "");
/// assert_eq!(normalize_prefix("//").unwrap(), "");
/// assert_eq!(normalize_prefix("socket.io").unwrap(), "/socket.io");
/// assert_eq!(normalize_prefix("//socket.io//").unwrap(), "/socket.io");
/// assert_eq!(normalize_prefix("/a//b/").unwrap(), "/a/b");
/// assert!(normalize_prefix("/a/../b").is_err());
/// ```
///
/// # Errors
///
/// [`RouteError::InvalidPrefix`] naming the prefix and the reason.
pub fn normalize_prefix(prefix: &str) -> Result<String, RouteError> {
    let invalid = |reason: String| RouteError::InvalidPrefix {
        prefix: prefix.to_owned(),
        reason,
    };
    let mut out = String::with_capacity(prefix.len() + 1);
    for segment in prefix.split('/').filter(|s| !s.is_empty()) {
        for c in segment.chars() {
            match c {
                '{' | '}' => {
                    return Err(invalid(format!(
                        "contains `{c}`; a prefix cannot hold route parameters"
                    )));
                }
                '*' => {
                    return Err(invalid(
                        "contains `*`; a prefix cannot hold a catch-all".to_owned(),
                    ));
                }
                c => check_static_char(c).map_err(invalid)?,
            }
        }
        check_dot_segment(segment).map_err(invalid)?;
        out.push('/');
        out.push_str(segment);
    }
    Ok(out)
}

/// Normalises a component's route and checks its matchit syntax.
///
/// A leading `/` is added when missing, duplicate slashes are collapsed and
/// a trailing slash is removed (`""` and `"/"` are the root route `/`).
/// Parameters are matchit 0.9's: `{name}` (one per segment, optionally with
/// static text around it, like `img-{id}.png`) and `{*rest}` as the whole
/// last segment; names are ASCII identifiers and unique. Braces must balance,
/// `.`/`..` segments, whitespace, `?`, `#`, `%` and non-ASCII characters are
/// refused.
///
/// ```
/// use ws_routing::normalize_route;
///
/// assert_eq!(normalize_route("echo").unwrap(), "/echo");
/// assert_eq!(normalize_route("//chat//{room}/").unwrap(), "/chat/{room}");
/// assert_eq!(normalize_route("/").unwrap(), "/");
/// assert_eq!(normalize_route("/files/{*path}").unwrap(), "/files/{*path}");
/// assert!(normalize_route("/x{").unwrap_err().contains("without a matching `}`"));
/// ```
///
/// # Errors
///
/// The reason the route is refused; the caller adds which route and
/// component (see [`RouteError::InvalidRoute`]).
pub fn normalize_route(route: &str) -> Result<String, String> {
    let segments: Vec<&str> = route.split('/').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() {
        return Ok("/".to_owned());
    }
    let mut names = Vec::new();
    let mut out = String::with_capacity(route.len() + 1);
    for (i, segment) in segments.iter().enumerate() {
        check_segment(segment, i + 1 == segments.len(), &mut names)?;
        out.push('/');
        out.push_str(segment);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{normalize_prefix, normalize_route};
    use crate::RouteError;

    fn prefix_reason(p: &str) -> String {
        match normalize_prefix(p) {
            Err(RouteError::InvalidPrefix { prefix, reason }) => {
                assert_eq!(prefix, p);
                reason
            }
            other => panic!("{p:?}: {other:?}"),
        }
    }

    #[test]
    fn prefix_root_forms() {
        for p in ["", "/", "//", "///"] {
            assert_eq!(normalize_prefix(p).unwrap(), "", "{p:?}");
        }
    }

    #[test]
    fn prefix_slashes_collapse() {
        for p in ["socket.io", "/socket.io", "/socket.io/", "//socket.io//"] {
            assert_eq!(normalize_prefix(p).unwrap(), "/socket.io", "{p:?}");
        }
        assert_eq!(normalize_prefix("/a//b/").unwrap(), "/a/b");
        assert_eq!(normalize_prefix("ws/v1").unwrap(), "/ws/v1");
    }

    #[test]
    fn prefix_refusals_say_why() {
        assert_eq!(prefix_reason("a b"), "contains a space");
        assert_eq!(
            normalize_prefix("a b").unwrap_err().to_string(),
            "route prefix `a b`: contains a space"
        );
        assert!(prefix_reason("/a\tb").contains("control character"));
        assert!(prefix_reason("/a\u{7f}").contains("control character"));
        assert!(prefix_reason("/a?x=1").contains("`?`"));
        assert!(prefix_reason("/a#top").contains("`#`"));
        assert!(prefix_reason("/{ns}").contains("`{`"));
        assert!(prefix_reason("/ns}").contains("`}`"));
        assert!(prefix_reason("/*").contains("`*`"));
        assert!(prefix_reason("/a/./b").contains("`.` segment"));
        assert!(prefix_reason("/a/..").contains("`..` segment"));
        assert!(prefix_reason("/caf%C3%A9").contains("`%`"));
        assert!(prefix_reason("/café").contains("non-ASCII"));
    }

    #[test]
    fn prefix_dots_inside_segments_are_fine() {
        assert_eq!(normalize_prefix("/.well-known").unwrap(), "/.well-known");
        assert_eq!(normalize_prefix("/a..b").unwrap(), "/a..b");
    }

    #[test]
    fn route_normalisation() {
        assert_eq!(normalize_route("").unwrap(), "/");
        assert_eq!(normalize_route("/").unwrap(), "/");
        assert_eq!(normalize_route("//").unwrap(), "/");
        assert_eq!(normalize_route("echo").unwrap(), "/echo");
        assert_eq!(normalize_route("/echo/").unwrap(), "/echo");
        assert_eq!(normalize_route("//a///b//").unwrap(), "/a/b");
        assert_eq!(normalize_route("chat/{room}").unwrap(), "/chat/{room}");
        assert_eq!(normalize_route("/img/{id}.png").unwrap(), "/img/{id}.png");
        assert_eq!(normalize_route("/{*rest}").unwrap(), "/{*rest}");
        assert_eq!(
            normalize_route("/a/{b}/c/{*rest}/").unwrap(),
            "/a/{b}/c/{*rest}"
        );
    }

    #[test]
    fn route_refusals_say_why() {
        for (route, reason) in [
            ("/x{", "segment `x{` has a `{` without a matching `}`"),
            ("/x}", "segment `x}` has a `}` without a matching `{`"),
            ("/{a/b}", "without a matching"),
            ("/{}", "empty name"),
            ("/{a b}", "not an identifier"),
            (
                "/{*rest}/more",
                "catch-all parameter `{*rest}` must be the last segment",
            ),
            ("/{a}/{a}", "`a` appears more than once"),
            ("/{a}{b}", "more than one parameter"),
            ("/a b", "contains a space"),
            ("/a?b", "`?`"),
            ("/a#b", "`#`"),
            ("/a/../b", "`..` segment"),
            ("/./b", "`.` segment"),
            ("/chat/:room", "write `{room}`"),
        ] {
            let err = normalize_route(route).unwrap_err();
            assert!(err.contains(reason), "{route}: {err}");
        }
    }

    #[test]
    fn default_routes_are_valid_routes() {
        for name in ["demo_echo::Echo", "a::B<C, D>", "x::{{closure}}", "<>"] {
            let r = ws_core::default_route(name);
            assert_eq!(normalize_route(&r).unwrap(), r, "{name}");
        }
    }
}
