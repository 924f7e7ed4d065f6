//! Project automation, run as `cargo xtask <command>`:
//!
//! - `ci`: everything CI checks (format, lints, the test suite, licences and
//!   sources, the end-to-end scenarios, the Autobahn conformance run and
//!   every fuzz target for a few seconds).
//! - `e2e`: the release binary driven as an operator would (start, list,
//!   routes, clients in Rust and Python, stop, stale entries, bad configs),
//!   behind a real nginx and Apache httpd (the `deploy/` files), and under
//!   a systemd notify socket.
//! - `autobahn`: the Autobahn|Testsuite fuzzing client against the release
//!   binary, over `ws://` (or `wss://` with the full pipeline, `--tls`);
//!   fails on any FAILED case. `ci` runs both.
//! - `bench`: ws-provider against a tuned tokio-tungstenite baseline in
//!   interleaved rounds (`--quick`, `--json`), a size sweep and a second
//!   load generator; see `bench/mod.rs`.
//! - `external-types`: `cargo-check-external-types` on ws-core (its public
//!   API names no other crate's types but those its `Cargo.toml` allows), on
//!   the nightly the tool reads; `ci` runs it.
//! - `fuzz`: every cargo-fuzz target in `fuzz/` on the nightly toolchain,
//!   from its committed seeds (`--seconds N` each, default 60; `--target
//!   NAME` for one); fails on any crash; see `fuzz.rs`.

mod autobahn;
mod bench;
mod e2e;
mod fuzz;
mod util;

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        bail!("usage: cargo xtask <ci|e2e|autobahn|bench|fuzz|external-types> [options]");
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "ci" => ci(rest),
        "e2e" => e2e::run(rest),
        "autobahn" => autobahn::run(rest),
        "bench" => bench::run(rest),
        "fuzz" => fuzz::run(rest),
        "external-types" => match rest.first() {
            Some(a) => bail!("`external-types` takes no arguments, got `{a}`"),
            None => external_types(),
        },
        other => bail!(
            "unknown command `{other}`; expected ci, e2e, autobahn, bench, fuzz or external-types"
        ),
    }
}

/// Everything CI checks, in the order that fails fastest.
fn ci(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("`ci` takes no arguments, got `{a}`");
    }
    util::cargo(&["fmt", "--all", "--", "--check"])?;
    util::cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // The bench baseline and the second load generator (on the unpatched
    // crates.io releases) and the fuzz crate (nightly flags) are
    // workspaces of their own: checked the same way, with the same licence
    // rules.
    let target_dir = util::target_dir();
    for manifest in [
        bench::BASELINE_MANIFEST,
        bench::PEER_MANIFEST,
        "fuzz/Cargo.toml",
    ] {
        util::cargo(&["fmt", "--manifest-path", manifest, "--", "--check"])?;
        util::cargo(&[
            "clippy",
            "--manifest-path",
            manifest,
            "--target-dir",
            &target_dir.to_string_lossy(),
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])?;
        util::cargo(&[
            "deny",
            "--manifest-path",
            manifest,
            // cargo-deny 0.20: --config is a global option, before the command.
            "--config",
            "deny.toml",
            "check",
            "bans",
            "licenses",
            "sources",
        ])?;
    }
    // The workspace tests drive the debug binary with a Python client too.
    let python = e2e::python_venv(&util::root().join("target/e2e-venv"))?;
    let status = util::cargo_cmd()
        .args(["test", "--workspace"])
        .env("WS_PYTHON", &python)
        .status()?;
    if !status.success() {
        bail!("cargo test --workspace failed ({status})");
    }
    util::cargo(&["deny", "check", "bans", "licenses", "sources"])?;
    external_types()?;
    e2e::run(&[])?;
    autobahn::run(&[])?;
    autobahn::run(&["--tls".to_owned()])?;
    fuzz::run(&[
        "--seconds".to_owned(),
        fuzz::CI_SECONDS.to_string(),
        "--sanitizer".to_owned(),
        "none".to_owned(),
    ])?;
    Ok(())
}

/// The nightly whose rustdoc JSON cargo-check-external-types reads (the
/// tool follows the unstable format: a newer nightly can break it; bump
/// both together, and `.ci/run`).
const EXTERNAL_TYPES_NIGHTLY: &str = "nightly-2026-05-20";
/// `rustc -vV`'s commit date of [`EXTERNAL_TYPES_NIGHTLY`]: a toolchain
/// called just `nightly` that is this build will do.
const EXTERNAL_TYPES_COMMIT_DATE: &str = "commit-date: 2026-05-19";
/// The tool's version, as `.ci/run` installs it.
const EXTERNAL_TYPES_VERSION: &str = "0.5.0";

/// `cargo check-external-types` on ws-core: its public API exposes no
/// external type but those `[package.metadata.cargo_check_external_types]`
/// allows (bytes, http, async-trait, serde_json).
fn external_types() -> Result<()> {
    let rustc_vv = |toolchain: &str| {
        std::process::Command::new("rustup")
            .args(["run", toolchain, "rustc", "-vV"])
            .env_remove("RUSTUP_TOOLCHAIN")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let toolchain = if rustc_vv(EXTERNAL_TYPES_NIGHTLY).is_some() {
        EXTERNAL_TYPES_NIGHTLY
    } else if rustc_vv("nightly").is_some_and(|v| v.contains(EXTERNAL_TYPES_COMMIT_DATE)) {
        "nightly"
    } else {
        bail!(
            "cargo-check-external-types {EXTERNAL_TYPES_VERSION} needs {EXTERNAL_TYPES_NIGHTLY}: \
             rustup toolchain install {EXTERNAL_TYPES_NIGHTLY} --profile minimal (.ci/run does)"
        );
    };
    let manifest = util::root().join("crates/ws-core/Cargo.toml");
    eprintln!("xtask: cargo +{toolchain} check-external-types (ws-core)");
    let mut cmd = std::process::Command::new("rustup");
    cmd.args([
        "run",
        toolchain,
        "cargo",
        "check-external-types",
        "--manifest-path",
    ])
    .arg(&manifest)
    .current_dir(util::root())
    .env_remove("RUSTUP_TOOLCHAIN");
    // The pinned cargo's business only (see `fuzz::nightly_cargo`).
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k == "CARGO" || (k.starts_with("CARGO_") && k != "CARGO_HOME") {
            cmd.env_remove(&key);
        }
    }
    let status = cmd
        .status()
        .context("cannot run cargo check-external-types (.ci/run installs it)")?;
    if !status.success() {
        bail!(
            "cargo check-external-types failed ({status}): ws-core's public API names an \
             external type its Cargo.toml does not allow, or the tool is missing \
             (cargo install --locked cargo-check-external-types --version {EXTERNAL_TYPES_VERSION})"
        );
    }
    Ok(())
}
