//! The client's address behind trusted reverse proxies (`trusted_proxies`,
//! `forwarded_header`).
//!
//! A forwarding header is only as good as whoever wrote it: anyone can send
//! `X-Forwarded-For: 1.2.3.4`. So the header is read only when the TCP peer
//! is a trusted proxy, and then from the right: each proxy appends the
//! address it received the request from, so the right-most entry that is not
//! itself a trusted proxy is the first address no trusted party vouches
//! beyond, i.e. the client. Entries left of it may be forged and are never
//! looked at.
//!
//! - Every entry trusted (a chain of proxies only): the left-most one.
//! - An entry a trusted proxy marks as unknown (`Forwarded: for=unknown` or
//!   an obfuscated `for=_hidden`), or an element without `for=`: the
//!   nearest trusted hop, since nothing better is known.
//! - An entry that is not an address at all: the handshake is refused with
//!   400 naming the header, since a trusted proxy sent garbage.
//!
//! The port of the client is taken from the entry when it carries one
//! (`Forwarded: for="[2001:db8::1]:4711"`), else it is 0 (unknown).
//!
//! The default trusts loopback only (`127.0.0.0/8`, `::1`): a reverse proxy
//! on the same host is believed, nobody else is. When a peer that is not
//! trusted sends a forwarding header while per-address limits are on, one
//! warning naming `trusted_proxies` is logged (the first time only): behind
//! a proxy on another host, every client would otherwise share that proxy's
//! address and its per-address budget.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::HeaderMap;
use http::header::{FORWARDED, HeaderName};
use ipnet::IpNet;

use crate::config::{ConfigError, ForwardedHeader};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The parsed `trusted_proxies`.
#[derive(Clone, Debug, Default)]
pub(crate) struct TrustedProxies {
    nets: Vec<IpNet>,
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, what a dual-stack socket reports for
/// IPv4 peers) as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl TrustedProxies {
    /// Parses entries: IP addresses (`10.0.0.1`, `::1`) or CIDR networks
    /// (`10.0.0.0/8`); host bits of a network are ignored.
    ///
    /// # Errors
    /// The first bad entry, quoted, under the key `trusted_proxies`.
    pub(crate) fn parse(entries: &[String]) -> Result<Self, ConfigError> {
        let nets = entries
            .iter()
            .map(|entry| {
                let e = entry.trim();
                e.parse::<IpNet>()
                    .map(|n| n.trunc())
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        ConfigError::new(
                            "trusted_proxies",
                            format!(
                                "entry {entry:?} is not an IP address or a CIDR network \
                                 (like \"10.0.0.0/8\" or \"fd00::/8\")"
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { nets })
    }

    /// Whether no proxy is trusted (headers are never read).
    pub(crate) fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

/// One hop of a forwarding header.
#[derive(Debug, PartialEq, Eq)]
enum Hop {
    Addr(SocketAddr),
    /// Known to exist but not disclosed (`unknown`, `_obfuscated`, no `for=`).
    Hidden,
    /// Not an address: the entry as written.
    Bad(String),
}

/// Parses one node: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:80`.
fn parse_node(node: &str) -> Option<SocketAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(SocketAddr::new(canonical(ip), 0));
    }
    if let Ok(sa) = node.parse::<SocketAddr>() {
        return Some(SocketAddr::new(canonical(sa.ip()), sa.port()));
    }
    let inner = node.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(canonical(ip), 0))
}

fn x_forwarded_for(headers: &HeaderMap) -> Vec<Hop> {
    headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(s) => s.split(',').map(str::trim).map(str::to_owned).collect(),
            Err(_) => vec!["(not ASCII)".to_owned()],
        })
        .filter(|s| !s.is_empty())
        .map(|s| match parse_node(&s) {
            Some(a) => Hop::Addr(a),
            None => Hop::Bad(s),
        })
        .collect()
}

fn forwarded(headers: &HeaderMap) -> Vec<Hop> {
    headers
        .get_all(FORWARDED)
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(s) => s.split(',').map(str::to_owned).collect(),
            Err(_) => vec!["for=(not ASCII)".to_owned()],
        })
        .filter(|element| !element.trim().is_empty())
        .map(|element| {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim().trim_matches('"').to_owned())
            });
            match node {
                None => Hop::Hidden,
                Some(n) if n.eq_ignore_ascii_case("unknown") || n.starts_with('_') => Hop::Hidden,
                Some(n) => match parse_node(&n) {
                    Some(a) => Hop::Addr(a),
                    None => Hop::Bad(n),
                },
            }
        })
        .collect()
}

