//! The ceremony transcript: an append-only JSON Lines file in which every
//! entry carries the SHA-256 of the previous entry's exact bytes.
//!
//! Each line is one compact JSON object
//! `{"seq":N,"time":"…","step":"…","prev_sha256":"…","data":{…}}`. The first
//! entry's `prev_sha256` is 64 zeros. The transcript's digest is the SHA-256
//! of its last line: it commits to every earlier line through the chain, and
//! is what custodians sign. Entries are fsynced as they are written, so a
//! crash leaves a verifiable prefix (at worst with an incomplete last line,
//! which the verifier names).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;

/// The file name of the transcript in a ceremony directory.
pub(crate) const FILE_NAME: &str = "transcript.jsonl";
/// Largest transcript we read (a thousand-key ceremony stays far below):
/// `media::MAX_TRANSCRIPT`.
pub const MAX_LEN: u64 = crate::media::MAX_TRANSCRIPT;
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

mod schema;
pub use schema::{
    CeremonyComplete, CeremonyStart, Confirmations, DigestConfirmation, Discarded, HsmSession,
    HsmToken, KeyIntent, KeyRecord, ModuleRecord, Outputs, PlannedKey, PlannedTarget, Protection,
    Resumed, SelfTest, SingleWrapped, Step, TargetWrapped, Truncated, WrapStart, Wrapped,
};

/// One transcript entry: `{"seq":N,"time":"…","step":"…","prev_sha256":"…","data":{…}}`,
/// with `step` and `data` typed together as a [`Step`].
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// 0, 1, 2, … in file order.
    pub seq: u64,
    /// UTC time of writing, RFC 3339.
    pub time: String,
    /// SHA-256 (hex) of the previous line's bytes; 64 zeros for the first.
    pub prev_sha256: String,
    /// What happened, with its details (`step` and `data`).
    pub step: Step,
}

/// An entry as it is on the line: members in this order, `data` untyped.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    seq: u64,
    time: String,
    step: String,
    prev_sha256: String,
    data: serde_json::Value,
}

impl Entry {
    /// The entry's line (without its `\n`), as the writer writes it.
    pub fn to_line(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&Line {
            seq: self.seq,
            time: self.time.clone(),
            step: self.step.name().to_string(),
            prev_sha256: self.prev_sha256.clone(),
            data: self.step.data()?,
        })
    }
}

/// Parse line `i` (without its `\n`) into a typed entry.
fn parse_line(i: usize, line: &[u8]) -> Result<Entry, ChainError> {
    let l: Line = serde_json::from_slice(line).map_err(|e| ChainError::Malformed {
        line: i,
        reason: e.to_string(),
    })?;
    let step = Step::from_parts(l.step.clone(), l.data).map_err(|e| ChainError::StepData {
        line: i,
        step: l.step,
        reason: e.to_string(),
    })?;
    Ok(Entry {
        seq: l.seq,
        time: l.time,
        prev_sha256: l.prev_sha256,
        step,
    })
}

/// Why a transcript does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// The file could not be read.
    #[error("cannot read the transcript {0}: {1}")]
    Read(PathBuf, String),
    /// Larger than any real transcript: refused unread.
    #[error("the transcript {path} is {len} bytes, more than any genuine transcript ({MAX_LEN} bytes): refused unread; check the media")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (at least).
        len: u64,
    },
    /// Not a regular file.
    #[error("the transcript {0} is not a regular file: refused")]
    NotAFile(PathBuf),
    /// No entries.
    #[error("the transcript is empty")]
    Empty,
    /// The last line has no newline: the writer stopped in the middle of it.
    #[error("entry {line} is incomplete (no line end): the run stopped while writing it")]
    Incomplete {
        /// 0-based line number.
        line: usize,
    },
    /// A line is not a transcript entry.
    #[error("entry {line} is not a valid transcript entry ({reason}): the transcript was edited or damaged")]
    Malformed {
        /// 0-based line number.
        line: usize,
        /// Parser message.
        reason: String,
    },
    /// A known step whose `data` lacks a member that step records, or has
    /// one of the wrong type (`docs/formats.md`, "Steps and their `data`").
    #[error("entry {line} ({step}) does not hold what that step records ({reason}): the transcript was edited, damaged, or written by another tool; do not sign or import it")]
    StepData {
        /// 0-based line number.
        line: usize,
        /// The entry's `step`.
        step: String,
        /// Parser message.
        reason: String,
    },
    /// Sequence numbers are not 0, 1, 2, …
    #[error("entry {line} has sequence number {found}, expected {line}: an entry was removed, inserted or moved")]
    Sequence {
        /// 0-based line number.
        line: usize,
        /// The `seq` found.
        found: u64,
    },
    /// `prev_sha256` does not match the previous line.
    #[error("entry {line} does not chain to entry {prev}: entry {prev} was changed, or entries were removed or reordered")]
    Broken {
        /// 0-based line number.
        line: usize,
        /// The previous line.
        prev: usize,
    },
}

