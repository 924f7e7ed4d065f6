//! Temporary directories, removed when dropped.

use std::path::{Path, PathBuf};

/// A fresh, empty directory under the system's temporary directory
/// (`ws-test-<name>-XXXXXX`), readable by everyone (mode 0755, like any
/// directory made with `mkdir`), removed with its contents when dropped.
#[derive(Debug)]
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A new directory; `name` shows in its path, for whoever looks at a
    /// test's leftovers.
    ///
    /// # Panics
    /// When the directory cannot be made.
    pub fn new(name: &str) -> Self {
        Self::new_in(&std::env::temp_dir(), name)
    }

    /// A new directory in `base`.
    pub(crate) fn new_in(base: &Path, name: &str) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::Builder::new()
            .prefix(&format!("ws-test-{name}-"))
            .permissions(std::fs::Permissions::from_mode(0o755))
            .tempdir_in(base)
            .unwrap_or_else(|e| panic!("make a temporary directory in {}: {e}", base.display()));
        Self(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// `name` inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.path().join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_fresh_and_removed_on_drop() {
        let a = TempDir::new("unit");
        let b = TempDir::new("unit");
        assert_ne!(a.path(), b.path());
        assert!(a.path().is_dir());
        assert!(
            a.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ws-test-unit-")
        );
        std::fs::write(a.join("file"), "x").unwrap();
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
    }
}
