//! Running one test in a child process of its own: for tests that signal
//! their own process (SIGHUP) or measure its memory, which the other tests
//! of the binary, running in parallel, would disturb.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ChildGuard;

/// The environment variable that tells a child which test it is to run.
const CHILD_ENV: &str = "WS_TESTS_CHILD";

/// How long a child may run before it is killed and the test fails.
const CHILD_LIMIT: Duration = Duration::from_secs(180);

/// Runs `body` in a child process: the test binary again, filtered to the
/// test `name` (its path in the binary, e.g. `abuse::memory`), with one test
/// thread. In the child, `body` runs; in the parent, the child's success is
/// asserted and its output shown on failure.
///
/// The test calling this must be a plain `#[test]` (the child builds its own
/// runtime in `body`).
///
/// # Panics
/// In the parent, when the child fails, runs no test, or runs longer than
/// 180 s (it is killed).
pub fn in_child_process(name: &str, body: impl FnOnce()) {
    if std::env::var(CHILD_ENV).is_ok_and(|v| v == name) {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child test process");
    // Drain the pipes while waiting, so a chatty child cannot block on them.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let mut child = ChildGuard::new(child);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_exited() {
            break status;
        }
        if started.elapsed() > CHILD_LIMIT {
            child.kill();
            panic!("child test {name} ran longer than {CHILD_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    assert!(
        status.success() && stdout.contains("1 passed"),
        "child test {name} failed ({status}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    print!("{stdout}");
}

/// The resident set size of this process, in KiB (`VmRSS` in
/// `/proc/self/status`).
///
/// # Panics
/// Without `/proc/self/status` (not Linux).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}