/// A transcript that verified: its entries and digest.
#[derive(Clone, Debug)]
pub struct VerifiedTranscript {
    /// The entries in order.
    pub entries: Vec<Entry>,
    /// SHA-256 (hex) of the last line: the transcript digest.
    pub digest: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Verify the chain of a transcript's bytes.
pub fn verify_bytes(bytes: &[u8]) -> Result<VerifiedTranscript, ChainError> {
    if bytes.is_empty() {
        return Err(ChainError::Empty);
    }
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // A complete file ends with '\n', which leaves one empty piece at the end.
    match lines.pop() {
        Some([]) => {}
        _ => return Err(ChainError::Incomplete { line: lines.len() }),
    }
    let mut entries = Vec::with_capacity(lines.len());
    let mut prev = GENESIS.to_string();
    for (i, line) in lines.iter().enumerate() {
        let entry = parse_line(i, line)?;
        if entry.seq != i as u64 {
            return Err(ChainError::Sequence {
                line: i,
                found: entry.seq,
            });
        }
        if entry.prev_sha256 != prev {
            return Err(ChainError::Broken {
                line: i,
                prev: i.saturating_sub(1),
            });
        }
        prev = sha256_hex(line);
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(ChainError::Empty);
    }
    Ok(VerifiedTranscript {
        entries,
        digest: prev,
    })
}

/// Read (at most [`MAX_LEN`] bytes) and verify the transcript at `path`.
pub fn verify_file(path: &Path) -> Result<VerifiedTranscript, ChainError> {
    use crate::media::MediaReadError;
    let bytes = crate::media::read_bounded(path, "transcript", MAX_LEN).map_err(|e| match e {
        MediaReadError::Io { path, source } => ChainError::Read(path, source.to_string()),
        MediaReadError::TooLarge { path, len, .. } => ChainError::TooLarge { path, len },
        MediaReadError::NotAFile { path } => ChainError::NotAFile(path),
    })?;
    verify_bytes(&bytes)
}

/// The step that opens a multi-key ceremony's transcript (`ceremony run`).
pub const CEREMONY_START: &str = "ceremony-start";
/// The step that closes a finished ceremony's transcript.
pub const CEREMONY_COMPLETE: &str = "ceremony-complete";
/// The step that opens a single `wrap`'s transcript.
pub const WRAP_START: &str = "wrap-start";
/// The step that closes a single `wrap`'s transcript (its output files).
pub const WRAP_OUTPUTS: &str = "outputs";

/// Whether a transcript records a finished run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    /// A ceremony ending with `ceremony-complete`, or a wrap ending with its `outputs`.
    Complete,
    /// Not finished: `kind` is what the first entry says it is (`ceremony`,
    /// `wrap`, or the unknown first step), `last_step` is where it stops.
    Incomplete {
        /// What kind of transcript it is.
        kind: String,
        /// The last entry's step.
        last_step: String,
    },
}

