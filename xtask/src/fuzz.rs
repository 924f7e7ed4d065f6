//! `cargo xtask fuzz [--seconds N] [--target NAME] [--sanitizer address|none]`:
//! every fuzz target for `N` seconds (default 60), or only `NAME`; fails if
//! any of them crashes.
//!
//! The targets live in `fuzz/` (a cargo-fuzz crate, a workspace of its own:
//! libFuzzer needs nightly compiler flags), one per parser of untrusted
//! input: the request head and the headers the handshake reads, routes,
//! the configuration file, the admin API's JSON, the broker envelope, JWTs
//! and the field mapping, and the frame path through the patched
//! tungstenite. Each asserts what must hold of its input (round trips,
//! idempotence, where a value came from), not only that nothing panics.
//!
//! 1. `cargo +nightly fuzz build -a` (release, debug assertions and
//!    overflow checks on, AddressSanitizer unless `--sanitizer none`),
//!    through `rustup run nightly`: the rest of the project stays on the
//!    pinned toolchain.
//! 2. Each target runs from its committed seeds, `fuzz/corpus/<target>/`,
//!    read only: what it finds goes to a fresh scratch corpus in
//!    `fuzz/target/scratch/<target>/`, crashes to
//!    `fuzz/artifacts/<target>/` (both ignored by git).
//! 3. Any crash fails the task after every target has run, with the command
//!    that reproduces it. A fixed crash becomes a regression test in the
//!    crate's own tests, with the input committed next to it.
//!
//! Needs the nightly toolchain and cargo-fuzz (`.ci/run` installs both
//! when missing). `cargo xtask ci` runs every target for
//! [`CI_SECONDS`] seconds without a sanitizer: the fuzzed paths have only
//! a handful of audited `unsafe` blocks for it to check, and instrumenting
//! every dependency for AddressSanitizer more than doubles the build, the
//! largest part of CI's time. Longer local runs keep it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::util;

/// Seconds per target in `cargo xtask ci`.
pub(crate) const CI_SECONDS: u64 = 10;

/// Seconds per target when `--seconds` is not given.
const DEFAULT_SECONDS: u64 = 60;

