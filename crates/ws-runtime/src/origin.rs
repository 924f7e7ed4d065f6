//! The origin check (`allowed_origins`, `require_origin`): which web pages
//! may open connections.
//!
//! Browsers send `Origin` on every WebSocket handshake and cannot forge it;
//! other clients usually send none, and pass unless `require_origin` is set.
//! Entries are parsed once, at build time, into rules:
//!
//! | entry | matches |
//! |---|---|
//! | `example.com` | that host, any scheme and port (the original's rule) |
//! | `https://example.com:8443` | exactly that origin; default ports may be left out |
//! | `*.example.com` | any subdomain of `example.com` (not `example.com` itself), any scheme and port |
//! | `https://*.example.com` | any subdomain, with that scheme and port |
//! | `null` | the opaque origin `null` (sandboxed frames, `file:` pages) |
//! | `*` | every origin |
//!
//! Hosts compare case-insensitively; an empty list allows every origin.

use std::borrow::Cow;

use http::HeaderMap;
use http::header::ORIGIN;

use crate::config::ConfigError;

/// The parsed `allowed_origins` and `require_origin` of the server or of one
/// route.
#[derive(Clone, Debug, Default)]
pub(crate) struct OriginPolicy {
    rules: Vec<Rule>,
    require: bool,
    /// Whether the list came from a `[[route]]` entry (for refusal messages).
    route: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    Any,
    Null,
    /// Host only: any scheme, any port.
    Host(String),
    /// A subdomain of `suffix` (stored with its leading dot), optionally with
    /// a scheme and the port (explicit or the scheme's default).
    Subdomain {
        scheme: Option<String>,
        suffix: String,
        port: Option<u16>,
    },
    /// Scheme, host and port (explicit or the scheme's default).
    Exact {
        scheme: String,
        host: String,
        port: Option<u16>,
    },
}

/// An `Origin` header value taken apart; lowercased copies only when the
/// header has capitals (a browser sends it lowercase: no allocation per
/// handshake).
#[derive(Debug, PartialEq, Eq)]
struct Origin<'a> {
    scheme: Cow<'a, str>,
    host: Cow<'a, str>,
    /// Explicit or the scheme's default; `None` when neither is known.
    port: Option<u16>,
}

/// Why a handshake was refused by the origin check.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OriginRefusal(pub(crate) String);

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

fn valid_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn valid_host(h: &str) -> bool {
    if let Some(inner) = h.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !h.is_empty()
        && !h.starts_with('.')
        && !h.ends_with('.')
        && !h.contains("..")
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// Splits `host[:port]` (IPv6 hosts in brackets).
fn split_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if s.starts_with('[') {
        match s.find(']') {
            Some(end) => {
                let (h, rest) = s.split_at(end + 1);
                match rest {
                    "" => (h, None),
                    _ => match rest.strip_prefix(':') {
                        Some(p) => (h, Some(p)),
                        None => return Err("unexpected text after `]`".to_owned()),
                    },
                }
            }
            None => return Err("`[` without `]`".to_owned()),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("port `{p}` is not a number from 1 to 65535"))
        })
        .transpose()?;
    Ok((host, port))
}

fn parse_origin(value: &str) -> Option<Origin<'_>> {
    let (scheme, rest) = value.split_once("://")?;
    let scheme = lowercase(scheme);
    if !valid_scheme(&scheme) || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = split_port(rest).ok()?;
    let host = lowercase(host);
    if !valid_host(&host) {
        return None;
    }
    let port = port.or_else(|| default_port(&scheme));
    Some(Origin { scheme, host, port })
}

/// `s` in ASCII lowercase, copied only when it has capitals.
fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