impl VerifiedTranscript {
    /// Whether this transcript records a finished run: a ceremony's
    /// (`ceremony-start` … `ceremony-complete`) or a single wrap's
    /// (`wrap-start` … `outputs`); the closing step must be the last entry.
    /// A transcript of any other kind is never complete.
    pub fn completion(&self) -> Completion {
        let first = self.entries.first().map(|e| e.step.name()).unwrap_or("");
        let last = self.entries.last().map(|e| e.step.name()).unwrap_or("");
        let (kind, closing) = match first {
            CEREMONY_START => ("ceremony", CEREMONY_COMPLETE),
            WRAP_START => ("wrap", WRAP_OUTPUTS),
            other => (other, ""),
        };
        if !closing.is_empty() && last == closing && self.entries.len() > 1 {
            Completion::Complete
        } else {
            Completion::Incomplete {
                kind: kind.to_string(),
                last_step: last.to_string(),
            }
        }
    }
}

/// What resume cut off a transcript whose last line was incomplete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TornTail {
    /// How many bytes were removed.
    pub bytes: usize,
    /// SHA-256 (hex) of the removed bytes.
    pub sha256: String,
    /// Complete entries left.
    pub entries_kept: usize,
}

/// If the last line of the transcript at `path` is incomplete (the writer
/// was killed in the middle of it), verify every complete line before it and
/// cut the incomplete one off, fsynced. Nothing is changed unless the rest
/// verifies. Returns what was removed, or `None` for a complete transcript.
pub fn cut_torn_tail(path: &Path) -> Result<Option<TornTail>, ChainError> {
    use crate::media::MediaReadError;
    let read_err = |e: std::io::Error| ChainError::Read(path.to_path_buf(), e.to_string());
    let bytes = crate::media::read_bounded(path, "transcript", MAX_LEN).map_err(|e| match e {
        MediaReadError::Io { path, source } => ChainError::Read(path, source.to_string()),
        MediaReadError::TooLarge { path, len, .. } => ChainError::TooLarge { path, len },
        MediaReadError::NotAFile { path } => ChainError::NotAFile(path),
    })?;
    let Some((keep, torn)) = torn_tail(&bytes)? else {
        return Ok(None);
    };
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(read_err)?;
    file.set_len(keep as u64).map_err(read_err)?;
    crate::bundle::output::fsync(&file).map_err(read_err)?;
    Ok(Some(torn))
}

/// What [`cut_torn_tail`] decides for a transcript's bytes, without touching
/// any file: `None` if it is empty or ends with a complete line; otherwise
/// how many bytes to keep (every complete line, which must verify) and what
/// is cut off.
pub fn torn_tail(bytes: &[u8]) -> Result<Option<(usize, TornTail)>, ChainError> {
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(None);
    }
    let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    let entries_kept = if keep == 0 {
        0
    } else {
        verify_bytes(&bytes[..keep])?.entries.len()
    };
    Ok(Some((
        keep,
        TornTail {
            bytes: bytes.len() - keep,
            sha256: sha256_hex(&bytes[keep..]),
            entries_kept,
        },
    )))
}

/// Appends entries to a transcript file. [`Self::append`] fsyncs each entry;
/// [`Self::append_deferred`] leaves the fsync to the next [`Self::sync`] or
/// [`Self::append`], for a batch of entries nothing acts on until they are
/// durable (group commit).
#[derive(Debug)]
pub struct TranscriptWriter {
    file: File,
    next_seq: u64,
    last_sha256: String,
    /// Entries written since the last fsync.
    unsynced: usize,
}

