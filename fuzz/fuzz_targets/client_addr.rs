//! `trusted_proxies` and the forwarding headers (`X-Forwarded-For`,
//! `Forwarded`): the client address behind trusted proxies.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use ws_provider_fuzz::headers;
use ws_runtime::__fuzz::ClientAddrResolver;

#[derive(Arbitrary, Debug)]
struct Input {
    trusted: Vec<String>,
    forwarded: bool,
    v6: bool,
    peer: [u8; 16],
    port: u16,
    values: Vec<Vec<u8>>,
}

fuzz_target!(|input: Input| {
    let Ok(resolver) = ClientAddrResolver::new(&input.trusted, input.forwarded) else {
        return;
    };
    let ip = if input.v6 {
        IpAddr::V6(Ipv6Addr::from(input.peer))
    } else {
        IpAddr::V4(Ipv4Addr::new(
            input.peer[0],
            input.peer[1],
            input.peer[2],
            input.peer[3],
        ))
    };
    let peer = SocketAddr::new(ip, input.port);
    let (name, other) = if input.forwarded {
        ("forwarded", "x-forwarded-for")
    } else {
        ("x-forwarded-for", "forwarded")
    };
    let values = || input.values.iter().map(|v| (name, v.as_slice()));
    let h = headers(values());

    // The other header is never read; without the header, the peer.
    let o = headers(input.values.iter().map(|v| (other, v.as_slice())));
    assert_eq!(resolver.resolve(peer, &o), Ok(peer));
    assert_eq!(resolver.resolve(peer, &Default::default()), Ok(peer));

    // Whether `ip` is a trusted proxy: only then is its header read.
    let probe: &[u8] = if input.forwarded {
        b"for=203.0.113.1"
    } else {
        b"203.0.113.1"
    };
    let probe = headers([(name, probe)]);
    let trusted = |ip: IpAddr| {
        let at = SocketAddr::new(ip, 1);
        resolver.resolve(at, &probe) != Ok(at)
    };

    match resolver.resolve(peer, &h) {
        Ok(client) if client == peer => {}
        Ok(client) => {
            assert!(trusted(peer.ip()), "header of an untrusted peer read");
            if !trusted(client.ip()) {
                // Entries left of the client are never looked at: garbage
                // there changes nothing.
                let garbage: &[u8] = if input.forwarded {
                    b"for=not-an-address"
                } else {
                    b"not-an-address"
                };
                let more = headers(std::iter::once((name, garbage)).chain(values()));
                assert_eq!(resolver.resolve(peer, &more), Ok(client));
            }
        }
        Err(e) => {
            assert!(trusted(peer.ip()), "header of an untrusted peer read");
            let shown = if input.forwarded {
                "`Forwarded`"
            } else {
                "`X-Forwarded-For`"
            };
            assert!(e.contains(shown), "{e}");
        }
    }
});