fn parse_rule(entry: &str) -> Result<Rule, String> {
    let entry = entry.trim();
    match entry {
        "" => return Err("an entry is empty".to_owned()),
        "*" => return Ok(Rule::Any),
        "null" => return Ok(Rule::Null),
        _ => {}
    }
    let quoted = format!("{entry:?}");
    let bad = |why: &str| Err(format!("entry {quoted} {why}"));
    if let Some((scheme, rest)) = entry.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        if !valid_scheme(&scheme) {
            return bad("has an invalid scheme");
        }
        // Browsers never send a path; tolerate a trailing slash only.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return bad("must not contain a path, query or fragment");
        }
        if rest.contains('@') {
            return bad("must not contain user information");
        }
        let (host, port) = match split_port(rest) {
            Ok(hp) => hp,
            Err(why) => return bad(&format!("is not an origin: {why}")),
        };
        let port = port.or_else(|| default_port(&scheme));
        let host = host.to_ascii_lowercase();
        if let Some(suffix) = host.strip_prefix("*.") {
            if !valid_host(suffix) || suffix.contains('*') {
                return bad("is not a valid wildcard (`scheme://*.example.com`)");
            }
            return Ok(Rule::Subdomain {
                scheme: Some(scheme),
                suffix: format!(".{suffix}"),
                port,
            });
        }
        if !valid_host(&host) {
            return bad("has an invalid host");
        }
        return Ok(Rule::Exact { scheme, host, port });
    }
    let host = entry.to_ascii_lowercase();
    if let Some(suffix) = host.strip_prefix("*.") {
        if !valid_host(suffix) {
            return bad("is not a valid wildcard (`*.example.com`)");
        }
        return Ok(Rule::Subdomain {
            scheme: None,
            suffix: format!(".{suffix}"),
            port: None,
        });
    }
    if host.contains(':') && !host.starts_with('[') {
        return bad("has a port but no scheme: write the whole origin, e.g. `https://host:8443`");
    }
    if !valid_host(&host) {
        return bad("is not a host, an origin (`https://host:port`) or a wildcard (`*.host`)");
    }
    Ok(Rule::Host(host))
}

impl Rule {
    fn matches(&self, raw: &str, origin: Option<&Origin<'_>>) -> bool {
        match (self, origin) {
            (Self::Any, _) => true,
            (Self::Null, _) => raw == "null",
            (_, None) => false,
            (Self::Host(h), Some(o)) => *h == *o.host,
            (
                Self::Subdomain {
                    scheme,
                    suffix,
                    port,
                },
                Some(o),
            ) => {
                o.host.ends_with(suffix.as_str())
                    && o.host.len() > suffix.len()
                    && scheme.as_ref().is_none_or(|s| *s == *o.scheme)
                    && (scheme.is_none() || *port == o.port)
            }
            (Self::Exact { scheme, host, port }, Some(o)) => {
                *scheme == *o.scheme && *host == *o.host && *port == o.port
            }
        }
    }
}

impl OriginPolicy {
    /// Parses `allowed_origins` entries.
    ///
    /// # Errors
    /// The first bad entry, quoted, under the key `allowed_origins`.
    pub(crate) fn parse(entries: &[String], require: bool) -> Result<Self, ConfigError> {
        let rules = entries
            .iter()
            .map(|e| parse_rule(e).map_err(|why| ConfigError::new("allowed_origins", why)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            rules,
            require,
            route: false,
        })
    }

    /// Marks the policy as a route's own, for refusal messages.
    pub(crate) fn for_route(mut self) -> Self {
        self.route = true;
        self
    }

    /// Whether every request passes (nothing to check).
    pub(crate) fn allows_all(&self) -> bool {
        !self.require && (self.rules.is_empty() || self.rules.contains(&Rule::Any))
    }

