//! The bench's executables, built in release.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::util;

/// The baseline's own workspace, relative to the repository root.
pub(crate) const BASELINE_MANIFEST: &str = "crates/ws-bench-baseline/Cargo.toml";

/// The second load generator's own workspace (on crates.io's
/// tokio-websockets), relative to the repository root.
pub(crate) const PEER_MANIFEST: &str = "crates/ws-bench-peer/Cargo.toml";

/// The built executables.
#[derive(Debug)]
pub(crate) struct Bins {
    pub(crate) cli: PathBuf,
    pub(crate) bench: PathBuf,
    pub(crate) peer: PathBuf,
    pub(crate) baseline: PathBuf,
}

/// Builds the load generators, the baseline and (unless `provider` names a
/// prebuilt one) `ws-cli`, in release.
pub(crate) fn build(provider: Option<PathBuf>) -> Result<Bins> {
    // The baseline is a workspace of its own (on the unpatched tungstenite,
    // see its Cargo.toml), built into the same target directory.
    let target_dir = util::target_dir();
    let baseline = util::cargo_build_bin(
        &[
            "build",
            "--release",
            "--manifest-path",
            BASELINE_MANIFEST,
            "--target-dir",
            &target_dir.to_string_lossy(),
        ],
        "ws-bench-baseline",
    )?;
    let peer = util::cargo_build_bin(
        &[
            "build",
            "--release",
            "--manifest-path",
            PEER_MANIFEST,
            "--target-dir",
            &target_dir.to_string_lossy(),
        ],
        "ws-bench-peer",
    )?;
    let mut args = vec!["build", "--release", "-p", "ws-bench"];
    if provider.is_none() {
        args.extend(["-p", "ws-cli"]);
    }
    args.push("--message-format=json-render-diagnostics");
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut child = util::cargo_cmd()
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo build")?;
    let stdout = child.stdout.take().context("cargo's stdout is not piped")?;
    let mut exes: BTreeMap<String, PathBuf> = BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && let (Some(name), Some(exe)) =
                (msg["target"]["name"].as_str(), msg["executable"].as_str())
        {
            exes.insert(name.to_owned(), PathBuf::from(exe));
        }
    }
    let status = child.wait().context("cannot wait for cargo")?;
    if !status.success() {
        bail!("cargo build --release failed ({status})");
    }
    let mut take = |name: &str| {
        exes.remove(name)
            .with_context(|| format!("cargo reported no executable `{name}`"))
    };
    Ok(Bins {
        cli: match provider {
            Some(p) => p,
            None => take("ws-cli")?,
        },
        bench: take("ws-bench")?,
        peer,
        baseline,
    })
}
