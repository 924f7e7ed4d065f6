//! Architecture invariants, enforced by a test rather than by review:
//! the direction of dependencies between the workspace crates (the runtime
//! does not depend on `ws-auth`, the CLI's library pulls no demo
//! component), the plug-in boundary of `ws-core`, a `//!` doc comment at
//! the top of every file, and no file over 800 lines of code without a note
//! why.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Package name -> names of its normal (non-dev, non-build) dependencies.
fn normal_deps(meta: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let deps = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| names[d["pkg"].as_str().unwrap()].to_owned())
                .collect();
            (names[n["id"].as_str().unwrap()].to_owned(), deps)
        })
        .collect()
}

fn transitive(deps: &BTreeMap<String, BTreeSet<String>>, start: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![start.to_owned()];
    while let Some(p) = todo.pop() {
        for d in deps.get(&p).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

const WORKSPACE: &[&str] = &[
    "ws-core",
    "ws-config",
    "ws-routing",
    "ws-ratelimit",
    "ws-auth",
    "ws-broker",
    "ws-bench",
    "ws-runtime",
    "ws-cli",
    "demo-echo",
    "greeter",
    "ws-tests",
    "xtask",
];

#[test]
fn dependency_direction() {
    let deps = normal_deps(&metadata());
    let local = |p: &str| -> BTreeSet<String> {
        transitive(&deps, p)
            .into_iter()
            .filter(|d| WORKSPACE.contains(&d.as_str()))
            .collect()
    };
    // Component crates plug in through ws-core alone.
    for plugin in ["demo-echo", "greeter"] {
        assert_eq!(
            local(plugin),
            BTreeSet::from(["ws-core".to_owned()]),
            "{plugin}"
        );
    }
    // ws-core carries no protocol library, HTTP server, matcher or async
    // runtime (its queue and waker are its own).
    let core = transitive(&deps, "ws-core");
    for banned in [
        "tungstenite",
        "tokio-tungstenite",
        "hyper",
        "matchit",
        "tokio",
        "ws-runtime",
    ] {
        assert!(!core.contains(banned), "ws-core depends on {banned}");
    }
    assert!(
        local("ws-core").is_empty(),
        "ws-core depends on a workspace crate"
    );
    // The configuration's shared value forms are a leaf.
    assert!(
        local("ws-config").is_empty(),
        "ws-config depends on a workspace crate"
    );
    // The logic crates know nothing of the runtime or the CLI.
    for logic in ["ws-routing", "ws-ratelimit", "ws-broker"] {
        if !deps.contains_key(logic) {
            continue;
        }
        let l = local(logic);
        for banned in ["ws-runtime", "ws-cli"] {
            assert!(!l.contains(banned), "{logic} depends on {banned}");
        }
    }
    // Authentication plugs into the runtime's seam (`Authenticate`): ws-auth
    // may depend on ws-runtime, never the other way round, so the runtime
    // carries no session store, token library or HTTP client.
    assert!(
        !local("ws-auth").contains("ws-cli"),
        "ws-auth depends on ws-cli"
    );
    let runtime = transitive(&deps, "ws-runtime");
    for banned in [
        "ws-auth",
        "ws-cli",
        "sqlx",
        "redis",
        "jsonwebtoken",
        "hyper-rustls",
    ] {
        assert!(!runtime.contains(banned), "ws-runtime depends on {banned}");
    }
}

#[test]
fn the_cli_library_pulls_no_demo_component() {
    // demo-echo is only for the stock `ws-cli` binary: an optional
    // dependency behind the `demo` feature, which an application's own
    // binary turns off.
    let meta = metadata();
    let cli = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ws-cli")
        .expect("ws-cli is a workspace package");
    for dep in cli["dependencies"].as_array().unwrap() {
        if dep["name"] == "demo-echo" && dep["kind"].is_null() {
            assert_eq!(
                dep["optional"], true,
                "demo-echo must be optional in ws-cli"
            );
        }
    }
    assert_eq!(
        cli["features"]["demo"],
        serde_json::json!(["dep:demo-echo"]),
        "ws-cli's `demo` feature"
    );
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "fuzz" | "node_modules")
                && !name.starts_with('.')
            {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_file_starts_with_a_doc_comment() {
    let mut files = Vec::new();
    for dir in ["crates", "tests", "xtask"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` comment: {missing:?}"
    );
}

/// The names a `pub use` or `pub mod` at the top of `src` makes public
/// (`a::{B, c as D}` gives `B` and `D`; `self` and globs are refused).
fn root_exports(src: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut statement = String::new();
    for line in src.lines() {
        let line = line.trim();
        if statement.is_empty() && !(line.starts_with("pub use ") || line.starts_with("pub mod ")) {
            continue;
        }
        statement.push_str(line);
        statement.push(' ');
        if !line.ends_with(';') {
            continue;
        }
        let s = std::mem::take(&mut statement);
        let s = s.trim().trim_end_matches(';');
        if let Some(m) = s.strip_prefix("pub mod ") {
            names.insert(m.trim().to_owned());
            continue;
        }
        let path = s.strip_prefix("pub use ").unwrap();
        let items: Vec<&str> = match (path.find('{'), path.rfind('}')) {
            (Some(a), Some(b)) => path[a + 1..b].split(',').collect(),
            _ => vec![path.rsplit("::").next().unwrap()],
        };
        for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
            assert!(
                !item.contains('*') && item != "self" && !item.contains('{'),
                "ws-core's root re-exports `{item}`: name each item"
            );
            let name = item.rsplit(" as ").next().unwrap();
            names.insert(name.rsplit("::").next().unwrap().to_owned());
        }
    }
    names
}

/// ws-core's root is for component authors: exactly these items. The hub
/// backend contract lives in `ws_core::hub`, the runtime's plumbing in the
/// hidden `ws_core::__runtime`; a component cannot reach what it cannot
/// safely call from the root (`cargo xtask external-types` checks the
/// external types of the same API).
#[test]
fn ws_core_root_exports_what_components_need() {
    let lib = std::fs::read_to_string(root().join("crates/ws-core/src/lib.rs")).unwrap();
    let want: BTreeSet<String> = [
        // modules: the backend contract, test drivers, the memory budget's
        // documentation, the runtime's plumbing (hidden)
        "__runtime",
        "budget",
        "hub",
        "testing",
        // writing a component
        "async_trait",
        "BoxError",
        "Component",
        "SyncComponent",
        "FnComponent",
        "component_fn",
        "default_route",
        "ServerContext",
        "Signal",
        // what a component handles
        "Connection",
        "ConnectionId",
        "HandshakeInfo",
        "HeaderMap",
        "SendError",
        "Aspects",
        "UserAspect",
        "Hub",
        "HubError",
        "Member",
        "Message",
        "Utf8Bytes",
        "Bytes",
        "CloseCode",
        "CloseFrame",
        "CloseInitiator",
        "CloseReason",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let got = root_exports(&lib);
    let extra: Vec<_> = got.difference(&want).collect();
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "ws-core's root exports {extra:?} beyond the component API, lacks {missing:?}; \
         backend items go to `hub`, runtime plumbing to `__runtime`"
    );
    // The plumbing is hidden from the documentation and named for it.
    assert!(
        lib.contains("#[doc(hidden)]\n#[path = \"runtime.rs\"]\npub mod __runtime;"),
        "`__runtime` must stay `#[doc(hidden)]`"
    );
    // Nothing a component gets from the root hands out the hub's backend
    // or replaces aspects: both are crate-private, reached through
    // `__runtime` only.
    let src = |f: &str| std::fs::read_to_string(root().join("crates/ws-core/src").join(f)).unwrap();
    assert!(src("hub.rs").contains("pub(crate) fn backend(&self)"));
    assert!(src("connection.rs").contains("pub(crate) fn set_aspect("));
    assert!(src("connection.rs").contains("pub(crate) fn open("));
    for file in ["connection.rs", "context.rs"] {
        assert!(
            !src(file).contains("backend().register")
                && !src(file).contains("backend().unregister"),
            "{file}: registering a connection with the hub is the runtime's business"
        );
    }
}

/// Every place that uses `unsafe` (the workspace denies `unsafe_code`; each
/// of these allows it where it is used, with a `SAFETY:` comment): the file
/// and how many times the keyword stands in its code. The root
/// `Cargo.toml`'s comment on `unsafe_code` describes these.
const UNSAFE: &[(&str, usize)] = &[
    // `Connection::prefetch`: a cache hint for fan-out (x86-64 only).
    ("crates/ws-core/src/connection.rs", 1),
    // `Utf8Bytes::as_str`: `from_utf8_unchecked` of text checked when made.
    ("crates/ws-core/src/message.rs", 1),
    // The memory test's counting allocator (`unsafe impl GlobalAlloc`, its
    // four methods, each passing the call on to `System`).
    ("tests/tests/memory.rs", 9),
];

/// How many times the keyword `unsafe` stands in `text`'s code (comments
/// and the `unsafe_code` lint name left out).
fn unsafe_keywords(text: &str) -> usize {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .flat_map(|code| code.split(|c: char| !(c.is_alphanumeric() || c == '_')))
        .filter(|word| *word == "unsafe")
        .count()
}

#[test]
fn unsafe_code_is_where_it_is_listed() {
    let mut files = Vec::new();
    for dir in ["crates", "tests", "xtask"] {
        rust_files(&root().join(dir), &mut files);
    }
    let this_file = root().join("tests/tests/tidy.rs");
    let found: Vec<(String, usize)> = files
        .iter()
        .filter(|f| **f != this_file)
        .filter_map(|f| {
            let n = unsafe_keywords(&std::fs::read_to_string(f).unwrap());
            let name = f.strip_prefix(root()).unwrap().display().to_string();
            (n > 0).then_some((name, n))
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let listed: Vec<(String, usize)> = UNSAFE.iter().map(|(f, n)| ((*f).to_owned(), *n)).collect();
    assert_eq!(
        found, listed,
        "`unsafe` changed: list it in UNSAFE (and the root Cargo.toml's comment), with a SAFETY comment"
    );
}

/// ws-test-support is a leaf that every crate can dev-depend on, and only
/// tests use it: no crate that ships depends on it.
#[test]
fn test_support_is_a_leaf_for_tests_only() {
    let meta = metadata();
    let members: BTreeSet<&str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            meta["workspace_members"]
                .as_array()
                .unwrap()
                .contains(&p["id"])
        })
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(members.contains("ws-test-support"), "{members:?}");
    let deps = normal_deps(&meta);
    let local: BTreeSet<String> = transitive(&deps, "ws-test-support")
        .into_iter()
        .filter(|d| members.contains(d.as_str()))
        .collect();
    assert!(local.is_empty(), "ws-test-support depends on {local:?}");
    for (package, its) in &deps {
        assert!(
            !its.contains("ws-test-support") || package == "ws-tests",
            "{package} depends on ws-test-support outside its tests"
        );
    }
}

/// Lines a file may have before its unit tests (`#[cfg(test)]`) without a
/// note in [`LONG_FILES`] saying why.
const MAX_LINES: usize = 800;

/// Files allowed to be longer than [`MAX_LINES`], each with why. An entry
/// for a file that is no longer too long fails the test: take it out.
const LONG_FILES: &[(&str, &str)] = &[(
    "xtask/src/autobahn.rs",
    "one task in four marked sections (toolchain, server, suite run, \
         results) read top to bottom; split it when it grows",
)];

/// Lines of `text` before its unit tests.
fn lines_outside_tests(text: &str) -> usize {
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .count()
}

#[test]
fn no_file_is_over_800_lines_without_a_note_why() {
    let mut files = Vec::new();
    for dir in ["crates", "xtask"] {
        rust_files(&root().join(dir), &mut files);
    }
    let mut too_long = Vec::new();
    let mut long = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(root()).unwrap();
        // Integration tests are tests; the limit is for the code.
        if rel.components().any(|c| c.as_os_str() == "tests") {
            continue;
        }
        let rel = rel.display().to_string();
        let lines = lines_outside_tests(&std::fs::read_to_string(f).unwrap());
        if lines > MAX_LINES {
            long.insert(rel.clone());
            if !LONG_FILES.iter().any(|(path, _)| *path == rel) {
                too_long.push(format!("{rel} ({lines} lines)"));
            }
        }
    }
    assert!(
        too_long.is_empty(),
        "files over {MAX_LINES} lines (unit tests not counted): split them along \
         their jobs, or say why in LONG_FILES: {too_long:?}"
    );
    for (path, _) in LONG_FILES {
        assert!(
            long.contains(*path),
            "{path} is no longer over {MAX_LINES} lines: take it out of LONG_FILES"
        );
    }
}

#[test]
fn the_session_does_not_reach_into_the_server() {
    // The server builds sessions; what both need (the registry of open
    // sessions, what a session holds) lives in a module of its own, so the
    // session module never depends on the server's.
    let session = std::fs::read_to_string(root().join("crates/ws-runtime/src/session.rs")).unwrap();
    assert!(
        !session.contains("crate::server"),
        "ws-runtime's session.rs uses the server module"
    );
}
