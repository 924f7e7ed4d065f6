//! Project automation, run as `cargo xtask <command>`:
//!
//! - `ci`: everything CI checks (format, lints, the test suite, licences and
//!   sources, the end-to-end scenarios and the Autobahn conformance run).
//! - `autobahn`: the Autobahn|Testsuite fuzzing client against the release
//!   binary; fails on any FAILED case.

mod autobahn;
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
        bail!("usage: cargo xtask <ci|autobahn> [options]");
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "ci" => ci(rest),
        "autobahn" => autobahn::run(rest),
        other => bail!("unknown command `{other}`; expected ci or autobahn"),
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
    util::cargo(&["test", "--workspace"])?;
    util::cargo(&["deny", "check", "bans", "licenses", "sources"])?;
    autobahn::run(&[])?;
    Ok(())
}
