//! Writing an output directory all at once: files go into a hidden staging
//! directory next to the target, are made durable, and the staging directory
//! is renamed into place only when everything is written. On any error the
//! staging directory is removed, so a failed run leaves nothing behind.
//!
//! How the files are made durable at [`AtomicDir::commit`] (and for a group
//! of directories at once, [`AtomicDir::commit_all`]) is a [`GroupSync`]:
//! * on Linux 5.8 and later, one `syncfs(2)` of the file system before the
//!   renames and one after them: everything written is on disk before any
//!   directory is renamed into place, and the renames are on disk before
//!   the call returns. Since 5.8, `syncfs` reports a write-back error of any
//!   file of the file system that happened after the descriptor it is given
//!   was opened, and that descriptor (the first staging directory's) is
//!   opened before any of the files is written;
//! * elsewhere, `fsync(2)` of every file, then of each staging directory,
//!   then, after the renames, of each parent: the first fsync commits the
//!   file system's journal for all of them, so the others cost little.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
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
    #[error("cannot write {path}: {source}. Check that the disk or media is mounted, writable and not full, then run the same command again (nothing half-written is kept; a ceremony run resumes where its transcript stops)")]
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

/// How [`AtomicDir::commit_all`] makes what it writes durable (see the
/// module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GroupSync {
    /// One `syncfs(2)` per file system before the renames, one after.
    SyncFs,
    /// `fsync(2)` of every file and directory written.
    EachFile,
}

impl GroupSync {
    /// [`GroupSync::SyncFs`] where the kernel's `syncfs` reports write-back
    /// errors (Linux 5.8 and later), [`GroupSync::EachFile`] elsewhere.
    pub(crate) fn of_this_kernel() -> Self {
        static CHOSEN: std::sync::OnceLock<GroupSync> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            #[cfg(target_os = "linux")]
            {
                let uname = rustix::system::uname();
                if syncfs_reports_errors(&uname.release().to_string_lossy()) {
                    return GroupSync::SyncFs;
                }
            }
            GroupSync::EachFile
        })
    }
}

/// Whether a Linux kernel of this release (`uname -r`) reports write-back
/// errors from `syncfs(2)`: 5.8 and later do; earlier ones return success.
fn syncfs_reports_errors(release: &str) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (5, 8),
        _ => false,
    }
}

