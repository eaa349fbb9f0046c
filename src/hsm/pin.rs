//! Where a PIN comes from. Never from the command line: argv is visible to
//! every user of the machine and lands in shell history.
//!
//! * A PIN file must be a regular file, not a symlink, readable and writable
//!   by its owner only (`chmod 600`), and at most [`MAX_PIN_FILE`] bytes.
//! * A PIN environment variable is removed from this process's environment
//!   as soon as it is read, so child processes and later code never see it.

use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use secrecy::SecretString;
use zeroize::Zeroizing;

/// Largest PIN file accepted (a PIN and a line end; tokens allow far less).
pub const MAX_PIN_FILE: u64 = 1024;

/// Where to read a token PIN from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// Ask on the terminal without echo.
    Prompt,
    /// Read from this environment variable (removed once read).
    Env(String),
    /// Read the first line of this file (owner-only, not a symlink).
    File(PathBuf),
}

/// Why no PIN could be read.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The environment variable is unset or empty.
    #[error(
        "environment variable {0} is not set or is empty; export the PIN in it or use --pin-file"
    )]
    EnvMissing(String),
    /// The PIN file could not be read.
    #[error("cannot read the PIN file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The PIN file is a symbolic link.
    #[error("the PIN file {0} is a symbolic link: refused, because the file it points to can be swapped. Give the path of the file itself (a regular file, chmod 600)")]
    FileIsSymlink(PathBuf),
    /// The PIN file is not a regular file.
    #[error("the PIN file {0} is not a regular file: refused. Put the PIN in a regular file (chmod 600)")]
    FileNotRegular(PathBuf),
    /// Others than the owner may read or write the PIN file.
    #[error("the PIN file {path} has mode {mode:04o}: its group or other users may read or change it. Run `chmod 600 {path}` (and check who may have read it) before using it")]
    FileTooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The PIN file is larger than any PIN.
    #[error("the PIN file {path} is {len} bytes, more than any PIN ({MAX_PIN_FILE} bytes): refused unread; check it is the right file")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (at least).
        len: u64,
    },
    /// The PIN file is empty.
    #[error("the PIN file {0} is empty")]
    FileEmpty(PathBuf),
    /// No terminal to prompt on.
    #[error("cannot prompt for the {what} PIN: no terminal ({source}); use --pin-env VAR or --pin-file PATH")]
    NoTerminal {
        /// Which PIN.
        what: String,
        /// The terminal error.
        source: std::io::Error,
    },
    /// The typed PIN was empty.
    #[error("no PIN was entered")]
    Empty,
}

/// Read a PIN file's first line, refusing symlinks, files others may read
/// or write, and files larger than [`MAX_PIN_FILE`].
fn read_pin_file(path: &std::path::Path) -> Result<SecretString, PinError> {
    let err = |source| PinError::File {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(err)?;
    if meta.file_type().is_symlink() {
        return Err(PinError::FileIsSymlink(path.to_path_buf()));
    }
    // O_NOFOLLOW: a symlink swapped in after the check above is refused too.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                PinError::FileIsSymlink(path.to_path_buf())
            } else {
                err(e)
            }
        })?;
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        return Err(PinError::FileNotRegular(path.to_path_buf()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PinError::FileTooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > MAX_PIN_FILE {
        return Err(PinError::FileTooLarge {
            path: path.to_path_buf(),
            len: meta.len(),
        });
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_PIN_FILE as usize + 1));
    file.take(MAX_PIN_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    if bytes.len() as u64 > MAX_PIN_FILE {
        return Err(PinError::FileTooLarge {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
        });
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the PIN is not UTF-8 text",
        ))
    })?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(PinError::FileEmpty(path.to_path_buf()));
    }
    Ok(SecretString::from(line.to_string()))
}

impl PinSource {
    /// The source the command line names: `--pin-env VAR` (or
    /// `--so-pin-env`), else `--pin-file PATH`, else a no-echo prompt. PINs
    /// are never taken from the command line itself.
    pub fn from_options(env: Option<&str>, file: Option<&std::path::Path>) -> PinSource {
        match (env, file) {
            (Some(v), _) => PinSource::Env(v.to_string()),
            (None, Some(f)) => PinSource::File(f.to_path_buf()),
            (None, None) => PinSource::Prompt,
        }
    }

