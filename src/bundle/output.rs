//! Writing an output directory all at once: files go into a hidden staging
//! directory next to the target, are fsynced, and the staging directory is
//! renamed into place only when everything is written. On any error the
//! staging directory is removed, so a failed run leaves nothing behind.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why an output directory could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The target already exists.
    #[error("output directory {0} already exists; refusing to overwrite it. Choose a new --out (each wrap gets its own directory)")]
    Exists(PathBuf),
    /// The parent directory does not exist.
    #[error("the parent of output directory {0} does not exist; create it (or mount the removable media) first")]
    NoParent(PathBuf),
    /// An I/O error.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Check that `target` can be created: it does not exist and its parent does.
pub fn check_target(target: &Path) -> Result<(), OutputError> {
    if target.symlink_metadata().is_ok() {
        return Err(OutputError::Exists(target.to_path_buf()));
    }
    let parent = parent_of(target);
    if !parent.is_dir() {
        return Err(OutputError::NoParent(target.to_path_buf()));
    }
    Ok(())
}

fn parent_of(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A directory being written; see the module docs.
#[derive(Debug)]
pub struct AtomicDir {
    staging: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl AtomicDir {
    /// Start writing `target`, which must not exist yet.
    pub fn create(target: &Path) -> Result<Self, OutputError> {
        check_target(target)?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let staging = parent_of(target).join(format!(".{name}.partial-{}", std::process::id()));
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        fs::create_dir(&staging).map_err(io(&staging))?;
        Ok(AtomicDir {
            staging,
            target: target.to_path_buf(),
            committed: false,
        })
    }

    /// Write one file (never overwriting) and fsync it.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), OutputError> {
        let path = self.staging.join(name);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        f.write_all(bytes).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))
    }

    /// Where `name` is being written (inside the staging directory), for
    /// writers that need a path, such as the transcript.
    pub fn staged_path(&self, name: &str) -> PathBuf {
        self.staging.join(name)
    }

    /// Move the finished directory into place.
    pub fn commit(mut self) -> Result<PathBuf, OutputError> {
        File::open(&self.staging)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.staging))?;
        check_target(&self.target)?;
        fs::rename(&self.staging, &self.target).map_err(io(&self.target))?;
        self.committed = true;
        let parent = parent_of(&self.target);
        let _ = File::open(&parent).and_then(|d| d.sync_all());
        Ok(self.target.clone())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_and_refuse_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("out");
        let d = AtomicDir::create(&target).unwrap();
        d.write("a.bin", b"abc").unwrap();
        assert!(!target.exists());
        d.commit().unwrap();
        assert_eq!(fs::read(target.join("a.bin")).unwrap(), b"abc");
        assert!(matches!(
            AtomicDir::create(&target),
            Err(OutputError::Exists(_))
        ));
    }

    #[test]
    fn dropped_without_commit_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("out");
        {
            let d = AtomicDir::create(&target).unwrap();
            d.write("a.bin", b"abc").unwrap();
            assert!(d.write("a.bin", b"again").is_err());
        }
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
        assert!(matches!(
            AtomicDir::create(&tmp.path().join("missing/out")),
            Err(OutputError::NoParent(_))
        ));
    }
}
