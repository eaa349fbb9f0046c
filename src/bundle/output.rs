//! Writing an output directory all at once: files go into a hidden staging
//! directory next to the target, are fsynced, and the staging directory is
//! renamed into place only when everything is written. The files are written
//! first and fsynced together at [`AtomicDir::commit`] (then the staging
//! directory, then, after the rename, its parent): the first fsync commits
//! the file system's journal for all of them, so the others cost little, and
//! nothing is renamed into place before every file is on disk. On any error the
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
    /// Something that must be a plain directory is a symlink or a file.
    #[error("{0} is a symlink or not a directory; refusing to write through it. Remove it (it was not written by byok-airgap) and run again")]
    NotADirectory(PathBuf),
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
pub(crate) fn check_target(target: &Path) -> Result<(), OutputError> {
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
    /// Files written but not yet fsynced.
    unsynced: Vec<(PathBuf, File)>,
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
            unsynced: Vec::new(),
        })
    }

    /// Write one file (never overwriting); it is fsynced at [`Self::commit`],
    /// before the directory is renamed into place.
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> Result<(), OutputError> {
        let path = self.staging.join(name);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        f.write_all(bytes).map_err(io(&path))?;
        self.unsynced.push((path, f));
        Ok(())
    }

    /// Where `name` is being written (inside the staging directory), for
    /// writers that need a path, such as the transcript.
    pub(crate) fn staged_path(&self, name: &str) -> PathBuf {
        self.staging.join(name)
    }

    /// fsync every file written, then the staging directory, and move the
    /// finished directory into place (fsyncing its parent).
    pub fn commit(self) -> Result<PathBuf, OutputError> {
        let target = self.target.clone();
        Self::commit_all(vec![self], &[])?;
        Ok(target)
    }

    /// [`Self::commit`] for several directories at once (group commit): every
    /// file of every directory is fsynced, then every staging directory, then
    /// each is renamed into place, then each parent, and each directory in
    /// `also_sync` (such as the parent of a directory created for them), is
    /// fsynced once however often it is named. The first fsync commits the
    /// file system's journal for all of them. Nothing is renamed before every
    /// file is on disk; when this returns, every directory is in place and
    /// durable.
    pub(crate) fn commit_all(
        mut dirs: Vec<AtomicDir>,
        also_sync: &[PathBuf],
    ) -> Result<(), OutputError> {
        for d in &mut dirs {
            for (path, f) in std::mem::take(&mut d.unsynced) {
                fsync(&f).map_err(io(&path))?;
            }
        }
        for d in &dirs {
            File::open(&d.staging)
                .and_then(|f| fsync(&f))
                .map_err(io(&d.staging))?;
        }
        let mut parents: Vec<PathBuf> = also_sync.to_vec();
        for d in &mut dirs {
            check_target(&d.target)?;
            fs::rename(&d.staging, &d.target).map_err(io(&d.target))?;
            d.committed = true;
            parents.push(parent_of(&d.target));
        }
        // Children before parents: a directory created for these bundles is
        // synced after the renames into it.
        parents.sort_by(|a, b| {
            let depth = |p: &PathBuf| std::cmp::Reverse(p.components().count());
            depth(a).cmp(&depth(b)).then_with(|| a.cmp(b))
        });
        parents.dedup();
        for p in &parents {
            fsync_dir(p)?;
        }
        Ok(())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// Write a new file `path` all at once: the bytes go to a temporary file in
/// the same directory (created exclusively, so never through a symlink), are
/// fsynced, and are linked into place, which fails if `path` exists: nothing
/// is ever overwritten. The directory is fsynced afterwards.
pub fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    write_new_file_mode(path, bytes, 0o644)
}

/// [`write_new_file`] with the file's permission bits (the bastion's state
/// files are 0600). The temporary name carries the process ID and a
/// per-process sequence number, so concurrent writers never share one.
pub fn write_new_file_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), OutputError> {
    use std::os::unix::fs::OpenOptionsExt;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = parent_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = dir.join(format!(".{name}.tmp-{}-{seq}", std::process::id()));
    // A leftover from an earlier process with our PID is ours to replace.
    if fs::symlink_metadata(&temp).is_ok_and(|m| m.file_type().is_file()) {
        fs::remove_file(&temp).map_err(io(&temp))?;
    }
    let result = (|| {
        // create_new (O_EXCL) never opens through a symlink.
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
            .map_err(io(&temp))?;
        f.write_all(bytes).map_err(io(&temp))?;
        fsync(&f).map_err(io(&temp))?;
        // A hard link never replaces an existing name (nor follows a symlink there).
        fs::hard_link(&temp, path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                OutputError::Exists(path.to_path_buf())
            } else {
                io(path)(e)
            }
        })
    })();
    let _ = fs::remove_file(&temp);
    result?;
    fsync_dir(&dir)
}

/// fsync a directory, so that entries created or renamed in it survive a crash.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), OutputError> {
    File::open(dir).and_then(|d| fsync(&d)).map_err(io(dir))
}

/// `f.sync_all()`, counted in [`crate::profile::Phase::Fsync`].
pub(crate) fn fsync(f: &File) -> std::io::Result<()> {
    crate::profile::time(crate::profile::Phase::Fsync, || f.sync_all())
}

/// Create directory `dir` (its parent must exist) and fsync the parent; an
/// existing `dir` is accepted only if it is a real directory, never a symlink.
pub(crate) fn ensure_real_dir(dir: &Path) -> Result<(), OutputError> {
    match ensure_real_dir_deferred(dir)? {
        Some(parent) => fsync_dir(&parent),
        None => Ok(()),
    }
}

/// [`ensure_real_dir`] without the fsync: returns the parent to fsync (before
/// anything relies on `dir` surviving a crash) when `dir` was created now.
pub(crate) fn ensure_real_dir_deferred(dir: &Path) -> Result<Option<PathBuf>, OutputError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_dir() => Ok(None),
        Ok(_) => Err(OutputError::NotADirectory(dir.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir(dir).map_err(io(dir))?;
            Ok(Some(parent_of(dir)))
        }
        Err(e) => Err(io(dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_and_refuse_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("out");
        let mut d = AtomicDir::create(&target).unwrap();
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
    fn new_files_never_overwrite_or_follow_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("SUMMARY.md");
        write_new_file(&p, b"one").unwrap();
        assert!(matches!(
            write_new_file(&p, b"two"),
            Err(OutputError::Exists(_))
        ));
        assert_eq!(fs::read(&p).unwrap(), b"one");
        // A symlink planted at the name is not written through.
        let victim = tmp.path().join("victim");
        fs::write(&victim, b"victim").unwrap();
        let link = tmp.path().join("link.md");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(write_new_file(&link, b"x").is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"victim");
        // Only the three files: no temporary file left behind.
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 3);
        // ensure_real_dir refuses a symlinked directory.
        std::os::unix::fs::symlink(tmp.path(), tmp.path().join("dirlink")).unwrap();
        assert!(matches!(
            ensure_real_dir(&tmp.path().join("dirlink")),
            Err(OutputError::NotADirectory(_))
        ));
        ensure_real_dir(&tmp.path().join("new")).unwrap();
        ensure_real_dir(&tmp.path().join("new")).unwrap();
    }

    #[test]
    fn dropped_without_commit_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("out");
        {
            let mut d = AtomicDir::create(&target).unwrap();
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
