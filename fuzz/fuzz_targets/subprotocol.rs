//! `Sec-WebSocket-Protocol`: the offered list and the server's choice,
//! which is never a credential entry.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use ws_provider_fuzz::headers;
use ws_runtime::__fuzz as rt;

#[derive(Arbitrary, Debug)]
struct Input {
    supported: Vec<String>,
    credential_prefix: Option<String>,
    offered: Vec<Vec<u8>>,
}

fuzz_target!(|input: Input| {
    let h = headers(
        input
            .offered
            .iter()
            .map(|v| ("sec-websocket-protocol", v.as_slice())),
    );
    let offered = rt::offered_protocols(&h);
    for o in &offered {
        assert!(!o.is_empty() && !o.contains(','));
        assert_eq!(o.trim(), *o);
    }
    let prefix = input.credential_prefix.as_deref();
    let chosen = rt::choose_protocol(&input.supported, &h, prefix);
    match chosen {
        Some(p) => {
            assert!(offered.contains(&p));
            assert!(prefix.is_none_or(|c| !p.starts_with(c)));
            // The server's preference: nothing it lists earlier was offered.
            let first = input
                .supported
                .iter()
                .position(|s| s == p)
                .expect("chosen among the supported");
            for s in &input.supported[..first] {
                assert!(
                    !offered.contains(&s.as_str()) || prefix.is_some_and(|c| s.starts_with(c)),
                    "{s:?} was offered and preferred"
                );
            }
        }
        None => {
            for s in &input.supported {
                assert!(!offered.contains(&s.as_str()) || prefix.is_some_and(|c| s.starts_with(c)));
            }
        }
    }
});
