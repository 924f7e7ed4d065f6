//! Child processes that never outlive their test.

use std::ffi::OsStr;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// A child process, killed (SIGKILL) and reaped when dropped, so that a
/// test that fails half-way leaves nothing running.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Starts `cmd`.
    ///
    /// # Errors
    /// What [`Command::spawn`] returns.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        cmd.spawn().map(Self::new)
    }

    /// Guards a child already started (after taking its pipes, say).
    pub fn new(child: Child) -> Self {
        Self {
            child,
            status: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, once [`wait`](Self::wait), [`stop`](Self::stop),
    /// [`kill`](Self::kill) or [`try_exited`](Self::try_exited) saw it
    /// exit (and reaped it).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Whether it has exited by now (reaping it if so).
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Sends `sig`, by pid.
    ///
    /// # Panics
    /// When the process was reaped already (its pid may be someone else's
    /// by now), or the signal cannot be sent.
    pub fn signal(&self, sig: Signal) {
        let pid = self.pid();
        assert!(
            self.status.is_none(),
            "{sig} to pid {pid}, which has exited already"
        );
        let raw = i32::try_from(pid).expect("pid fits in i32");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), sig)
            .unwrap_or_else(|e| panic!("{sig} to pid {pid}: {e}"));
    }

    /// Waits for the process to exit on its own.
    ///
    /// # Panics
    /// When it has not exited within `limit` (it is killed first).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_exited() {
                return status;
            }
            if Instant::now() > deadline {
                let pid = self.pid();
                self.kill();
                panic!("pid {pid} did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` (SIGTERM, SIGINT: whatever the program takes for "shut
    /// down") and waits up to `grace` for the exit, then kills it.
    pub fn stop(&mut self, sig: Signal, grace: Duration) -> ExitStatus {
        if let Some(status) = self.try_exited() {
            return status;
        }
        if let Ok(raw) = i32::try_from(self.pid()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), sig);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_exited() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill()
    }

    /// Polls `ready` every `every` until it holds (`true`), the process
    /// exits (`false`), or `limit` passes (`false`, the process is killed):
    /// a server's start, which fails when its port was taken meanwhile.
    pub(crate) fn until_ready(
        &mut self,
        limit: Duration,
        every: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.try_exited().is_some() {
                return false;
            }
            if ready() {
                return true;
            }
            std::thread::sleep(every);
        }
        self.kill();
        false
    }

    /// SIGKILL (no goodbye to anyone), and waits for the exit.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.try_exited() {
            return status;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for a killed child");
        self.status = Some(status);
        status
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A command running `program` that dies with the thread spawning it:
/// under `setpriv --pdeathsig SIGKILL` when setpriv is there (it execs, so
/// the pid stays the program's). With `run_as` (uid, gid), setpriv also
/// switches to that user, without supplementary groups.
pub(crate) fn dying_with_parent(program: &OsStr, run_as: Option<(u32, u32)>) -> Command {
    match crate::find_in_path("setpriv") {
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            if let Some((uid, gid)) = run_as {
                c.args(["--reuid", &uid.to_string(), "--regid", &gid.to_string()])
                    .arg("--clear-groups");
            }
            c.args(["--pdeathsig", "SIGKILL", "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_guard_kills_its_process() {
        let guard = ChildGuard::spawn(Command::new("sleep").arg("30")).unwrap();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(guard.pid()).unwrap());
        drop(guard);
        // Reaped: the pid names no process of ours any more.
        assert_eq!(
            nix::sys::signal::kill(pid, None),
            Err(nix::errno::Errno::ESRCH)
        );
    }

    #[test]
    fn stop_signals_then_reports_the_exit() {
        let mut guard = ChildGuard::spawn(Command::new("sleep").arg("30")).unwrap();
        assert_eq!(guard.try_exited(), None);
        let status = guard.stop(Signal::SIGTERM, Duration::from_secs(5));
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
        assert_eq!(guard.exit_status(), Some(status));
    }

    #[test]
    fn wait_returns_the_exit_code() {
        let mut guard = ChildGuard::spawn(Command::new("sh").args(["-c", "exit 3"])).unwrap();
        assert_eq!(guard.wait(Duration::from_secs(10)).code(), Some(3));
    }
}
