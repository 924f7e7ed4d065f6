//! Property tests: normalisation is canonical and idempotent, prefixing is
//! idempotent, and every mounted route is reached by its own paths only.

use proptest::prelude::*;
use ws_routing::{
    RouteError, RouteTableBuilder, is_under, join, normalize_prefix, normalize_route,
};

/// The canonical shape: `""`/`"/"` or `/seg(/seg)*`, no empty segment.
fn is_canonical(path: &str, root: &str) -> bool {
    path == root
        || (path.starts_with('/')
            && !path.ends_with('/')
            && path[1..]
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."))
}

/// Arbitrary text, mostly valid: path pieces, parameters and some refused
/// characters, concatenated.
fn tokens() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        8 => "[a-z0-9_.~-]{1,3}",
        8 => Just("/".to_owned()),
        2 => Just("//".to_owned()),
        1 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
        2 => "\\{[a-z]{1,2}\\}",
        1 => "\\{\\*[a-z]{1,2}\\}",
        1 => "[{}*?#% :\t\u{e9}<]",
    ];
    prop::collection::vec(token, 0..8).prop_map(|t| t.concat())
}

/// Static segments: never contain `~`, which the sample values use.
fn static_segment() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,3}".prop_filter("not a dot segment", |s| s != "." && s != "..")
}

/// Runs of slashes between and around segments.
fn slashes() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("/"), Just("/"), Just("//"), Just("")]
}

/// A messy but valid spelling of a prefix, and its expected normal form.
fn prefix() -> impl Strategy<Value = (String, String)> {
    prop::collection::vec((slashes(), static_segment()), 0..3).prop_flat_map(|segs| {
        let normal: String = segs.iter().map(|(_, s)| format!("/{s}")).collect();
        slashes().prop_map(move |tail| {
            let mut messy = String::new();
            for (i, (sep, s)) in segs.iter().enumerate() {
                messy.push_str(if i == 0 { sep } else { "/" });
                messy.push_str(s);
            }
            messy.push_str(tail);
            (messy, normal.clone())
        })
    })
}

#[derive(Debug, Clone)]
enum Seg {
    Static(String),
    Param,
    Prefixed(String),
    Suffixed(String),
}

fn seg() -> impl Strategy<Value = Seg> {
    prop_oneof![
        3 => static_segment().prop_map(Seg::Static),
        2 => Just(Seg::Param),
        1 => "[a-z]{1,2}".prop_map(Seg::Prefixed),
        1 => "[a-z]{1,2}".prop_map(Seg::Suffixed),
    ]
}

/// A route shape: segments, whether it ends in a catch-all, whether sample
/// values are percent-encoded, how it is spelled.
#[derive(Debug, Clone)]
struct Shape {
    segs: Vec<Seg>,
    catch_all: bool,
    encoded: bool,
    spelling: Spelling,
}

#[derive(Debug, Clone, Copy)]
enum Spelling {
    Plain,
    Messy,
    AlreadyPrefixed,
    Default,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        prop::collection::vec(seg(), 0..4),
        prop::bool::weighted(0.2),
        any::<bool>(),
        prop_oneof![
            Just(Spelling::Plain),
            Just(Spelling::Messy),
            Just(Spelling::AlreadyPrefixed),
            Just(Spelling::Default),
        ],
    )
        .prop_map(|(segs, catch_all, encoded, spelling)| Shape {
            segs,
            catch_all,
            encoded,
            spelling,
        })
}

/// A route built from a shape: its canonical pattern, a request path for it
/// and the parameters that path must yield.
struct Built {
    pattern: String,
    sample: String,
    params: Vec<(String, String)>,
}

fn build(shape: &Shape, id: usize) -> Built {
    let mut pattern = String::new();
    let mut sample = String::new();
    let mut params = Vec::new();
    let value = |n: usize, params: &mut Vec<(String, String)>, name: String| {
        // `~` never appears in static text, so a sample value cannot be
        // mistaken for another route's static text.
        let (raw, decoded) = if shape.encoded {
            (format!("~{id}x{n}%C3%A9%2F~"), format!("~{id}x{n}é/~"))
        } else {
            (format!("~{id}x{n}~"), format!("~{id}x{n}~"))
        };
        params.push((name, decoded));
        raw
    };
    for (n, seg) in shape.segs.iter().enumerate() {
        let name = format!("p{n}");
        let (pat, path) = match seg {
            Seg::Static(s) => (s.clone(), s.clone()),
            Seg::Param => (format!("{{{name}}}"), value(n, &mut params, name)),
            Seg::Prefixed(s) => (
                format!("{s}{{{name}}}"),
                format!("{s}{}", value(n, &mut params, name)),
            ),
            Seg::Suffixed(s) => (
                format!("{{{name}}}{s}"),
                format!("{}{s}", value(n, &mut params, name)),
            ),
        };
        pattern.push('/');
        pattern.push_str(&pat);
        sample.push('/');
        sample.push_str(&path);
    }
    if shape.catch_all {
        let raw = value(99, &mut params, "rest".to_owned());
        pattern.push_str("/{*rest}");
        sample.push('/');
        sample.push_str(&raw);
        sample.push_str("/more");
        let last = params.last_mut().expect("just pushed");
        last.1.push_str("/more");
    }
    if pattern.is_empty() {
        pattern.push('/');
        sample.push('/');
    }
    Built {
        pattern,
        sample,
        params,
    }
}

