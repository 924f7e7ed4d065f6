//! Project automation, run as `cargo xtask <command>`:
//!
//! - `ci`: everything CI checks (format, lints, the test suite, licences and
//!   sources, the end-to-end scenarios, the Autobahn conformance run and
//!   every fuzz target for a few seconds).
//! - `e2e`: the release binary driven as an operator would (start, list,
//!   routes, clients in Rust and Python, stop, stale entries, bad configs).
//! - `autobahn`: the Autobahn|Testsuite fuzzing client against the release
//!   binary, over `ws://` (or `wss://` with the full pipeline, `--tls`);
//!   fails on any FAILED case. `ci` runs both.
//! - `bench`: ws-provider against a tuned tokio-tungstenite baseline in
//!   interleaved rounds (`--quick`, `--json`), a size sweep and a second
//!   load generator; see `bench/mod.rs`.
//! - `fuzz`: every cargo-fuzz target in `fuzz/` on the nightly toolchain,
//!   from its committed seeds (`--seconds N` each, default 60; `--target
//!   NAME` for one); fails on any crash; see `fuzz.rs`.

mod autobahn;
mod bench;
mod e2e;
mod fuzz;
mod util;

use std::process::ExitCode;

use anyhow::{Result, bail};

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
        bail!("usage: cargo xtask <ci|e2e|autobahn|bench|fuzz> [options]");
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "ci" => ci(rest),
        "e2e" => e2e::run(rest),
        "autobahn" => autobahn::run(rest),
        "bench" => bench::run(rest),
        "fuzz" => fuzz::run(rest),
        other => bail!("unknown command `{other}`; expected ci, e2e, autobahn, bench or fuzz"),
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
    // The bench baseline and the second load generator are workspaces of
    // their own (on the unpatched crates.io releases): checked the same
    // way, with the same licence rules.
    let target_dir = util::target_dir();
    for manifest in [bench::BASELINE_MANIFEST, bench::PEER_MANIFEST] {
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
    // The fuzz crate is a workspace of its own too: same format, lints and
    // licence rules, then every target for a few seconds.
    let fuzz = "fuzz/Cargo.toml";
    util::cargo(&["fmt", "--manifest-path", fuzz, "--", "--check"])?;
    util::cargo(&[
        "clippy",
        "--manifest-path",
        fuzz,
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
        fuzz,
        // cargo-deny 0.20: --config is a global option, before the command.
        "--config",
        "deny.toml",
        "check",
        "bans",
        "licenses",
        "sources",
    ])?;
    e2e::run(&[])?;
    autobahn::run(&[])?;
    autobahn::run(&["--tls".to_owned()])?;
    fuzz::run(&["--seconds".to_owned(), fuzz::CI_SECONDS.to_string()])?;
    Ok(())
}
