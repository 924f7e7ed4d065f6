//! Route normalisation (`route_prefix`, component routes, `[[route]]`
//! paths) and request path matching.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use ws_routing::{
    RouteError, RouteTableBuilder, is_under, join, normalize_prefix, normalize_route,
};

#[derive(Arbitrary, Debug)]
struct Input {
    prefix: String,
    routes: Vec<String>,
    paths: Vec<String>,
    /// Parameter values, cycled through.
    values: Vec<String>,
    encode: bool,
}

fn canonical(p: &str) -> bool {
    !p.contains("//") && (p == "/" || !p.ends_with('/'))
}

/// `pattern` with each `{name}` replaced by a value (no `/`) and a
/// catch-all `{*name}` by one that may hold `/`, from `values` in order;
/// percent-encoded when `encode`, else alphanumeric only. Returns the path
/// and the values as matching must find them.
fn instantiate(
    pattern: &str,
    values: &mut impl Iterator<Item = String>,
    encode: bool,
) -> (String, Vec<String>) {
    let mut path = String::new();
    let mut given = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        path.push_str(&rest[..open]);
        let close = open + rest[open..].find('}').expect("balanced");
        let catch_all = rest[open + 1..].starts_with('*');
        let raw = values.next().unwrap_or_default();
        let raw = if encode {
            raw
        } else {
            raw.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '/')
                .collect()
        };
        // Non-empty segments; one only unless a catch-all.
        let mut segments: Vec<&str> = raw.split('/').filter(|s| !s.is_empty()).collect();
        if !catch_all {
            segments.truncate(1);
        }
        if segments.is_empty() {
            segments.push("v");
        }
        given.push(segments.join("/"));
        let rendered: Vec<String> = segments
            .iter()
            .map(|s| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string())
            .collect();
        path.push_str(&rendered.join("/"));
        rest = &rest[close + 1..];
    }
    path.push_str(rest);
    (path, given)
}

fuzz_target!(|input: Input| {
    let prefix = match normalize_prefix(&input.prefix) {
        Ok(p) => {
            assert_eq!(normalize_prefix(&p).as_ref(), Ok(&p), "not idempotent");
            assert!(
                p.is_empty() || (p.starts_with('/') && canonical(&p)),
                "{p:?}"
            );
            p
        }
        Err(RouteError::InvalidPrefix { prefix, reason }) => {
            assert_eq!(prefix, input.prefix);
            assert!(!reason.is_empty());
            return;
        }
        Err(e) => panic!("unexpected error {e:?}"),
    };
    let mut builder = RouteTableBuilder::new(&prefix).expect("a normalised prefix");
    let mut cycle = input.values.iter().cloned().cycle();
    for (i, route) in input.routes.iter().enumerate() {
        let normalized = match normalize_route(route) {
            Ok(n) => n,
            Err(why) => {
                assert!(!why.is_empty());
                assert!(matches!(
                    builder.add(Some(route), "fuzz::C", i),
                    Err(RouteError::InvalidRoute { .. })
                ));
                continue;
            }
        };
        assert_eq!(normalize_route(&normalized).as_ref(), Ok(&normalized));
        assert!(
            normalized.starts_with('/') && canonical(&normalized),
            "{normalized:?}"
        );
        let full = join(&prefix, &normalized);
        assert_eq!(join(&prefix, &full), full, "join not idempotent");
        assert!(is_under(&prefix, &full));

        // A route alone in a table matches every path it describes, with
        // the parameters taken from the path.
        let mut alone = RouteTableBuilder::new(&prefix).expect("prefix");
        alone
            .add(Some(route), "fuzz::C", i)
            .expect("a normalised route is accepted by matchit");
        let alone = alone.build();
        let (path, given) = instantiate(&full, &mut cycle, input.encode);
        let m = alone
            .at(&path)
            .unwrap_or_else(|| panic!("{path:?} does not match {full:?}"));
        let got: Vec<&str> = m.params.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(got, given, "{path:?} against {full:?}");
        if path != "/" {
            assert!(alone.at(&format!("{path}/")).is_some(), "trailing slash");
            assert!(alone.at(&format!("{path}?q=1#f")).is_some(), "query");
        }

        match builder.add(Some(route), "fuzz::C", i) {
            Ok(_) | Err(RouteError::Conflict { .. }) => {}
            Err(e) => panic!("a normalised route refused: {e:?}"),
        }
    }
    let table = builder.build();
    for path in &input.paths {
        let Some(m) = table.at(path) else { continue };
        let pattern = m.route.path();
        assert!(table.routes().iter().any(|r| r.path() == pattern));
        assert_eq!(m.params.len(), pattern.matches('{').count());
        for (name, _) in &m.params {
            assert!(
                pattern.contains(&format!("{{{name}}}"))
                    || pattern.contains(&format!("{{*{name}}}"))
            );
        }
    }
});