impl TranscriptWriter {
    /// Create a new transcript at `path` (which must not exist) whose first
    /// entry is `first` (a [`Step::WrapStart`] or [`Step::CeremonyStart`]),
    /// stamped with the tool's version and the SHA-256 of the running binary.
    pub fn create(path: &Path, mut first: Step) -> std::io::Result<Self> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        first.stamp_tool(
            crate::VERSION,
            &running_binary_sha256().unwrap_or_else(|e| format!("unavailable: {e}")),
        );
        let mut w = TranscriptWriter {
            file,
            next_seq: 0,
            last_sha256: GENESIS.to_string(),
            unsynced: 0,
        };
        w.append(first)?;
        Ok(w)
    }

    /// Continue a transcript that verifies (resume after an interruption).
    pub fn resume(path: &Path) -> Result<(Self, VerifiedTranscript), ChainError> {
        let verified = verify_file(path)?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| ChainError::Read(path.to_path_buf(), e.to_string()))?;
        Ok((
            TranscriptWriter {
                file,
                next_seq: verified.entries.len() as u64,
                last_sha256: verified.digest.clone(),
                unsynced: 0,
            },
            verified,
        ))
    }

    /// Append one entry and fsync (which makes every entry before it durable
    /// too); returns the entry's SHA-256 (the new digest).
    pub fn append(&mut self, step: Step) -> std::io::Result<String> {
        crate::profile::time(crate::profile::Phase::Transcript, || {
            let digest = self.write_entry(step)?;
            self.sync_now()?;
            Ok(digest)
        })
    }

    /// Append one entry without fsyncing it: it becomes durable at the next
    /// [`Self::sync`] or [`Self::append`]. Only for entries that nothing
    /// acts on before that sync; a crash may lose them (resume then redoes
    /// their step), never leave a gap before a durable entry.
    pub fn append_deferred(&mut self, step: Step) -> std::io::Result<String> {
        crate::profile::time(crate::profile::Phase::Transcript, || self.write_entry(step))
    }

    /// fsync the entries written by [`Self::append_deferred`] since the last
    /// fsync (nothing to do if there are none).
    pub fn sync(&mut self) -> std::io::Result<()> {
        crate::profile::time(crate::profile::Phase::Transcript, || self.sync_now())
    }

    fn sync_now(&mut self) -> std::io::Result<()> {
        if self.unsynced > 0 {
            crate::bundle::output::fsync(&self.file)?;
            self.unsynced = 0;
        }
        Ok(())
    }

    fn write_entry(&mut self, step: Step) -> std::io::Result<String> {
        if let Step::Unknown { step, .. } = &step {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("refusing to write the unknown transcript step {step:?}"),
            ));
        }
        let entry = Entry {
            seq: self.next_seq,
            time: now(),
            prev_sha256: self.last_sha256.clone(),
            step,
        };
        let line = entry.to_line().map_err(std::io::Error::other)?;
        self.file.write_all(&[line.as_slice(), b"\n"].concat())?;
        self.unsynced += 1;
        self.next_seq += 1;
        self.last_sha256 = sha256_hex(&line);
        Ok(self.last_sha256.clone())
    }

    /// The current digest (SHA-256 of the last line).
    pub fn digest(&self) -> &str {
        &self.last_sha256
    }
}

/// SHA-256 (hex) of the executable that is running, so auditors can tie a
/// ceremony to a reviewed build.
pub(crate) fn running_binary_sha256() -> std::io::Result<String> {
    let exe = std::env::current_exe()?;
    Ok(sha256_hex(&std::fs::read(exe)?))
}

#[cfg(test)]
mod tests {
    use super::schema::samples::*;
    use super::*;

