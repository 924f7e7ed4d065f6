//! Finding a credential in the handshake request: cookies (RFC 6265), query
//! parameters, `Authorization: Bearer` and `Sec-WebSocket-Protocol` tokens.
//!
//! Every extractor returns the first match and treats an empty value as no
//! credential. A credential longer than [`MAX_CREDENTIAL_LEN`] is ignored
//! (anonymous), so a client cannot make a store look up megabytes.

use std::borrow::Cow;

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE, SEC_WEBSOCKET_PROTOCOL};

use crate::config::Credential;

/// Longest credential looked up, in bytes.
pub const MAX_CREDENTIAL_LEN: usize = 8192;

impl Credential {
    /// The credential this request presents, if any.
    ///
    /// `query` is the raw query string, without the `?`.
    pub fn extract(&self, headers: &HeaderMap, query: Option<&str>) -> Option<String> {
        let found: Option<Cow<'_, str>> = match self {
            Self::Cookie(name) => cookie(headers, name).map(Cow::Borrowed),
            Self::Query(name) => query.and_then(|q| query_param(q, name)),
            Self::Bearer => bearer(headers).map(Cow::Borrowed),
            Self::Protocol { prefix } => protocol_token(headers, prefix).map(Cow::Borrowed),
        };
        found
            .filter(|v| !v.is_empty() && v.len() <= MAX_CREDENTIAL_LEN)
            .map(Cow::into_owned)
    }

    /// Whether `entry` of `Sec-WebSocket-Protocol` carries this credential.
    pub(crate) fn is_protocol_entry(&self, entry: &str) -> bool {
        matches!(self, Self::Protocol { prefix } if entry.starts_with(prefix.as_str()))
    }
}

/// The value of cookie `name`: every `Cookie` header in order, pairs
/// separated by `;` (spaces around them ignored), the first pair of that
/// name wins, a value in double quotes loses them. Headers that are not
/// valid UTF-8 are skipped.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| n.trim_matches(is_ows) == name)
        .map(|(_, v)| {
            let v = v.trim_matches(is_ows);
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
}

/// All `Cookie` headers as one, joined with `; ` (what HTTP/1.1 sends).
pub(crate) fn cookie_header(headers: &HeaderMap) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The value of query parameter `name` (`application/x-www-form-urlencoded`:
/// `&`-separated, `+` is a space, percent-decoded); the first wins.
pub(crate) fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(n, _)| form_decode(n).is_some_and(|n| n == name))
        .and_then(|(_, v)| form_decode(v))
}

fn form_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains(['+', '%']) {
        return Some(Cow::Borrowed(s));
    }
    let spaced = s.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()?;
    Some(Cow::Owned(decoded.into_owned()))
}

/// The token of the first `Authorization` header when its scheme is
/// `Bearer` (any case).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_matches(is_ows))
}

/// The first `Sec-WebSocket-Protocol` entry that starts with `prefix`,
/// without it.
pub(crate) fn protocol_token<'h>(headers: &'h HeaderMap, prefix: &str) -> Option<&'h str> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|e| e.trim_matches(is_ows))
        .find_map(|e| e.strip_prefix(prefix))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cookies_per_rfc_6265() {
        let h = headers(&[
            ("cookie", "a=1; fe_typo_user=abc123;b=2"),
            ("cookie", "fe_typo_user=second; q=\"quoted value\""),
        ]);
        assert_eq!(cookie(&h, "fe_typo_user"), Some("abc123"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "q"), Some("quoted value"));
        assert_eq!(cookie(&h, "fe_typo"), None);
        assert_eq!(cookie(&h, "A"), None, "names are case-sensitive");
        // Duplicates in one header: the first wins.
        let h = headers(&[("cookie", "s=first; s=second")]);
        assert_eq!(cookie(&h, "s"), Some("first"));
        // Pairs without `=`, stray separators, a lone quote.
        let h = headers(&[("cookie", ";; junk; s=\"x; t=\"")]);
        assert_eq!(cookie(&h, "s"), Some("\"x"));
        assert_eq!(cookie(&h, "t"), Some("\""));
        // Values may contain `=`.
        let h = headers(&[("cookie", "jwt=a.b.c==")]);
        assert_eq!(cookie(&h, "jwt"), Some("a.b.c=="));
        assert_eq!(
            cookie_header(&headers(&[("cookie", "a=1"), ("cookie", "b=2")])).as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(cookie_header(&HeaderMap::new()), None);
    }

    #[test]
    fn empty_and_huge_values_are_no_credential() {
        let c = Credential::Cookie("s".into());
        assert_eq!(c.extract(&headers(&[("cookie", "s=")]), None), None);
        assert_eq!(c.extract(&headers(&[("cookie", "s=\"\"")]), None), None);
        let mut h = HeaderMap::new();
        let huge = format!("s={}", "x".repeat(MAX_CREDENTIAL_LEN + 1));
        h.insert(COOKIE, HeaderValue::from_str(&huge).unwrap());
        assert_eq!(c.extract(&h, None), None);
    }

    #[test]
    fn query_parameters() {
        assert_eq!(
            query_param("a=1&token=x%2By+z", "token").as_deref(),
            Some("x+y z")
        );
        assert_eq!(
            query_param("token=1&token=2", "token").as_deref(),
            Some("1")
        );
        assert_eq!(query_param("to%6Ben=enc", "token").as_deref(), Some("enc"));
        assert_eq!(query_param("token", "token").as_deref(), Some(""));
        assert_eq!(query_param("tokens=1", "token"), None);
        assert_eq!(query_param("token=%FF", "token"), None, "not UTF-8");
        let c = Credential::Query("token".into());
        assert_eq!(
            c.extract(&HeaderMap::new(), Some("token=abc")).as_deref(),
            Some("abc")
        );
        assert_eq!(c.extract(&HeaderMap::new(), None), None);
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(
            bearer(&headers(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer(&headers(&[("authorization", "bearer  abc ")])),
            Some("abc")
        );
        assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Bearer")])), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn protocol_tokens() {
        let h = headers(&[
            ("sec-websocket-protocol", "chat, bearer.eyJ.x.y"),
            ("sec-websocket-protocol", "bearer.second"),
        ]);
        assert_eq!(protocol_token(&h, "bearer."), Some("eyJ.x.y"));
        assert_eq!(protocol_token(&h, "token."), None);
        let c = Credential::Protocol {
            prefix: "bearer.".into(),
        };
        assert!(c.is_protocol_entry("bearer.abc") && !c.is_protocol_entry("chat"));
        let h = headers(&[("sec-websocket-protocol", "chat, bearer.")]);
        assert_eq!(c.extract(&h, None), None, "empty token");
    }
}
