//! `cargo xtask e2e`: the release binary driven as an operator would.
//!
//! Builds `ws-cli` in release mode, prepares a Python virtualenv with the
//! `websockets` client (a second, foreign client implementation), then runs
//! against that binary the scenarios in `crates/ws-cli/tests/e2e.rs`, the
//! deployments of `crates/ws-cli/tests/proxy.rs` (a real nginx and a real
//! Apache httpd in front of `ws-cli start --prefix /socket.io`, configured
//! with the files in `deploy/` as they are) and the systemd readiness
//! protocol of `crates/ws-cli/tests/systemd.rs` (with the unit file checked
//! by `systemd-analyze verify`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::util;

/// The Python client's version, pinned so runs are comparable.
const WEBSOCKETS_PIN: &str = "websockets==15.0.1";

pub(crate) fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("`e2e` takes no arguments, got `{a}`");
    }
    util::cargo(&["build", "--release", "-p", "ws-cli"])?;
    let root = util::root();
    let bin = root.join("target/release/ws-cli");
    if !bin.exists() {
        bail!("release binary missing at {}", bin.display());
    }
    let python = python_venv(&root.join("target/e2e-venv"))?;
    eprintln!("xtask: e2e against {}", bin.display());
    let status = util::cargo_cmd()
        .args([
            "test",
            "-p",
            "ws-cli",
            "--test",
            "e2e",
            "--test",
            "proxy",
            "--test",
            "systemd",
            "--",
            "--test-threads",
            "2",
        ])
        .env("WS_CLI_BIN", &bin)
        .env("WS_PYTHON", &python)
        .status()
        .context("cannot run the e2e tests")?;
    if !status.success() {
        bail!("e2e scenarios failed ({status})");
    }
    Ok(())
}

/// A virtualenv with the `websockets` client; its python.
pub(crate) fn python_venv(dir: &Path) -> Result<PathBuf> {
    let python = dir.join("bin/python");
    let ready = dir.join(".ready");
    if ready.exists() && python.exists() {
        return Ok(python);
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(dir)
        .status()
        .context("python3 is needed for the e2e client (apt-get install python3 python3-venv)")?;
    if !status.success() {
        bail!("cannot create a virtualenv in {}", dir.display());
    }
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            WEBSOCKETS_PIN,
        ])
        .status()
        .context("cannot run pip")?;
    if !status.success() {
        bail!("pip install {WEBSOCKETS_PIN} failed");
    }
    std::fs::write(&ready, WEBSOCKETS_PIN)?;
    Ok(python)
}
