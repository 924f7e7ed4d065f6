//! Credentials in the handshake request: `Cookie` (RFC 6265), query
//! parameters, `Authorization: Bearer` and `Sec-WebSocket-Protocol` entries.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use ws_auth::{Credential, MAX_CREDENTIAL_LEN};
use ws_provider_fuzz::{contains, headers};

#[derive(Arbitrary, Debug)]
struct Input {
    name: String,
    prefix: String,
    cookies: Vec<Vec<u8>>,
    authorization: Vec<Vec<u8>>,
    protocols: Vec<Vec<u8>>,
    query: String,
    value: String,
}

fuzz_target!(|input: Input| {
    let h = headers(
        input
            .cookies
            .iter()
            .map(|v| ("cookie", v.as_slice()))
            .chain(
                input
                    .authorization
                    .iter()
                    .map(|v| ("authorization", v.as_slice())),
            )
            .chain(
                input
                    .protocols
                    .iter()
                    .map(|v| ("sec-websocket-protocol", v.as_slice())),
            ),
    );
    let query = Some(input.query.as_str());
    let found_in = |name: &str, v: &str| {
        h.get_all(name)
            .iter()
            .any(|hv| contains(hv.as_bytes(), v.as_bytes()))
    };
    let kinds = [
        Credential::Cookie(input.name.clone()),
        Credential::Query(input.name.clone()),
        Credential::Bearer,
        Credential::Protocol {
            prefix: input.prefix.clone(),
        },
    ];
    for c in &kinds {
        let Some(v) = c.extract(&h, query) else {
            continue;
        };
        assert!(!v.is_empty() && v.len() <= MAX_CREDENTIAL_LEN);
        // What is found is in what was sent.
        match c {
            Credential::Cookie(_) => assert!(found_in("cookie", &v)),
            Credential::Bearer => assert!(found_in("authorization", &v)),
            Credential::Protocol { prefix } => {
                assert!(found_in("sec-websocket-protocol", &format!("{prefix}{v}")));
            }
            Credential::Query(_) => {
                if !input.query.contains(['%', '+']) {
                    assert!(input.query.contains(v.as_str()));
                }
            }
        }
    }

    // What a browser or client sends is found again.
    let value = &input.value;
    if value.is_empty() || value.len() > MAX_CREDENTIAL_LEN {
        return;
    }
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b'=' | b'"' | b','))
    };
    if plain(&input.name) && input.name != "other" && plain(value) {
        let cookie = format!("other=1; {}={value}; {}=later", input.name, input.name);
        let h = headers([("cookie", cookie.as_bytes())]);
        let c = Credential::Cookie(input.name.clone());
        assert_eq!(c.extract(&h, None).as_deref(), Some(value.as_str()));
    }
    if !input.name.is_empty() {
        let query = format!(
            "x=1&{}={}",
            utf8_percent_encode(&input.name, NON_ALPHANUMERIC),
            utf8_percent_encode(value, NON_ALPHANUMERIC)
        );
        let c = Credential::Query(input.name.clone());
        let got = c.extract(&Default::default(), Some(&query));
        if input.name != "x" {
            assert_eq!(got.as_deref(), Some(value.as_str()), "{query}");
        }
    }
    if plain(&input.prefix) && plain(value) {
        let p = format!("chat, {}{value}", input.prefix);
        let h = headers([("sec-websocket-protocol", p.as_bytes())]);
        let c = Credential::Protocol {
            prefix: input.prefix.clone(),
        };
        // `chat` itself may start with the prefix.
        if !"chat".starts_with(input.prefix.as_str()) {
            assert_eq!(c.extract(&h, None).as_deref(), Some(value.as_str()));
        }
        let b = format!("Bearer {value}");
        let h = headers([("authorization", b.as_bytes())]);
        assert_eq!(
            Credential::Bearer.extract(&h, None).as_deref(),
            Some(value.as_str())
        );
    }
});