/// A directory being written; see the module docs.
#[derive(Debug)]
pub struct AtomicDir {
    staging: PathBuf,
    /// The staging directory, opened when it was created (before any file
    /// in it was written): `syncfs` on it reports write-back errors since.
    staging_dir: File,
    target: PathBuf,
    committed: bool,
    /// Files written but not yet made durable.
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
        let staging_dir = File::open(&staging).map_err(|e| {
            let _ = fs::remove_dir(&staging);
            io(&staging)(e)
        })?;
        Ok(AtomicDir {
            staging,
            staging_dir,
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

    /// Make every file written durable, then move the finished directory
    /// into place, durably (see the module docs).
    pub fn commit(self) -> Result<PathBuf, OutputError> {
        let target = self.target.clone();
        Self::commit_all(vec![self], &[])?;
        Ok(target)
    }

    /// [`Self::commit`] for several directories at once (group commit), with
    /// the kernel's [`GroupSync`]. `also_sync` names directories whose new
    /// entries must be durable with them (such as the parent of a label
    /// directory created for them). Nothing is renamed before every file is
    /// on disk; when this returns, every directory is in place and durable.
    pub(crate) fn commit_all(
        dirs: Vec<AtomicDir>,
        also_sync: &[PathBuf],
    ) -> Result<(), OutputError> {
        Self::commit_all_with(dirs, also_sync, GroupSync::of_this_kernel())
    }

    /// [`Self::commit_all`] with a chosen [`GroupSync`].
    pub(crate) fn commit_all_with(
        dirs: Vec<AtomicDir>,
        also_sync: &[PathBuf],
        how: GroupSync,
    ) -> Result<(), OutputError> {
        match how {
            GroupSync::SyncFs => Self::commit_syncfs(dirs, also_sync),
            GroupSync::EachFile => Self::commit_each_file(dirs, also_sync),
        }
    }

    /// One `syncfs` per file system holding a staging directory or a
    /// directory of `also_sync`, before the renames and after them.
    fn commit_syncfs(mut dirs: Vec<AtomicDir>, also_sync: &[PathBuf]) -> Result<(), OutputError> {
        // One descriptor per file system, the earliest opened: a duplicate
        // shares its open file, so `syncfs` reports errors since that open.
        // An error names the directory the bundle goes into, which exists
        // before the renames and after them.
        let mut by_fs: Vec<(u64, PathBuf, File)> = Vec::new();
        let mut add = |path: &Path, f: &File| -> Result<(), OutputError> {
            let dev = f.metadata().map_err(io(path))?.dev();
            if !by_fs.iter().any(|(d, _, _)| *d == dev) {
                by_fs.push((dev, path.to_path_buf(), f.try_clone().map_err(io(path))?));
            }
            Ok(())
        };
        for d in &dirs {
            add(&parent_of(&d.target), &d.staging_dir)?;
        }
        for p in also_sync {
            add(p, &File::open(p).map_err(io(p))?)?;
        }
        let sync_all = || {
            by_fs.iter().try_for_each(|(_, path, f)| {
                crate::profile::time(crate::profile::Phase::Fsync, || rustix::fs::syncfs(f))
                    .map_err(|e| io(path)(e.into()))
            })
        };
        sync_all()?;
        for d in &mut dirs {
            d.unsynced.clear();
            check_target(&d.target)?;
            fs::rename(&d.staging, &d.target).map_err(io(&d.target))?;
            d.committed = true;
        }
        sync_all()
    }

    /// fsync every file, then every staging directory, rename each into
    /// place, then fsync each parent and each directory of `also_sync`, once
    /// however often it is named.
    fn commit_each_file(
        mut dirs: Vec<AtomicDir>,
        also_sync: &[PathBuf],
    ) -> Result<(), OutputError> {
        for d in &mut dirs {
            for (path, f) in std::mem::take(&mut d.unsynced) {
                fsync(&f).map_err(io(&path))?;
            }
        }
        for d in &dirs {
            fsync(&d.staging_dir).map_err(io(&d.staging))?;
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
    fn syncfs_is_chosen_only_where_it_reports_errors() {
        for (release, reports) in [
            ("6.1.0-28-amd64", true),
            ("5.8.0", true),
            ("5.10.0-33-cloud-amd64", true),
            ("10.0.1", true),
            ("5.7.19-arch1", false),
            ("4.18.0-553.el8_10.x86_64", false),
            ("3.10.0-1160.el7.x86_64", false),
            ("", false),
            ("linux", false),
            ("6", false),
        ] {
            assert_eq!(syncfs_reports_errors(release), reports, "{release}");
        }
    }

    /// Both ways of committing a group give the same tree, sync a created
    /// parent, and leave no staging directory; a target taken meanwhile
    /// stops the commit with the directories before it in place and the
    /// rest removed.
    #[test]
    fn group_commit_either_way() {
        for how in [GroupSync::SyncFs, GroupSync::EachFile] {
            let tmp = tempfile::tempdir().unwrap();
            let label = tmp.path().join("label");
            assert_eq!(
                ensure_real_dir_deferred(&label).unwrap(),
                Some(tmp.path().to_path_buf())
            );
            let mut dirs = Vec::new();
            for name in ["a", "b", "c"] {
                let mut d = AtomicDir::create(&label.join(name)).unwrap();
                d.write("x.bin", name.as_bytes()).unwrap();
                d.write("y.bin", b"y").unwrap();
                dirs.push(d);
            }
            AtomicDir::commit_all_with(dirs, &[tmp.path().to_path_buf()], how).unwrap();
            let mut names: Vec<String> = fs::read_dir(&label)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            assert_eq!(names, ["a", "b", "c"], "{how:?}");
            assert_eq!(fs::read(label.join("b/x.bin")).unwrap(), b"b");

            let (d, e) = (label.join("d"), label.join("e"));
            let mut staged = Vec::new();
            for target in [&d, &e] {
                let mut s = AtomicDir::create(target).unwrap();
                s.write("x.bin", b"x").unwrap();
                staged.push(s);
            }
            fs::create_dir(&e).unwrap();
            assert!(matches!(
                AtomicDir::commit_all_with(staged, &[], how),
                Err(OutputError::Exists(p)) if p == e
            ));
            assert_eq!(fs::read(d.join("x.bin")).unwrap(), b"x", "{how:?}");
            assert_eq!(fs::read_dir(&e).unwrap().count(), 0, "{how:?}");
            let left: Vec<_> = fs::read_dir(&label)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| n.to_string_lossy().starts_with('.'))
                .collect();
            assert!(left.is_empty(), "{how:?}: {left:?}");
        }
    }

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