/// Finds the client address; for [`TrustedProxies`] and the header to read.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientAddrResolver {
    pub(crate) trusted: TrustedProxies,
    pub(crate) header: ForwardedHeader,
    /// Set when per-address limits are on: the one warning about forwarding
    /// headers from an untrusted peer is still to be given while it holds
    /// `false`.
    untrusted_warning: Option<Arc<AtomicBool>>,
}

impl ClientAddrResolver {
    /// A resolver for `trusted` proxies reading `header`; with
    /// `per_address_limits`, the first forwarding header from an untrusted
    /// peer logs one warning naming `trusted_proxies`.
    pub(crate) fn new(
        trusted: TrustedProxies,
        header: ForwardedHeader,
        per_address_limits: bool,
    ) -> Self {
        Self {
            trusted,
            header,
            untrusted_warning: per_address_limits.then(Arc::default),
        }
    }

    /// The client's address for a request from `peer` with `headers`, or the
    /// reason the header cannot be used.
    pub(crate) fn resolve(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
    ) -> Result<SocketAddr, String> {
        if self.trusted.is_empty() || !self.trusted.contains(peer.ip()) {
            self.warn_untrusted(peer, headers);
            return Ok(peer);
        }
        let (hops, name) = match self.header {
            ForwardedHeader::XForwardedFor => (x_forwarded_for(headers), "X-Forwarded-For"),
            ForwardedHeader::Forwarded => (forwarded(headers), "Forwarded"),
        };
        let mut nearest = peer;
        for hop in hops.into_iter().rev() {
            match hop {
                Hop::Addr(a) if self.trusted.contains(a.ip()) => nearest = a,
                Hop::Addr(a) => return Ok(a),
                Hop::Hidden => return Ok(nearest),
                Hop::Bad(entry) => {
                    return Err(format!(
                        "header `{name}` from trusted proxy {} has an entry that is not an \
                         IP address: `{entry}`",
                        peer.ip()
                    ));
                }
            }
        }
        Ok(nearest)
    }

