//! Architecture invariants, enforced by a test rather than by review:
//! the direction of dependencies between the workspace crates (the runtime
//! does not depend on `ws-auth`, the CLI's library pulls no demo
//! component), the plug-in boundary of `ws-core`, and a `//!` doc comment
//! at the top of every file.

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
