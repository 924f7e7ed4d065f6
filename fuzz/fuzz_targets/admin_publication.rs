//! The admin API's `POST /publish` JSON body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use ws_core::Message;
use ws_core::hub::Target;
use ws_runtime::__fuzz::parse_publication;

fuzz_target!(|data: &[u8]| {
    let (target, msg) = match parse_publication(data) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.is_empty());
            return;
        }
    };
    let body: Value = serde_json::from_slice(data).expect("an accepted body is JSON");
    let obj = body.as_object().expect("an accepted body is an object");
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("a target given as {other}"),
    };
    let targets = ["channel", "user", "connection"]
        .iter()
        .filter(|k| obj.contains_key(**k))
        .count();
    assert_eq!(targets, 1, "exactly one target");
    match &target {
        Target::Channel(c) => {
            assert_eq!(*c, text(&obj["channel"]));
            assert!(ws_core::hub::validate_channel(c).is_ok());
        }
        Target::User(u) => assert_eq!(*u, text(&obj["user"])),
        Target::Connection(id) => {
            assert_eq!(
                id.get().to_string(),
                text(&obj["connection"])
                    .parse::<u64>()
                    .expect("id")
                    .to_string()
            );
        }
        other => panic!("unexpected target {other:?}"),
    }
    // `data` is sent as text: a string as is, anything else as its JSON.
    let Message::Text(sent) = &msg else {
        panic!("a publication is sent as text");
    };
    match &obj["data"] {
        Value::String(s) => assert_eq!(sent.as_str(), s),
        // Its JSON text as serde_json writes it (a parse of that text is
        // not compared: serde_json's default float parsing may round a long
        // decimal differently, a false alarm this target once raised).
        other => assert_eq!(sent.as_str(), other.to_string()),
    }
});
