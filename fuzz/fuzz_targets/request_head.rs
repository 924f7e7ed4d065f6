//! A raw HTTP request head through every handshake stage that reads it, in
//! the server's order: size, client address, origin, upgrade checks,
//! credentials, subprotocol and route.

#![no_main]

use base64::Engine as _;
use http::header;
use libfuzzer_sys::fuzz_target;
use ws_auth::{Credential, MAX_CREDENTIAL_LEN};
use ws_routing::{RouteTable, RouteTableBuilder};
use ws_runtime::__fuzz::{self as rt, ClientAddrResolver, OriginPolicy};

struct Stages {
    xff: ClientAddrResolver,
    forwarded: ClientAddrResolver,
    origins: OriginPolicy,
    table: RouteTable<usize>,
    supported: Vec<String>,
    credentials: Vec<Credential>,
}

fn stages() -> Stages {
    let trusted = ["127.0.0.1", "10.0.0.0/8", "::1"].map(String::from);
    let origins = [
        "https://example.com",
        "*.example.org",
        "null",
        "http://[::1]:3000",
    ]
    .map(String::from);
    let mut b = RouteTableBuilder::new("/ws").expect("prefix");
    for (i, r) in ["/echo", "/chat/{room}", "/img-{id}.png", "/files/{*path}"]
        .iter()
        .enumerate()
    {
        b.add(Some(r), "fuzz::C", i).expect("route");
    }
    Stages {
        xff: ClientAddrResolver::new(&trusted, false).expect("trusted"),
        forwarded: ClientAddrResolver::new(&trusted, true).expect("trusted"),
        origins: OriginPolicy::new(&origins, false).expect("origins"),
        table: b.build(),
        supported: ["chat", "superchat", "bearer.x"].map(String::from).to_vec(),
        credentials: vec![
            Credential::Cookie("session".into()),
            Credential::Query("token".into()),
            Credential::Bearer,
            Credential::Protocol {
                prefix: "bearer.".into(),
            },
        ],
    }
}

static STAGES: std::sync::LazyLock<Stages> = std::sync::LazyLock::new(stages);

fuzz_target!(|data: &[u8]| {
    let Some(req) = ws_provider_fuzz::request_from_head(data) else {
        return;
    };
    let s = &*STAGES;
    let h = req.headers();

    // The size counted covers at least every header's name and value.
    let listed: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    assert!(rt::head_size(&req) >= listed);

    // Client address: an untrusted peer is the client, whatever it sends.
    let outsider = "192.0.2.1:5000".parse().expect("addr");
    for r in [&s.xff, &s.forwarded] {
        assert_eq!(r.resolve(outsider, h), Ok(outsider));
        let proxy = "127.0.0.1:4000".parse().expect("addr");
        if let Err(e) = r.resolve(proxy, h) {
            assert!(e.contains("Forwarded"), "{e}");
        }
    }

    // Origin: two `Origin` headers are always refused.
    let origin = s.origins.check(h);
    if h.get_all(header::ORIGIN).iter().count() > 1 {
        assert!(origin.is_err());
    }

    match rt::classify(&req) {
        Ok(None) => assert!(!h.contains_key(header::UPGRADE)),
        Ok(Some(key)) => {
            assert_eq!(req.method(), http::Method::GET);
            assert!(req.version() >= http::Version::HTTP_11);
            let raw = base64::engine::general_purpose::STANDARD
                .decode(key.as_bytes())
                .expect("an accepted key is base64");
            assert_eq!(raw.len(), 16);
            assert_eq!(h.get_all(header::SEC_WEBSOCKET_KEY).iter().count(), 1);
        }
        Err((status, message)) => {
            assert!(matches!(status, 400 | 405 | 426), "{status}");
            assert!(!message.is_empty());
        }
    }

    let query = req.uri().query();
    for c in &s.credentials {
        if let Some(v) = c.extract(h, query) {
            assert!(!v.is_empty() && v.len() <= MAX_CREDENTIAL_LEN);
        }
    }

    // The subprotocol is one the server supports and the client offered,
    // never a credential entry.
    if let Some(p) = rt::choose_protocol(&s.supported, h, Some("bearer.")) {
        assert!(s.supported.iter().any(|x| x == p));
        assert!(rt::offered_protocols(h).contains(&p));
        assert!(!p.starts_with("bearer."));
    }

    if let Some(m) = s.table.at(req.uri().path()) {
        let pattern = m.route.path();
        assert_eq!(m.params.len(), pattern.matches('{').count());
        for (name, _) in &m.params {
            assert!(
                pattern.contains(&format!("{{{name}}}"))
                    || pattern.contains(&format!("{{*{name}}}"))
            );
        }
    }
});
