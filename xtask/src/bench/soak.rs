//! `--soak MINUTES`: ws-provider alone under connect/disconnect churn, its
//! RSS and descriptors read throughout (see the bench's documentation).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Env;
use super::config::{Hooks, cookie_args};
use super::drive::check_errors;
use super::machine::loadavg;
use super::process::{Client, Server};
use super::results::{Figures, Machine, ProviderConfig};
use super::scenarios::Kind;
use crate::util;

/// `soak.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SoakReport {
    /// `soak`.
    pub(crate) mode: String,
    pub(crate) minutes: f64,
    pub(crate) warmup_secs: f64,
    pub(crate) machine: Machine,
    pub(crate) load_after: String,
    pub(crate) wall_secs: f64,
    pub(crate) provider_config: ProviderConfig,
    /// What ws-bench's `churn` printed, with `fds_left_open`.
    pub(crate) result: Figures,
}

/// `--soak MINUTES`: see the module's documentation.
pub(crate) fn soak(
    env: &Env,
    minutes: f64,
    machine: Machine,
    hooks: &Hooks,
    started: Instant,
) -> Result<()> {
    let secs = minutes * 60.0;
    let warmup = (secs / 10.0).clamp(5.0, 60.0);
    // About a hundred readings, at most one every 30 s.
    let sample = (secs / 100.0).clamp(0.5, 30.0);
    eprintln!(
        "xtask bench: soak of {minutes} min after {warmup} s of warm-up, readings every {sample} s"
    );
    let log = env.logs.join("soak-ws-provider.log");
    let mut server = Server::start(env, Kind::Provider, &log)?;
    let mut args: Vec<String> = [
        "churn",
        "--addr",
        &server.addr.to_string(),
        "--server-pid",
        &server.pid.to_string(),
        "--warmup",
        &warmup.to_string(),
        "--duration",
        &secs.to_string(),
        "--concurrency",
        "32",
        "--burst",
        "500",
        "--sources",
        "8",
        "--broadcast-path",
        "/broadcast",
        "--sample-secs",
        &sample.to_string(),
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    args.extend(cookie_args(env));
    let client = Client::start(env, &args, false)?;
    let result = client.finish(Duration::from_secs_f64(warmup + secs + 120.0));
    let stopped = server.stop();
    let mut v = result?;
    stopped?;
    if let (Some(a), Some(b)) = (v.fds_after, v.fds_before) {
        // Counts of descriptors: whole numbers.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        v.rest
            .insert("fds_left_open".into(), ((a - b).max(0.0) as u64).into());
    }
    let report = SoakReport {
        mode: "soak".to_owned(),
        minutes,
        warmup_secs: warmup,
        machine,
        load_after: loadavg(),
        wall_secs: started.elapsed().as_secs_f64(),
        provider_config: ProviderConfig {
            file: env.config.display().to_string(),
            applied: hooks.applied.clone(),
            missing: hooks.missing.clone(),
            aspect_check: Value::Null,
        },
        result: v,
    };
    let text = serde_json::to_string_pretty(&report)?;
    std::fs::write(env.out.join("soak.json"), &text)?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    std::fs::write(env.out.join(format!("soak-{stamp}.json")), &text)?;
    check_errors("churn", &report.result)?;
    // The readings as printed, for the summary lines below.
    let v = &serde_json::to_value(&report.result)?;
    // Whole numbers as such (the typed figures are f64).
    let n = |k: &str| v[k].as_f64().map_or("-".to_owned(), |x| format!("{x:.0}"));
    let samples = v["samples"].as_array().map_or(&[][..], Vec::as_slice);
    let rss: Vec<f64> = samples
        .iter()
        .filter_map(|s| s["rss_kib"].as_f64())
        .collect();
    let (lo, hi) = rss
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    println!(
        "soak: {:.1} min, {} connections ({:.0}/s; {} by the churn loops, {} in bursts), \
         {} client error(s)",
        v["secs"].as_f64().unwrap_or(0.0) / 60.0,
        n("connections"),
        v["connections"].as_f64().unwrap_or(0.0) / v["secs"].as_f64().unwrap_or(1.0),
        n("cycles"),
        n("burst_connections"),
        n("errors"),
    );
    println!(
        "soak: server RSS {} KiB after the warm-up, {} KiB at the end (readings {lo:.0}–{hi:.0} \
         KiB); growth {:.1} KiB per 100,000 connections",
        n("rss_before_kib"),
        n("rss_after_kib"),
        v["rss_growth_kib_per_100k_connections"]
            .as_f64()
            .unwrap_or(f64::NAN),
    );
    println!(
        "soak: descriptors {} before, {} after ({} left open)",
        n("fds_before"),
        n("fds_after"),
        n("fds_left_open")
    );
    eprintln!(
        "xtask bench: soak results in {} ({})",
        env.out.join("soak.json").display(),
        util::human(started.elapsed())
    );
    if v["fds_left_open"].as_f64().unwrap_or(0.0) > 0.0 {
        bail!("the soak left {} descriptor(s) open", n("fds_left_open"));
    }
    Ok(())
}