    /// The one warning about a forwarding header from `peer`, not trusted;
    /// whether it was given now.
    fn warn_untrusted(&self, peer: SocketAddr, headers: &HeaderMap) -> bool {
        let Some(warned) = &self.untrusted_warning else {
            return false;
        };
        if warned.load(Ordering::Relaxed) {
            return false;
        }
        let Some(name) = [
            (X_FORWARDED_FOR, "X-Forwarded-For"),
            (FORWARDED, "Forwarded"),
        ]
        .into_iter()
        .find_map(|(h, name)| headers.contains_key(h).then_some(name)) else {
            return false;
        };
        if warned.swap(true, Ordering::Relaxed) {
            return false;
        }
        tracing::warn!(
            peer = %peer.ip(),
            header = name,
            "a request from {} carries `{name}`, but {} is not in `trusted_proxies`, so the \
             header is ignored; if it is your reverse proxy, add it to `trusted_proxies`, or \
             all its clients share one address and one per-address limit (this warning is \
             given once)",
            peer.ip(),
            peer.ip(),
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn resolver(trusted: &[&str], header: ForwardedHeader) -> ClientAddrResolver {
        let entries: Vec<String> = trusted.iter().map(|s| (*s).to_owned()).collect();
        ClientAddrResolver::new(TrustedProxies::parse(&entries).unwrap(), header, true)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_headers_are_ignored() {
        let r = resolver(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            r.resolve(sa("192.0.2.1:5000"), &h),
            Ok(sa("192.0.2.1:5000"))
        );
        let none = resolver(&[], ForwardedHeader::XForwardedFor);
        assert_eq!(
            none.resolve(sa("10.0.0.1:5000"), &h),
            Ok(sa("10.0.0.1:5000"))
        );
    }

    #[test]
    fn right_most_untrusted_hop_wins() {
        let r = resolver(&["10.0.0.0/8", "::1"], ForwardedHeader::XForwardedFor);
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.7"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        assert_eq!(r.resolve(sa("10.0.0.2:1"), &h), Ok(sa("203.0.113.7:0")));
        assert_eq!(r.resolve(sa("[::1]:1"), &h), Ok(sa("203.0.113.7:0")));
        // Only proxies: the farthest one.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(r.resolve(sa("10.0.0.2:1"), &h), Ok(sa("10.9.9.9:0")));
        // No header: the peer.
        assert_eq!(
            r.resolve(sa("10.0.0.2:1"), &HeaderMap::new()),
            Ok(sa("10.0.0.2:1"))
        );
        // Ports and IPv6.
        let h = headers(&[("x-forwarded-for", "[2001:db8::7]:4711")]);
        assert_eq!(
            r.resolve(sa("10.0.0.2:1"), &h),
            Ok(sa("[2001:db8::7]:4711"))
        );
        // An IPv4-mapped peer counts as IPv4.
        let h = headers(&[("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(
            r.resolve(sa("[::ffff:10.0.0.2]:1"), &h),
            Ok(sa("198.51.100.1:0"))
        );
    }

    #[test]
    fn garbage_at_the_decision_point_is_an_error() {
        let r = resolver(&["127.0.0.1"], ForwardedHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-for", "1.1.1.1, not-an-ip")]);
        let e = r.resolve(sa("127.0.0.1:1"), &h).unwrap_err();
        assert!(
            e.contains("X-Forwarded-For") && e.contains("not-an-ip"),
            "{e}"
        );
        // Garbage left of the client is never looked at.
        let h = headers(&[("x-forwarded-for", "not-an-ip, 1.1.1.1")]);
        assert_eq!(r.resolve(sa("127.0.0.1:1"), &h), Ok(sa("1.1.1.1:0")));
    }

    #[test]
    fn forwarded_header() {
        let r = resolver(&["127.0.0.1"], ForwardedHeader::Forwarded);
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=127.0.0.1",
        )]);
        assert_eq!(
            r.resolve(sa("127.0.0.1:1"), &h),
            Ok(sa("[2001:db8:cafe::17]:4711"))
        );
        let h = headers(&[("forwarded", "For=198.51.100.17;by=203.0.113.60")]);
        assert_eq!(r.resolve(sa("127.0.0.1:1"), &h), Ok(sa("198.51.100.17:0")));
        // Unknown and obfuscated hops: the nearest trusted one.
        let h = headers(&[("forwarded", "for=1.1.1.1, for=unknown")]);
        assert_eq!(r.resolve(sa("127.0.0.1:9"), &h), Ok(sa("127.0.0.1:9")));
        let h = headers(&[("forwarded", "for=_hidden, for=127.0.0.1")]);
        assert_eq!(r.resolve(sa("127.0.0.1:9"), &h), Ok(sa("127.0.0.1:0")));
        // The other header is not read.
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(r.resolve(sa("127.0.0.1:9"), &h), Ok(sa("127.0.0.1:9")));
        let h = headers(&[("forwarded", "for=bogus")]);
        assert!(
            r.resolve(sa("127.0.0.1:9"), &h)
                .unwrap_err()
                .contains("`Forwarded`")
        );
    }

    #[test]
    fn one_warning_for_forwarding_headers_from_an_untrusted_peer() {
        let r = resolver(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let plain = HeaderMap::new();
        assert!(!r.warn_untrusted(sa("192.0.2.1:1"), &plain), "no header");
        // The other header counts too: a proxy configured for it.
        let h = headers(&[("forwarded", "for=203.0.113.7")]);
        assert!(r.warn_untrusted(sa("192.0.2.1:1"), &h));
        assert!(!r.warn_untrusted(sa("192.0.2.9:1"), &h), "once only");
        // Clones (one per listener) share the one warning.
        assert!(!r.clone().warn_untrusted(sa("192.0.2.9:1"), &h));
        // Without per-address limits: nothing to warn about.
        let quiet = ClientAddrResolver::new(
            TrustedProxies::parse(&[]).unwrap(),
            ForwardedHeader::XForwardedFor,
            false,
        );
        assert!(!quiet.warn_untrusted(sa("192.0.2.1:1"), &h));
    }

    #[test]
    fn the_default_trusts_loopback_only() {
        let r = ClientAddrResolver::new(
            TrustedProxies::parse(&crate::ServerConfig::default().trusted_proxies).unwrap(),
            ForwardedHeader::XForwardedFor,
            true,
        );
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7")]);
        for local in [
            "127.0.0.1:1",
            "127.0.0.53:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert_eq!(r.resolve(sa(local), &h), Ok(sa("203.0.113.7:0")), "{local}");
        }
        for remote in ["192.0.2.1:1", "[fd00::2]:1", "[::2]:1", "128.0.0.1:1"] {
            assert_eq!(r.resolve(sa(remote), &h), Ok(sa(remote)), "{remote}");
        }
    }

    #[test]
    fn entries_are_validated() {
        let ok = [
            "127.0.0.1",
            "10.0.0.0/8",
            "10.1.2.3/8",
            "::1",
            "fd00::/8",
            " 192.0.2.0/24 ",
        ];
        let entries: Vec<String> = ok.iter().map(|s| (*s).to_owned()).collect();
        let t = TrustedProxies::parse(&entries).unwrap();
        assert!(t.contains("10.200.0.1".parse().unwrap()));
        assert!(t.contains("192.0.2.9".parse().unwrap()));
        assert!(!t.contains("11.0.0.1".parse().unwrap()));
        for bad in ["localhost", "10.0.0.0/33", "", "1.2.3.4/x"] {
            let e = TrustedProxies::parse(&[bad.to_owned()]).unwrap_err();
            assert_eq!(e.key, "trusted_proxies");
            assert!(e.reason.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