    fn sample() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut w = TranscriptWriter::create(&path, ceremony_start("t")).unwrap();
        for i in 0..4 {
            w.append(middle(&format!("k/{i}"))).unwrap();
        }
        (dir, path)
    }

    #[test]
    fn chain_verifies_and_resumes() {
        let (_d, path) = sample();
        let v = verify_file(&path).unwrap();
        assert_eq!(v.entries.len(), 5);
        let Step::CeremonyStart(start) = &v.entries[0].step else {
            panic!("{:?}", v.entries[0].step)
        };
        assert_eq!(start.tool_version, crate::VERSION);
        assert_eq!(start.tool_binary_sha256.len(), 64);
        let (mut w, before) = TranscriptWriter::resume(&path).unwrap();
        assert_eq!(w.digest(), before.digest);
        w.append(middle("resumed")).unwrap();
        let after = verify_file(&path).unwrap();
        assert_eq!(after.entries.len(), 6);
        assert_ne!(after.digest, before.digest);
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    fn join(lines: &[String]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }

    #[test]
    fn a_torn_last_line_is_cut_only_when_the_rest_verifies() {
        let (_d, path) = sample();
        let full = std::fs::read(&path).unwrap();
        assert_eq!(cut_torn_tail(&path).unwrap(), None);
        std::fs::write(&path, &full[..full.len() - 7]).unwrap();
        let cut = cut_torn_tail(&path).unwrap().unwrap();
        assert_eq!(cut.entries_kept, 4);
        assert_eq!(verify_file(&path).unwrap().entries.len(), 4);
        // A damaged earlier line: nothing is cut, the damage is reported.
        let mut bad = full.clone();
        bad[20] ^= 1;
        bad.truncate(bad.len() - 3);
        std::fs::write(&path, &bad).unwrap();
        assert!(cut_torn_tail(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), bad);
    }

    #[test]
    fn tampering_is_named_precisely() {
        let (_d, path) = sample();
        let l = lines(&path);
        // A changed byte inside an entry breaks the next entry's link.
        let mut changed = l.clone();
        changed[2] = changed[2].replace("k/1", "k/7");
        assert_eq!(
            verify_bytes(&join(&changed)).unwrap_err(),
            ChainError::Broken { line: 3, prev: 2 }
        );
        // Removing an entry.
        let mut removed = l.clone();
        removed.remove(2);
        assert_eq!(
            verify_bytes(&join(&removed)).unwrap_err(),
            ChainError::Sequence { line: 2, found: 3 }
        );
        // Reordering.
        let mut swapped = l.clone();
        swapped.swap(1, 2);
        assert_eq!(
            verify_bytes(&join(&swapped)).unwrap_err(),
            ChainError::Sequence { line: 1, found: 2 }
        );
        // Truncation in the middle of the last line.
        let bytes = join(&l);
        assert_eq!(
            verify_bytes(&bytes[..bytes.len() - 5]).unwrap_err(),
            ChainError::Incomplete { line: 4 }
        );
        // Not JSON.
        let mut garbage = l.clone();
        garbage[1] = "{not json".into();
        assert!(matches!(
            verify_bytes(&join(&garbage)),
            Err(ChainError::Malformed { line: 1, .. })
        ));
        // Dropping the last entry still verifies as a prefix, but with another digest:
        // signatures over the full digest catch it.
        let prefix = verify_bytes(&join(&l[..4])).unwrap();
        assert_ne!(prefix.digest, verify_bytes(&join(&l)).unwrap().digest);
        assert_eq!(verify_bytes(b"").unwrap_err(), ChainError::Empty);
    }

    #[test]
    fn completion_needs_the_closing_step_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut w = TranscriptWriter::create(&path, ceremony_start("t")).unwrap();
        w.append(middle("wrapped")).unwrap();
        assert_eq!(
            verify_file(&path).unwrap().completion(),
            Completion::Incomplete {
                kind: "ceremony".into(),
                last_step: "discarded-unrecorded-output".into()
            }
        );
        w.append(ceremony_complete()).unwrap();
        assert_eq!(
            verify_file(&path).unwrap().completion(),
            Completion::Complete
        );
        w.append(middle("wrapped")).unwrap();
        assert!(matches!(
            verify_file(&path).unwrap().completion(),
            Completion::Incomplete { .. }
        ));
        // A wrap closes with its outputs; a ceremony's closing step does not close it.
        let wpath = dir.path().join("w.jsonl");
        let mut w = TranscriptWriter::create(&wpath, wrap_start("w")).unwrap();
        w.append(ceremony_complete()).unwrap();
        assert!(matches!(
            verify_file(&wpath).unwrap().completion(),
            Completion::Incomplete { .. }
        ));
        w.append(wrap_outputs()).unwrap();
        assert_eq!(
            verify_file(&wpath).unwrap().completion(),
            Completion::Complete
        );
    }

    #[test]
    fn oversized_transcript_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(MAX_LEN + 1).unwrap();
        assert!(matches!(
            verify_file(&path),
            Err(ChainError::TooLarge { len, .. }) if len == MAX_LEN + 1
        ));
    }
}
