//! The bench's pure parts: the token, the aspect's table, the whoami
//! check, the options, and that every kept result still reads.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::config::{
    TOKEN_LIFETIME, TOKEN_NAME, TOKEN_SUB, aspect_toml, logged_in_aspect, make_token,
};
use super::parse_opts;
use super::render::{draw_chart, draw_sweep_chart, render_table};
use super::results::Report;
use super::scenarios::{metrics, scenarios};
use crate::util;

#[test]
fn token_verifies_with_the_written_secret() {
    let dir = std::env::temp_dir().join(format!("xtask-bench-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("bench-jwt.secret");
    let token = make_token(&key_file).unwrap();
    let secret = std::fs::read(&key_file).unwrap();
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    // A second run makes a new secret.
    let again = make_token(&key_file).unwrap();
    let secret2 = std::fs::read(&key_file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(secret.len(), 64);
    assert_ne!(secret, secret2);
    assert_ne!(token, again);
    let decoded = jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(&secret),
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    )
    .unwrap();
    let c = decoded.claims;
    assert_eq!(c["sub"], TOKEN_SUB);
    assert_eq!(c["name"], TOKEN_NAME);
    let (iat, exp) = (c["iat"].as_u64().unwrap(), c["exp"].as_u64().unwrap());
    assert_eq!(exp - iat, TOKEN_LIFETIME.as_secs());
    // The token goes into a cookie as is.
    assert!(
        token
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    );
}

#[test]
fn aspect_table_names_the_key_file_and_cookie() {
    let t = aspect_toml(Path::new("/tmp/b \"x\"/bench-jwt.secret")).unwrap();
    assert!(t.contains("[[aspect]]\nname = \"bench.user\"\n"), "{t}");
    assert!(
        t.contains("credential = { cookie = \"bench_token\" }"),
        "{t}"
    );
    assert!(t.contains("[aspect.jwt]\nalgorithm = \"HS256\"\n"), "{t}");
    assert!(
        t.contains(r#"key_file = "/tmp/b \"x\"/bench-jwt.secret""#),
        "{t}"
    );
    assert!(t.contains("[aspect.jwt.claims]\nid = \"sub\"\nusername = \"name\"\n"));
}

#[test]
fn whoami_answers_are_judged() {
    // What ws-provider answered with a good and with a bad token.
    let good = r#"{"aspects":{"bench.user":{"groups":[],"id":"bench","logged_in":true,"username":"ws-bench"}},"connection":1}"#;
    let bad = r#"{"aspects":{"bench.user":{"groups":[],"id":null,"logged_in":false,"username":null}},"connection":1}"#;
    assert_eq!(logged_in_aspect(good).unwrap()["username"], "ws-bench");
    let e = format!("{:#}", logged_in_aspect(bad).unwrap_err());
    assert!(
        e.contains("does not resolve") && e.contains("\"logged_in\":false"),
        "{e}"
    );
    let other = r#"{"aspects":{"other":{"id":"bench","logged_in":true}}}"#;
    assert!(logged_in_aspect(other).is_err());
    assert!(logged_in_aspect("not json").is_err());
}

#[test]
fn out_option() {
    let o = parse_opts(&["--quick".into(), "--out".into(), "/tmp/x".into()]).unwrap();
    assert_eq!(o.out, Some(PathBuf::from("/tmp/x")));
    assert!(parse_opts(&["--out".into()]).is_err());
}

#[test]
fn only_takes_groups_and_ids() {
    let o = parse_opts(&["--only".into(), "sweep,peer,echo64".into()]).unwrap();
    assert_eq!(o.only.unwrap(), ["sweep", "peer", "echo64"]);
    let e = format!(
        "{:#}",
        parse_opts(&["--only".into(), "nope".into()]).unwrap_err()
    );
    assert!(
        e.contains("unknown scenario `nope`") && e.contains("sweep-echo-bin-1k"),
        "{e}"
    );
}

#[test]
fn every_cell_has_its_metrics() {
    let all = scenarios();
    let ms = metrics();
    // 7 fixed scenarios, 24 sweep cells, 7 second-generator cells.
    assert_eq!(all.len(), 7 + 24 + 7);
    for s in &all {
        assert!(
            ms.iter().any(|m| m.scenario == s.id),
            "{} has no metric",
            s.id
        );
    }
    let mut ids: Vec<&str> = ms.iter().map(|m| m.id.as_str()).collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "metric ids are unique");
}

/// Every results JSON kept in `bench/results/` reads as a [`Report`], and
/// renders: the types cover what earlier runs wrote.
#[test]
fn kept_results_still_read() {
    let dir = util::root().join("bench/results");
    let mut n = 0;
    let out = std::env::temp_dir().join(format!("xtask-bench-charts-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("bench-") || !name.ends_with(".json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let report: Report =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!report.metrics.is_empty(), "{name}");
        let table = render_table(&report);
        assert!(table.contains("ws-provider vs baseline"), "{name}");
        // (The first fan-out run has no ratio: the baseline has no route.)
        if report.metrics.iter().any(|m| m.ratio.is_some()) {
            draw_chart(&out.join(format!("{name}.svg")), &report).unwrap();
        }
        if report
            .metrics
            .iter()
            .any(|m| m.scenario.starts_with("sweep-"))
        {
            draw_sweep_chart(&out.join(format!("{name}.sweep.svg")), &report).unwrap();
            assert!(table.contains("size sweep"), "{name}");
        }
        n += 1;
    }
    std::fs::remove_dir_all(&out).unwrap();
    assert!(n >= 18, "only {n} results in {}", dir.display());
}
