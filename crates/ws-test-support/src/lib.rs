//! What the tests of every crate share: real services started from their
//! Debian packages on free loopback ports and stopped when dropped
//! ([`Redis`], [`Postgres`]), child processes killed when dropped
//! ([`ChildGuard`]), a test run in a child process of its own
//! ([`in_child_process`]), temporary directories ([`TempDir`]), free ports
//! ([`free_port`]) and programs on the `PATH` ([`find_in_path`]).
//!
//! # Missing services
//!
//! A test whose service or tool is not installed is skipped with a notice
//! on stderr, except under `CI=true`, where it fails and says which Debian
//! package to install: CI never passes by skipping ([`skip_or_fail`]).
//! `.ci/run` installs every package named here.
//!
//! # Processes
//!
//! Servers run under `setpriv --pdeathsig SIGKILL` (util-linux) when it is
//! there, so a test process that dies, even by SIGKILL, leaves none behind;
//! setpriv execs, so the pid is the server's. Start them on the test's own
//! thread: the signal comes when the thread that started them ends.
//!
//! A leaf crate: it depends on no crate of the workspace, so that every
//! crate can dev-depend on it.

use std::net::TcpListener;
use std::path::PathBuf;

mod child_test;
mod dir;
mod postgres;
mod process;
mod redis;

pub use child_test::{in_child_process, rss_kib};
pub use dir::TempDir;
pub use postgres::Postgres;
pub use process::ChildGuard;
pub use redis::Redis;

/// Whether the tests run under CI (`CI=true`), where a missing service is a
/// failure.
pub fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The rule for a service or tool (`what`) this machine lacks: outside CI
/// the test is skipped (a `SKIPPED:` notice on stderr, `None`, and the test
/// returns); under `CI=true` it fails, naming the Debian `package` to
/// install.
///
/// ```
/// fn tool() -> Option<std::path::PathBuf> {
///     let Some(path) = ws_test_support::find_in_path("sh") else {
///         return ws_test_support::skip_or_fail("sh", "dash");
///     };
///     Some(path)
/// }
/// assert!(tool().is_some());
/// ```
///
/// # Panics
/// Under `CI=true`, always.
pub fn skip_or_fail<T>(what: &str, package: &str) -> Option<T> {
    let msg = format!(
        "{what} not found: install the Debian package `{package}` \
         (apt-get install -y {package})"
    );
    assert!(!on_ci(), "{msg} (CI=true: a missing service is a failure)");
    eprintln!("SKIPPED: {msg}");
    None
}

/// The program `name` in a directory of `PATH`, or in `/usr/bin`,
/// `/usr/sbin` or `/usr/local/bin` (not every `PATH` has the `sbin` ones).
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            "/usr/bin".into(),
            "/usr/sbin".into(),
            "/usr/local/bin".into(),
        ])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, then
/// released): whoever binds it next may race another process, so servers
/// started on it retry on another port when it was taken.
///
/// # Panics
/// When no port can be bound at all.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port on 127.0.0.1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_can_be_bound() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
    }

    #[test]
    fn programs_are_found_on_the_path() {
        assert!(find_in_path("sh").is_some_and(|p| p.is_file()));
        assert_eq!(find_in_path("no-such-program-ws-test-support"), None);
    }
}
