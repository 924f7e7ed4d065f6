//! A real PostgreSQL cluster (Debian package `postgresql`): `initdb` and
//! `postgres` from the newest `/usr/lib/postgresql/*/bin`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::process::{ChildGuard, dying_with_parent};
use crate::{TempDir, free_port, skip_or_fail};

/// How long a start may take before it counts as failed.
const READY_LIMIT: Duration = Duration::from_secs(20);

/// A PostgreSQL cluster of the test's own on a free loopback port, trust
/// authentication, superuser `postgres`, no durability (`fsync=off`);
/// stopped and removed when dropped. PostgreSQL refuses to run as root, so
/// as root it runs as `nobody` (through setpriv). Its data survive a
/// [`restart`](Postgres::restart).
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    child: Option<ChildGuard>,
    port: u16,
    /// The server's user and group, when we are root.
    run_as: Option<(u32, u32)>,
    dir: TempDir,
}

impl Postgres {
    /// The newest `/usr/lib/postgresql/<version>/bin` with every program
    /// used here.
    fn bin_dir() -> Option<PathBuf> {
        let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                ["initdb", "postgres", "pg_isready", "psql"]
                    .iter()
                    .all(|p| bin.join(p).is_file())
                    .then_some((version, bin))
            })
            .collect();
        dirs.sort();
        dirs.pop().map(|(_, bin)| bin)
    }

    /// Creates and starts one; `None` (after a notice) when PostgreSQL is
    /// not installed, outside CI (see [`skip_or_fail`]). Start it on the
    /// test's own thread: the server dies with the thread that started it.
    ///
    /// # Panics
    /// Under `CI=true` without PostgreSQL (or, as root, without setpriv);
    /// when `initdb` fails or the server does not start within 20 s (its
    /// log is shown).
    pub fn start() -> Option<Self> {
        let Some(bin) = Self::bin_dir() else {
            return skip_or_fail(
                "PostgreSQL (/usr/lib/postgresql/*/bin/initdb)",
                "postgresql",
            );
        };
        let run_as = if nix::unistd::geteuid().is_root() {
            if crate::find_in_path("setpriv").is_none() {
                return skip_or_fail("setpriv (to run PostgreSQL as nobody)", "util-linux");
            }
            let nobody = nix::unistd::User::from_name("nobody")
                .ok()
                .flatten()
                .expect("user `nobody` (PostgreSQL refuses to run as root)");
            Some((nobody.uid.as_raw(), nobody.gid.as_raw()))
        } else {
            None
        };
        // As root, the server's user must reach the directory: /tmp unless
        // the temporary directory is reachable by everyone.
        let temp = std::env::temp_dir();
        let base = if run_as.is_some() && !world_traversable(&temp) {
            PathBuf::from("/tmp")
        } else {
            temp
        };
        let dir = TempDir::new_in(&base, "postgres");
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("chown the PostgreSQL directory to nobody");
        }
        let mut pg = Self {
            bin,
            child: None,
            port: 0,
            run_as,
            dir,
        };
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(pg.dir.join("data"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .args(["--no-locale", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for _attempt in 0..5 {
            pg.port = free_port();
            if pg.spawn() {
                return Some(pg);
            }
            // Most likely the port was taken meanwhile: try another.
        }
        panic!("postgres did not start: {}", pg.log());
    }

    /// `bin/name` as the server's user, dying with the test, in the
    /// cluster's directory.
    fn command(&self, name: &str) -> Command {
        let mut c = dying_with_parent(self.bin.join(name).as_os_str(), self.run_as);
        c.current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        c
    }

    /// Starts the server on `self.port`; whether it accepts connections in
    /// time.
    fn spawn(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))
            .expect("open postgres.log");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-k"])
            .arg(self.dir.path())
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=40"])
            .stdout(log.try_clone().expect("postgres.log"))
            .stderr(log)
            .spawn()
            .expect("spawn postgres");
        let mut child = ChildGuard::new(child);
        let up = child.until_ready(READY_LIMIT, Duration::from_millis(50), || self.ready());
        self.child = up.then_some(child);
        up
    }

    /// Whether the server accepts connections (`pg_isready`).
    fn ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs `sql` with `psql` as user `postgres` (stopping at the first
    /// error).
    ///
    /// # Panics
    /// When psql fails (its error is shown).
    pub fn psql(&self, sql: &str) {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql])
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Fast shutdown (SIGINT: clients are disconnected; the "store down"
    /// case), killed after 10 s; waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.stop(Signal::SIGINT, Duration::from_secs(10));
        }
    }

    /// Starts the server again on the same port with the same data
    /// (stopping the running one first, if any).
    ///
    /// # Panics
    /// When it does not start within 20 s.
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn(),
            "postgres did not restart on port {}: {}",
            self.port,
            self.log()
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether everyone may pass through `dir` and each directory above it.
fn world_traversable(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    dir.ancestors()
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_runs_sql_and_keeps_its_data_over_a_restart() {
        let Some(mut pg) = Postgres::start() else {
            return;
        };
        pg.psql("CREATE TABLE t (x integer); INSERT INTO t VALUES (1);");
        pg.stop();
        assert!(!pg.ready());
        pg.restart();
        pg.psql("DO $$ BEGIN ASSERT (SELECT x FROM t) = 1; END $$;");
        let dir = pg.dir.path().to_path_buf();
        drop(pg);
        assert!(!dir.exists());
    }
}
