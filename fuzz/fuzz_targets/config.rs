//! The configuration file (TOML): parsing, every check `ws-cli` runs on it,
//! and `check-config`'s output, which must load again as the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_cli::config::{Effective, Source, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = match parse(text) {
        Ok(f) => f,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let eff = Effective {
        file: file.clone(),
        source: Source::File("fuzz.toml".into()),
    };
    // Every refusal names the file.
    let named = |e: anyhow::Error| {
        let e = format!("{e:#}");
        assert!(e.contains("`fuzz.toml`"), "{e}");
    };
    if let Err(e) = eff.server_config() {
        named(e);
    }
    if let Err(e) = eff.host_ip() {
        named(e);
    }
    if let Err(e) = eff.admin() {
        named(e);
    }

    // What `check-config` prints loads again, as the same configuration
    // (secrets print redacted: then as the same text).
    let shown = toml::to_string_pretty(&file).expect("a loaded configuration prints");
    let again =
        parse(&shown).unwrap_or_else(|e| panic!("printed config does not load: {e}\n{shown}"));
    let shown_again = toml::to_string_pretty(&again).expect("prints");
    assert_eq!(shown, shown_again);
    if file.aspect.is_empty() {
        assert_eq!(again, file, "{shown}");
    }
});