/// The targets, as `fuzz/Cargo.toml` lists them.
pub(crate) const TARGETS: &[&str] = &[
    "request_head",
    "client_addr",
    "origin",
    "credential",
    "subprotocol",
    "route",
    "config",
    "admin_publication",
    "envelope",
    "field_mapping",
    "jwt",
    "frames",
];

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut seconds = DEFAULT_SECONDS;
    let mut only: Option<String> = None;
    let mut sanitizer = "address";
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().context("`--seconds` needs a number")?;
                seconds = v
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .with_context(|| format!("`--seconds`: `{v}` is not a positive number"))?;
            }
            "--target" => {
                let v = it.next().context("`--target` needs a target name")?;
                if !TARGETS.contains(&v.as_str()) {
                    bail!(
                        "`--target`: no target `{v}`; the targets are {}",
                        TARGETS.join(", ")
                    );
                }
                only = Some(v.clone());
            }
            "--sanitizer" => {
                let v = it
                    .next()
                    .context("`--sanitizer` needs `address` or `none`")?;
                sanitizer = match v.as_str() {
                    "address" => "address",
                    "none" => "none",
                    _ => bail!("`--sanitizer`: `{v}` is neither `address` nor `none`"),
                };
            }
            other => bail!(
                "`fuzz` takes `--seconds N`, `--target NAME` and `--sanitizer address|none`, \
                 got `{other}`"
            ),
        }
    }
    let targets: Vec<&str> = match &only {
        Some(t) => vec![t.as_str()],
        None => TARGETS.to_vec(),
    };
    let root = util::root();
    let fuzz_dir = root.join("fuzz");
    let host = nightly_host()?;

    let started = Instant::now();
    let mut build = nightly_cargo();
    build.args(["fuzz", "build", "-a", "--sanitizer", sanitizer]);
    if let Some(t) = &only {
        build.arg(t);
    }
    eprintln!(
        "xtask: cargo +nightly fuzz build -a --sanitizer {sanitizer} {}",
        only.as_deref().unwrap_or("")
    );
    let status = build
        .status()
        .context("cannot run `rustup run nightly cargo fuzz build`")?;
    if !status.success() {
        bail!(
            "cargo +nightly fuzz build failed ({status}); cargo-fuzz missing? \
             `cargo install --locked cargo-fuzz` (.ci/run installs it)"
        );
    }
    eprintln!(
        "xtask: fuzz targets built in {}",
        util::human(started.elapsed())
    );

    let bin_dir = fuzz_dir.join("target").join(&host).join("release");
    let mut crashes = Vec::new();
    for target in &targets {
        let corpus = fuzz_dir.join("corpus").join(target);
        let scratch = fuzz_dir.join("target/scratch").join(target);
        let artifacts = fuzz_dir.join("artifacts").join(target);
        if scratch.exists() {
            fs::remove_dir_all(&scratch)
                .with_context(|| format!("cannot empty {}", scratch.display()))?;
        }
        fs::create_dir_all(&scratch)?;
        fs::create_dir_all(&artifacts)?;
        if !corpus.is_dir() {
            bail!(
                "target `{target}` has no seed corpus at {}",
                corpus.display()
            );
        }
        let before = crash_files(&artifacts)?;
        let t0 = Instant::now();
        let status = Command::new(bin_dir.join(target))
            .arg(&scratch)
            .arg(&corpus)
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            // A single input taking this long is a hang: a crash too.
            .arg("-timeout=10")
            .arg("-rss_limit_mb=4096")
            .arg("-print_final_stats=1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("cannot run fuzz target `{target}`"))?;
        let stderr = String::from_utf8_lossy(&status.stderr);
        let runs = stderr
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map_or("?", str::trim)
            .to_owned();
        let new: Vec<PathBuf> = crash_files(&artifacts)?
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if status.status.success() && new.is_empty() {
            eprintln!(
                "xtask: fuzz {target}: {runs} runs in {}, no crash",
                util::human(t0.elapsed())
            );
            continue;
        }
        // The end of libFuzzer's report: the panic and the input.
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        for line in tail.iter().rev() {
            eprintln!("  {line}");
        }
        eprintln!("xtask: fuzz {target}: CRASH ({})", status.status);
        if new.is_empty() {
            crashes.push(format!("{target}: exited with {}", status.status));
        }
        for f in new {
            crashes.push(format!(
                "{target}: {} (reproduce: cargo +nightly fuzz run -a {target} {})",
                f.display(),
                f.display()
            ));
        }
    }
    eprintln!(
        "xtask: fuzzing took {} in all",
        util::human(started.elapsed())
    );
    if !crashes.is_empty() {
        bail!("fuzzing found crashes:\n  {}", crashes.join("\n  "));
    }
    Ok(())
}

/// `cargo` of the nightly toolchain, in the fuzz crate; not the pinned
/// toolchain xtask itself runs on.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"])
        .current_dir(util::root())
        .env_remove("RUSTUP_TOOLCHAIN");
    // What `cargo xtask` was run with (CARGO, CARGO_PKG_NAME, …) is not the
    // nightly cargo's business; build scripts that watch such variables
    // would otherwise rebuild everything a plain `cargo +nightly fuzz
    // build` built already.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k == "CARGO" || (k.starts_with("CARGO_") && k != "CARGO_HOME") {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// The host triple of the nightly toolchain (cargo-fuzz builds for it);
/// fails clearly when there is no nightly toolchain.
fn nightly_host() -> Result<String> {
    let out = Command::new("rustup")
        .args(["run", "nightly", "rustc", "-vV"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .context("cannot run rustup (fuzzing needs rustup and a nightly toolchain)")?;
    if !out.status.success() {
        bail!(
            "no nightly toolchain: fuzzing needs one (`rustup toolchain install nightly \
             --profile minimal`; .ci/run installs it): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("`rustc -vV` of the nightly toolchain names no host")
}

/// The crash, leak, timeout and out-of-memory files in `dir`.
fn crash_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if ["crash-", "leak-", "timeout-", "oom-"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