    /// Read the PIN; `what` names the token in the prompt.
    pub fn read(&self, what: &str) -> Result<SecretString, PinError> {
        match self {
            PinSource::Env(var) => {
                let value = std::env::var(var).map(Zeroizing::new);
                // Removed whatever it held, so nothing started later inherits it.
                std::env::remove_var(var);
                match value {
                    Ok(v) if !v.is_empty() => Ok(SecretString::from(v.to_string())),
                    _ => Err(PinError::EnvMissing(var.clone())),
                }
            }
            PinSource::File(path) => read_pin_file(path),
            PinSource::Prompt => {
                let typed = Zeroizing::new(
                    rpassword::prompt_password(format!("PIN for {what} (input hidden): "))
                        .map_err(|source| PinError::NoTerminal {
                            what: what.to_string(),
                            source,
                        })?,
                );
                if typed.is_empty() {
                    return Err(PinError::Empty);
                }
                Ok(SecretString::from(typed.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::os::unix::fs::symlink;

    #[test]
    fn the_environment_variable_wins_then_the_file_then_the_prompt() {
        let f = std::path::Path::new("pin.txt");
        for (env, file, want) in [
            (Some("V"), Some(f), PinSource::Env("V".into())),
            (Some("V"), None, PinSource::Env("V".into())),
            (None, Some(f), PinSource::File(f.into())),
            (None, None, PinSource::Prompt),
        ] {
            assert_eq!(PinSource::from_options(env, file), want);
        }
    }

    fn pin_file(dir: &std::path::Path, name: &str, text: &[u8], mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn owner_only_pin_file_is_read() {
        let d = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o400] {
            let p = pin_file(
                d.path(),
                &format!("pin{mode:o}"),
                b"1234\r\nignored\n",
                mode,
            );
            let pin = PinSource::File(p).read("t").unwrap();
            assert_eq!(pin.expose_secret(), "1234");
        }
    }

    #[test]
    fn pin_file_readable_or_writable_by_others_is_refused() {
        let d = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o666] {
            let p = pin_file(d.path(), &format!("pin{mode:o}"), b"1234\n", mode);
            let e = PinSource::File(p).read("t").unwrap_err();
            assert!(
                matches!(e, PinError::FileTooOpen { mode: m, .. } if m == mode),
                "{mode:o}: {e}"
            );
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
    }

    #[test]
    fn symlinked_pin_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let real = pin_file(d.path(), "real", b"1234\n", 0o600);
        let link = d.path().join("link");
        symlink(&real, &link).unwrap();
        let e = PinSource::File(link).read("t").unwrap_err();
        assert!(matches!(e, PinError::FileIsSymlink(_)), "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }

    #[test]
    fn oversized_empty_and_non_regular_pin_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let big = pin_file(d.path(), "big", &[b'1'; 4096], 0o600);
        assert!(matches!(
            PinSource::File(big).read("t"),
            Err(PinError::FileTooLarge { len: 4096, .. })
        ));
        let empty = pin_file(d.path(), "empty", b"\n", 0o600);
        assert!(matches!(
            PinSource::File(empty).read("t"),
            Err(PinError::FileEmpty(_))
        ));
        let sub = d.path().join("dir");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(
            PinSource::File(sub).read("t"),
            Err(PinError::FileNotRegular(_))
        ));
    }

    #[test]
    fn pin_env_variable_is_removed_once_read() {
        let var = "BYOK_PIN_UNIT_TEST_REMOVED";
        std::env::set_var(var, "24680");
        let pin = PinSource::Env(var.into()).read("t").unwrap();
        assert_eq!(pin.expose_secret(), "24680");
        assert!(
            std::env::var_os(var).is_none(),
            "the PIN stays in the environment"
        );
        assert!(matches!(
            PinSource::Env(var.into()).read("t"),
            Err(PinError::EnvMissing(_))
        ));
    }
}