proptest! {
    #[test]
    fn prefix_normalisation_is_canonical_and_idempotent(s in tokens()) {
        if let Ok(p) = normalize_prefix(&s) {
            prop_assert!(is_canonical(&p, ""), "{s:?} -> {p:?}");
            prop_assert_eq!(normalize_prefix(&p), Ok(p.clone()));
        }
    }

    #[test]
    fn valid_prefixes_normalise_as_expected((messy, normal) in prefix()) {
        prop_assert_eq!(normalize_prefix(&messy), Ok(normal.clone()));
        prop_assert_eq!(normalize_prefix(&normal), Ok(normal));
    }

    #[test]
    fn route_normalisation_is_canonical_and_idempotent(s in tokens()) {
        if let Ok(r) = normalize_route(&s) {
            prop_assert!(is_canonical(&r, "/"), "{s:?} -> {r:?}");
            prop_assert_eq!(normalize_route(&r), Ok(r.clone()));
        }
    }

    #[test]
    fn generated_routes_are_valid_and_canonical(shape in shape()) {
        let built = build(&shape, 0);
        prop_assert_eq!(normalize_route(&built.pattern), Ok(built.pattern.clone()));
        let messy = format!("//{}//", built.pattern.replace('/', "//"));
        prop_assert_eq!(normalize_route(&messy), Ok(built.pattern.clone()));
    }

    #[test]
    fn prefixing_twice_is_prefixing_once(
        (_, p) in prefix(),
        shape in shape(),
        under in any::<bool>(),
    ) {
        let r = build(&shape, 0).pattern;
        // Also routes that already lie under the prefix.
        let r = if under { join(&p, &r) } else { r };
        let once = join(&p, &r);
        prop_assert_eq!(join(&p, &once), once.clone());
        prop_assert!(is_under(&p, &once));
        prop_assert_eq!(normalize_route(&once), Ok(once.clone()));
        if is_under(&p, &r) {
            prop_assert_eq!(once, r);
        }
    }

    #[test]
    fn every_route_reaches_its_own_component(
        (messy_prefix, p) in prefix(),
        shapes in prop::collection::vec(shape(), 1..8),
    ) {
        let mut builder = RouteTableBuilder::new(&messy_prefix).expect("valid prefix");
        let mut mounted = Vec::new();
        for (id, shape) in shapes.iter().enumerate() {
            let built = build(shape, id);
            let component = format!("m{id}::Component{id}");
            let declared = match shape.spelling {
                Spelling::Plain => Some(built.pattern.clone()),
                Spelling::Messy => Some(format!("{}//", built.pattern.trim_start_matches('/'))),
                Spelling::AlreadyPrefixed => Some(join(&p, &built.pattern)),
                Spelling::Default => None,
            };
            let (full, sample, params) = match &declared {
                Some(_) => (join(&p, &built.pattern), join(&p, &built.sample), built.params),
                None => {
                    let path = join(&p, &ws_core::default_route(&component));
                    (path.clone(), path, Vec::new())
                }
            };
            match builder.add(declared.as_deref(), &component, id) {
                Ok(_) => mounted.push((component, full, sample, params)),
                Err(RouteError::Conflict { component: c, existing_component, .. }) => {
                    prop_assert_eq!(c, component);
                    prop_assert!(
                        mounted.iter().any(|(m, ..)| *m == existing_component),
                        "conflict names an unmounted component {}", existing_component
                    );
                }
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }

        let table = builder.build();
        prop_assert_eq!(table.prefix(), p.as_str());
        prop_assert_eq!(table.len(), mounted.len());
        for (route, (component, full, ..)) in table.routes().iter().zip(&mounted) {
            prop_assert_eq!(route.component(), component.as_str());
            prop_assert_eq!(route.path(), full.as_str());
            prop_assert!(is_under(&p, route.path()));
        }
        for (component, _, sample, params) in &mounted {
            let mut paths = vec![sample.clone(), format!("{sample}?q=1")];
            if sample != "/" {
                paths.push(format!("{sample}/"));
            }
            for path in paths {
                let m = table.at(&path);
                prop_assert!(m.is_some(), "{} does not match {}", path, component);
                let m = m.expect("checked");
                prop_assert_eq!(m.route.component(), component.as_str(), "path {}", path);
                prop_assert_eq!(&m.params, params, "path {}", path);
            }
        }
    }
}
