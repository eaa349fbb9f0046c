//! Reading files that came on removable media: every read is bounded, so a
//! hostile file cannot exhaust memory or stall a ceremony.
//!
//! The size is checked on the opened file before anything is read, and the
//! read itself stops one byte past the limit (a file that grows while it is
//! read is refused too).

use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest ceremony file.
pub const MAX_CEREMONY_FILE: u64 = 1024 * 1024;
/// Largest custodian policy.
pub(crate) const MAX_POLICY: u64 = 256 * 1024;
/// Largest `manifest.json`.
pub const MAX_MANIFEST: u64 = 64 * 1024;
/// Largest DSSE envelope (one attestation). Its payload lists every output
/// file with its SHA-256 (150 to 330 bytes each once base64-encoded, four
/// per wrap), so it grows with the ceremony: a 1000-wrap ceremony's envelope
/// is about 1 MiB. The transcript records the same list and much more per
/// wrap, so the transcript's bound ([`MAX_TRANSCRIPT`]) covers it.
pub(crate) const MAX_ENVELOPE: u64 = MAX_TRANSCRIPT;
/// Largest transcript (a 1000-key ceremony writes about 3 MiB).
pub const MAX_TRANSCRIPT: u64 = 64 * 1024 * 1024;
/// Largest file of a wrap bundle (`EncryptedKeyMaterial.bin` and
/// `ImportToken.bin` are at most 6144 bytes, `ImportParameters.json` and
/// `manifest.json` at most 64 KiB): checked before a bundle file is hashed.
pub(crate) const MAX_BUNDLE_FILE: u64 = 64 * 1024;
/// Largest `SUMMARY.md` of a ceremony directory (under 1.5 KiB per bundle,
/// like the transcript's share).
pub(crate) const MAX_SUMMARY: u64 = 64 * 1024 * 1024;

/// Why a file from the media could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MediaReadError {
    /// Cannot open or read it.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Larger than the limit for its kind.
    #[error("{path} is {len} bytes, more than any genuine {what} ({limit} bytes): refused unread; check the media")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// What kind of file.
        what: &'static str,
        /// Its size (at least).
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// Not a regular file (a directory, device or FIFO).
    #[error("{path} is not a regular file: refused")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
}

/// Read `path`, a `what` of at most `limit` bytes.
pub fn read_bounded(
    path: &Path,
    what: &'static str,
    limit: u64,
) -> Result<Vec<u8>, MediaReadError> {
    let io = |source| MediaReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(MediaReadError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let too_large = |len| MediaReadError::TooLarge {
        path: path.to_path_buf(),
        what,
        len,
        limit,
    };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_over_the_limit_and_non_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![b'x'; 11]).unwrap();
        assert_eq!(read_bounded(&p, "test file", 11).unwrap().len(), 11);
        let e = read_bounded(&p, "test file", 10).unwrap_err();
        assert!(
            matches!(
                e,
                MediaReadError::TooLarge {
                    len: 11,
                    limit: 10,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("more than any genuine test file"));
        assert!(matches!(
            read_bounded(dir.path(), "test file", 10),
            Err(MediaReadError::NotAFile { .. })
        ));
        assert!(matches!(
            read_bounded(&dir.path().join("missing"), "test file", 10),
            Err(MediaReadError::Io { .. })
        ));
    }
}
