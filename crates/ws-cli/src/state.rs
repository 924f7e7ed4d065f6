//! Info files of running servers in the state directory.
//!
//! `start` writes `<pid>.json` (pid, address, routes, start time, version)
//! and holds an exclusive lock on it for the whole life of the process. A
//! lock is released by the kernel when its process ends, however it ends,
//! so "locked" means "that very server is still running" — never merely
//! "some process has that pid". `list` and `stop` decide running or stale
//! by the lock alone.

use std::fs::{File, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

/// The default state directory: `$XDG_RUNTIME_DIR/ws-provider`, else
/// `<temp dir>/ws-provider-<uid>`.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("ws-provider"),
        None => std::env::temp_dir().join(format!("ws-provider-{}", nix::unistd::getuid())),
    }
}

/// One route in an info file and in `routes --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    /// Full path, prefix included.
    pub path: String,
    /// Component type.
    pub component: String,
    /// The policy in force on the route.
    #[serde(default)]
    pub policy: PolicyEntry,
}

/// The policy in force on a route.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyEntry {
    /// Whether a `[[route]]` entry applies.
    pub overridden: bool,
    /// Allowed origins (empty: all).
    pub allowed_origins: Vec<String>,
    /// Whether an `Origin` header is required.
    pub require_origin: bool,
    /// Messages per second per connection (0: unlimited).
    pub max_messages_per_second: u32,
    /// Largest message, bytes.
    pub max_message_size: usize,
    /// Largest frame, bytes.
    pub max_frame_size: usize,
    /// The route's own connection cap (0: none).
    pub max_connections: u32,
    /// Aspects that must be logged in (`require`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<String>,
    /// Groups, one of which is required (`require_groups`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_groups: Vec<String>,
}

impl From<&ws_runtime::RouteInfo> for RouteEntry {
    fn from(r: &ws_runtime::RouteInfo) -> Self {
        Self {
            path: r.path.clone(),
            component: r.component.clone(),
            policy: PolicyEntry {
                overridden: r.has_policy,
                allowed_origins: r.allowed_origins.clone(),
                require_origin: r.require_origin,
                max_messages_per_second: r.max_messages_per_second,
                max_message_size: r.max_message_size,
                max_frame_size: r.max_frame_size,
                max_connections: r.max_connections,
                require: r.require.clone(),
                require_groups: r.require_groups.clone(),
            },
        }
    }
}

/// What a running server tells about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Process id.
    pub pid: u32,
    /// Listen address.
    pub address: String,
    /// Mounted routes.
    pub routes: Vec<RouteEntry>,
    /// Start time, seconds since the Unix epoch.
    pub started_at: u64,
    /// ws-cli version.
    pub version: String,
}

/// The info file of this process, open read-only and locked while it
/// lives; removed on drop.
#[derive(Debug)]
pub struct InfoFile {
    path: PathBuf,
    _file: File,
}

impl InfoFile {
    /// Writes `info` atomically (temp file, lock, write, rename) into `dir`.
    ///
    /// # Errors
    /// When the directory or file cannot be created or locked; the message
    /// names the directory and the setting that chose it.
    pub fn create(dir: &Path, info: &Info) -> Result<Self> {
        let setting = "`server.state_dir`, --state-dir or WS_STATE_DIR";
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the state directory `{}` ({setting})",
                dir.display()
            )
        })?;
        let path = dir.join(format!("{}.json", info.pid));
        let tmp = dir.join(format!(".{}.json.tmp", info.pid));
        let mut file = File::create(&tmp).with_context(|| {
            format!(
                "cannot write to the state directory `{}` ({setting}): cannot create `{}`",
                dir.display(),
                tmp.display()
            )
        })?;
        serde_json::to_writer_pretty(&mut file, info)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        drop(file);
        // Held open read-only for the lock: the server keeps nothing open
        // for writing in the state directory, so it can even be remounted
        // read-only under a running server. Locked before the file becomes
        // visible under its real name.
        let file = File::open(&tmp)
            .with_context(|| format!("cannot open info file `{}`", tmp.display()))?;
        file.try_lock()
            .map_err(|e| anyhow::anyhow!("cannot lock info file `{}`: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot move info file into `{}`", path.display()))?;
        Ok(Self { path, _file: file })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InfoFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // A read-only or vanished state directory: the lock goes with
            // the process anyway, so `list` shows the file as stale.
            Err(e) => tracing::warn!(
                path = %self.path.display(),
                error = %e,
                "cannot remove info file; `ws-cli list` will show it as stale"
            ),
        }
    }
}

/// Running or stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The server holds its lock.
    Running,
    /// Nobody holds the lock: the server died without cleaning up.
    Stale,
}

/// An info file found in the state directory.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its path.
    pub path: PathBuf,
    /// Its content (`None` when unreadable, e.g. a truncated file).
    pub info: Option<Info>,
    /// The pid from the file name.
    pub pid: u32,
    /// Running or stale.
    pub state: State,
}

/// Whether someone holds the lock on `path` (i.e. the server is alive).
pub fn is_locked(path: &Path) -> Result<bool> {
    let file = File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    match file.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot check lock of `{}`", path.display()))
        }
    }
}

/// Every info file in `dir`, sorted by pid. A missing directory has none.
///
/// # Errors
/// When the directory exists but cannot be read.
pub fn scan(dir: &Path) -> Result<Vec<Entry>> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read state directory `{}`", dir.display()));
        }
    };
    let mut out = Vec::new();
    for item in read {
        let path = item?.path();
        let Some(pid) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let state = match is_locked(&path) {
            Ok(true) => State::Running,
            Ok(false) => State::Stale,
            // Vanished between listing and opening: it stopped cleanly.
            Err(_) if !path.exists() => continue,
            Err(e) => return Err(e),
        };
        let info = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Info>(&b).ok());
        out.push(Entry {
            path,
            info,
            pid,
            state,
        });
    }
    out.sort_by_key(|e| e.pid);
    Ok(out)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pid: u32) -> Info {
        Info {
            pid,
            address: "127.0.0.1:1".into(),
            routes: vec![RouteEntry {
                path: "/echo".into(),
                component: "demo_echo::Echo".into(),
                policy: PolicyEntry::default(),
            }],
            started_at: now_secs(),
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn held_file_is_running_and_removed_on_drop() {
        let dir = std::env::temp_dir().join(format!("ws-cli-state-{}", std::process::id()));
        let f = InfoFile::create(&dir, &info(std::process::id())).unwrap();
        let entries = scan(&dir).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].state, State::Running);
        assert_eq!(entries[0].info.as_ref().unwrap().routes[0].path, "/echo");
        let path = f.path().to_path_buf();
        drop(f);
        assert!(!path.exists());
        assert!(scan(&dir).unwrap().is_empty());
        // A file nobody holds is stale, even though its pid (ours) is alive.
        std::fs::write(dir.join(format!("{}.json", std::process::id())), "{}").unwrap();
        let entries = scan(&dir).unwrap();
        assert_eq!(entries[0].state, State::Stale);
        assert!(entries[0].info.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_dir_has_no_entries() {
        assert!(
            scan(Path::new("/nonexistent/ws-provider-test"))
                .unwrap()
                .is_empty()
        );
    }
}
