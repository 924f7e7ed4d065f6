//! The broker's bus envelope (binary, from Redis pub/sub: other servers'
//! publications) and the connection addresses of the cluster.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ws_broker::__fuzz::decode;
use ws_broker::{ConnectionAddr, ServerId};

/// Bits of the flags byte (offset 25) with a meaning: the target kind and
/// the binary flag.
const USED_FLAGS: u8 = 0x83;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = decode(Bytes::copy_from_slice(data)) {
        // Written again: the size the hub reserves, the same envelope, and
        // the same bytes but for flag bits without a meaning.
        let out = env.encode().expect("a decoded envelope encodes");
        assert_eq!(out.len(), env.encoded_len());
        assert_eq!(decode(Bytes::from(out.clone())).as_ref(), Ok(&env));
        let mut expected = data.to_vec();
        expected[25] &= USED_FLAGS;
        assert_eq!(out, expected);
        assert_eq!(env.msg().len(), data.len() - (out.len() - env.msg().len()));
    }

    // Addresses print as they parse.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(id) = text.parse::<ServerId>() {
            assert_eq!(id.to_string().parse::<ServerId>(), Ok(id));
            assert!(id.to_string().eq_ignore_ascii_case(text));
        }
        if let Ok(addr) = text.parse::<ConnectionAddr>() {
            assert_eq!(addr.to_string().parse::<ConnectionAddr>(), Ok(addr));
        }
    }
});