    /// Checks the request's `Origin` header.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), OriginRefusal> {
        let whose = if self.route {
            "this route's allowed_origins"
        } else {
            "allowed_origins"
        };
        let mut values = headers.get_all(ORIGIN).iter();
        let value = match (values.next(), values.next()) {
            (None, _) if self.require => {
                return Err(OriginRefusal(
                    "missing header `Origin` (require_origin = true)".to_owned(),
                ));
            }
            (None, _) => return Ok(()),
            (Some(_), Some(_)) => {
                return Err(OriginRefusal(
                    "header `Origin` given more than once".to_owned(),
                ));
            }
            (Some(v), None) => v,
        };
        // `*` allows every origin, even one that is not ASCII (what
        // `allows_all` promises; found by the `origin` fuzz target).
        if self.rules.is_empty() || self.rules.contains(&Rule::Any) {
            return Ok(());
        }
        let Ok(raw) = value.to_str() else {
            return Err(OriginRefusal(
                "header `Origin` is not valid ASCII".to_owned(),
            ));
        };
        let raw = raw.trim();
        let origin = parse_origin(raw);
        if self.rules.iter().any(|r| r.matches(raw, origin.as_ref())) {
            Ok(())
        } else {
            Err(OriginRefusal(format!(
                "origin `{raw}` is not allowed ({whose})"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn policy(entries: &[&str]) -> OriginPolicy {
        let entries: Vec<String> = entries.iter().map(|s| (*s).to_owned()).collect();
        OriginPolicy::parse(&entries, false).unwrap()
    }

    fn allowed(p: &OriginPolicy, origin: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        p.check(&h).is_ok()
    }

    #[test]
    fn empty_allows_all_and_missing_origin_passes() {
        let p = policy(&[]);
        assert!(p.allows_all());
        assert!(allowed(&p, "https://anything.example"));
        assert!(policy(&["example.com"]).check(&HeaderMap::new()).is_ok());
        let strict = OriginPolicy::parse(&[], true).unwrap();
        assert!(!strict.allows_all());
        let e = strict.check(&HeaderMap::new()).unwrap_err();
        assert!(e.0.contains("require_origin"), "{e:?}");
        assert!(allowed(&strict, "https://x.example"));
    }

    #[test]
    fn hosts_match_any_scheme_and_port() {
        let p = policy(&["Example.com"]);
        assert!(allowed(&p, "https://example.com"));
        assert!(allowed(&p, "http://EXAMPLE.com:8080"));
        assert!(!allowed(&p, "https://www.example.com"));
        assert!(!allowed(&p, "https://example.com.evil.org"));
        assert!(!allowed(&p, "null"));
        assert!(!allowed(&p, "garbage"));
    }

    #[test]
    fn exact_origins_compare_scheme_host_and_port() {
        let p = policy(&["https://example.com:8443", "http://example.org"]);
        assert!(allowed(&p, "https://example.com:8443"));
        assert!(!allowed(&p, "https://example.com"));
        assert!(!allowed(&p, "http://example.com:8443"));
        assert!(allowed(&p, "http://example.org"));
        assert!(allowed(&p, "http://example.org:80"));
        assert!(!allowed(&p, "https://example.org"));
        let p = policy(&["https://example.com/"]);
        assert!(allowed(&p, "https://example.com:443"));
        let p = policy(&["http://[::1]:3000"]);
        assert!(allowed(&p, "http://[::1]:3000"));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let p = policy(&["*.example.com"]);
        assert!(allowed(&p, "https://a.example.com"));
        assert!(allowed(&p, "http://a.b.example.com:81"));
        assert!(!allowed(&p, "https://example.com"));
        assert!(!allowed(&p, "https://badexample.com"));
        let p = policy(&["https://*.example.com"]);
        assert!(allowed(&p, "https://a.example.com"));
        assert!(!allowed(&p, "http://a.example.com"));
        assert!(!allowed(&p, "https://a.example.com:8443"));
    }

    #[test]
    fn null_and_star() {
        assert!(allowed(&policy(&["null"]), "null"));
        assert!(!allowed(&policy(&["null"]), "https://x.org"));
        let star = policy(&["*"]);
        assert!(star.allows_all());
        assert!(allowed(&star, "null"));
    }

    #[test]
    fn star_allows_an_origin_that_is_not_ascii() {
        // fuzz/corpus/origin/regression-star-not-ascii: `*` refused an
        // `Origin` with bytes above 0x7f as "not valid ASCII".
        let mut h = HeaderMap::new();
        h.insert(
            ORIGIN,
            HeaderValue::from_bytes(b"https://\xffx.org").unwrap(),
        );
        for require in [false, true] {
            let star = OriginPolicy::parse(&["*".to_owned()], require).unwrap();
            assert_eq!(star.check(&h), Ok(()));
        }
        let p = policy(&["example.com"]);
        assert!(p.check(&h).unwrap_err().0.contains("not valid ASCII"));
    }

    #[test]
    fn refusals_name_the_origin() {
        let p = policy(&["example.com"]);
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, HeaderValue::from_static("https://evil.org"));
        assert_eq!(
            p.check(&h).unwrap_err().0,
            "origin `https://evil.org` is not allowed (allowed_origins)"
        );
        h.append(ORIGIN, HeaderValue::from_static("https://example.com"));
        assert!(p.check(&h).unwrap_err().0.contains("more than once"));
        let p = p.for_route();
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, HeaderValue::from_static("https://evil.org"));
        assert!(p.check(&h).unwrap_err().0.contains("this route's"));
    }

    #[test]
    fn bad_entries_are_named() {
        for (entry, needle) in [
            ("", "empty"),
            ("https://example.com/app", "path"),
            ("example.com:8443", "no scheme"),
            ("*.", "wildcard"),
            ("https://*.", "wildcard"),
            ("exa mple.com", "not a host"),
            ("https://example.com:99999", "port"),
            ("https://user@example.com", "user information"),
            ("1http://x", "scheme"),
            ("a.*.example.com", "not a host"),
        ] {
            let e = OriginPolicy::parse(&[entry.to_owned()], false).unwrap_err();
            assert_eq!(e.key, "allowed_origins");
            assert!(e.reason.contains(needle), "{entry:?}: {e}");
        }
    }
}
