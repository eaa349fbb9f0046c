//! The bastion's own state: receipts of the imports it made, records of the
//! parameters files it wrote, and the alias moves it proved. Nothing here
//! comes from the media: a receipt or record next to a bundle is never read.
//!
//! The directory is `--state-dir`, else `BYOK_STATE_DIR`, else
//! `$XDG_STATE_HOME/byok-ceremony`, else `~/.local/state/byok-ceremony`. It is
//! created mode 0700 and refused if it is a symlink or open to other users.
//! Every file is written to a fresh temporary name (`O_CREAT|O_EXCL|O_NOFOLLOW`),
//! fsynced, then linked to its final name (which fails if the name exists:
//! never overwritten) and the directory fsynced; files are read with
//! `O_NOFOLLOW`, so a symlink planted in the directory is refused.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest state file read (receipts and records are a few hundred bytes).
const MAX_STATE_FILE: u64 = 64 * 1024;

/// Why the state directory refused.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Neither `--state-dir`, `BYOK_STATE_DIR`, `XDG_STATE_HOME` nor `HOME` is set.
    #[error("no state directory: pass --state-dir DIR or set BYOK_STATE_DIR (or HOME)")]
    NoDirectory,
    /// The directory or a file in it could not be created, read or written.
    #[error("state directory: {path}: {error}; check the directory's owner and permissions")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A symlink where the state directory or a state file should be.
    #[error("state directory: {0} is a symlink (or not a plain directory/file); the bastion's state never follows symlinks: remove it and check who planted it")]
    Symlink(PathBuf),
    /// The directory is open to other users.
    #[error("state directory {path} has mode {mode:o}: other users could plant receipts; run `chmod 700 {path}`")]
    Permissions {
        /// The directory.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// A state file is not what it should be.
    #[error("state file {path} is not valid ({problem}); move it away if it is not the bastion's")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The name is taken: a record for this exact thing exists already.
    #[error("state file {0} exists already; the bastion never overwrites its records")]
    Exists(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |error| StateError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Where the state directory path came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateSource {
    /// `--state-dir`.
    Flag,
    /// `BYOK_STATE_DIR`.
    Env,
    /// `$XDG_STATE_HOME/byok-ceremony`.
    XdgStateHome,
    /// `~/.local/state/byok-ceremony`.
    Home,
}

/// The state directory path: `explicit`, else `BYOK_STATE_DIR`, else
/// `$XDG_STATE_HOME/byok-ceremony`, else `$HOME/.local/state/byok-ceremony`.
pub fn resolve(explicit: Option<&Path>) -> Result<(PathBuf, StateSource), StateError> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = explicit {
        return Ok((p.to_path_buf(), StateSource::Flag));
    }
    if let Some(p) = env("BYOK_STATE_DIR") {
        return Ok((PathBuf::from(p), StateSource::Env));
    }
    if let Some(p) = env("XDG_STATE_HOME").filter(|p| Path::new(p).is_absolute()) {
        return Ok((
            PathBuf::from(p).join("byok-ceremony"),
            StateSource::XdgStateHome,
        ));
    }
    match env("HOME") {
        Some(h) => Ok((
            PathBuf::from(h).join(".local/state/byok-ceremony"),
            StateSource::Home,
        )),
        None => Err(StateError::NoDirectory),
    }
}

/// The bastion's state directory, opened and checked. Only [`StateDir::open`] makes one.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

/// Subdirectory of receipts.
const RECEIPTS: &str = "receipts";
/// Subdirectory of parameters records.
const PARAMS: &str = "params";
/// Subdirectory of alias-move records.
const ALIASES: &str = "alias-moves";

/// Create `dir` (mode 0700) if missing; refuse a symlink, a non-directory, or
/// group/other permissions.
fn private_dir(dir: &Path) -> Result<(), StateError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(dir))?;
        }
        Err(e) => return Err(io(dir)(e)),
        Ok(_) => {}
    }
    let m = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    if !m.file_type().is_dir() {
        return Err(StateError::Symlink(dir.to_path_buf()));
    }
    if m.mode() & 0o077 != 0 {
        return Err(StateError::Permissions {
            path: dir.to_path_buf(),
            mode: m.mode() & 0o7777,
        });
    }
    Ok(())
}

impl StateDir {
    /// Open (creating mode 0700 if missing) the state directory at `root`.
    pub fn open(root: &Path) -> Result<StateDir, StateError> {
        private_dir(root)?;
        for sub in [RECEIPTS, PARAMS, ALIASES] {
            private_dir(&root.join(sub))?;
        }
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Write `value` as `sub/name`, never overwriting and never following a symlink.
    fn write_new<T: Serialize>(
        &self,
        sub: &str,
        name: &str,
        value: &T,
    ) -> Result<PathBuf, StateError> {
        let dir = self.root.join(sub);
        let path = dir.join(name);
        let mut json = serde_json::to_vec_pretty(value).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        json.push(b'\n');
        crate::bundle::output::write_new_file_mode(&path, &json, 0o600).map_err(|e| match e {
            crate::bundle::OutputError::Exists(p) => StateError::Exists(p),
            crate::bundle::OutputError::Io { path, source } => StateError::Io {
                path,
                error: source,
            },
            other => StateError::Io {
                path: dir.clone(),
                error: std::io::Error::other(other.to_string()),
            },
        })?;
        Ok(path)
    }

    /// Read `sub/name` if it exists, refusing a symlink or anything but a regular file.
    fn read<T: StateRecord>(&self, sub: &str, name: &str) -> Result<Option<T>, StateError> {
        let path = self.root.join(sub).join(name);
        let f = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(StateError::Symlink(path));
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let m = f.metadata().map_err(io(&path))?;
        if !m.file_type().is_file() {
            return Err(StateError::Symlink(path));
        }
        let mut bytes = Vec::new();
        f.take(MAX_STATE_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(io(&path))?;
        parse_record(path, &bytes).map(Some)
    }

    /// Every record in `sub` (files whose name ends in `.json`).
    fn all<T: StateRecord>(&self, sub: &str) -> Result<Vec<T>, StateError> {
        let dir = self.root.join(sub);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            if let Some(v) = self.read(sub, &name)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The receipt of importing bundle `target` of the ceremony whose
    /// transcript digest is `transcript_sha256`, if this bastion made one.
    pub fn receipt(
        &self,
        transcript_sha256: &str,
        target: &str,
    ) -> Result<Option<Receipt>, StateError> {
        let name = receipt_name(transcript_sha256, target);
        let r: Option<Receipt> = self.read(RECEIPTS, &name)?;
        if let Some(r) = &r {
            if r.transcript_sha256 != transcript_sha256 || r.target != target {
                return Err(StateError::Corrupt {
                    path: self.root.join(RECEIPTS).join(name),
                    problem: format!(
                        "it records transcript {} bundle {:?}, not the one its name is for",
                        r.transcript_sha256, r.target
                    ),
                });
            }
        }
        Ok(r)
    }

    /// Record a receipt (create-new: an existing receipt for the same bundle is never replaced).
    pub fn write_receipt(&self, r: &Receipt) -> Result<PathBuf, StateError> {
        self.write_new(RECEIPTS, &receipt_name(&r.transcript_sha256, &r.target), r)
    }

    /// Where the receipt of (`transcript_sha256`, `target`) is or would be.
    pub fn receipt_path(&self, transcript_sha256: &str, target: &str) -> PathBuf {
        self.root
            .join(RECEIPTS)
            .join(receipt_name(transcript_sha256, target))
    }

    /// Record a parameters file this bastion wrote.
    pub fn record_params(&self, r: &ParamsRecord) -> Result<PathBuf, StateError> {
        self.write_new(PARAMS, &format!("{}.json", r.import_token_sha256), r)
    }

    /// The record of the parameters file holding the import token whose SHA-256 is `token_sha256`.
    pub fn params_record(
        &self,
        token_sha256: &[u8; 32],
    ) -> Result<Option<ParamsRecord>, StateError> {
        let hex = hex::encode(token_sha256);
        let r: Option<ParamsRecord> = self.read(PARAMS, &format!("{hex}.json"))?;
        if let Some(r) = &r {
            if r.import_token_sha256 != hex {
                return Err(StateError::Corrupt {
                    path: self.root.join(PARAMS).join(format!("{hex}.json")),
                    problem: "it records another import token than its name says".into(),
                });
            }
        }
        Ok(r)
    }

    /// Record an alias move this bastion made after proving the new key.
    pub fn record_alias_move(&self, r: &AliasMoveRecord) -> Result<PathBuf, StateError> {
        let name = hex::encode(Sha256::digest(
            format!(
                "byok-alias-move\0{}\0{}\0{}\0{}",
                r.alias,
                r.previous_key.as_deref().unwrap_or(""),
                r.new_key,
                r.moved_at
            )
            .as_bytes(),
        ));
        self.write_new(ALIASES, &format!("{name}.json"), r)
    }

    /// The alias moves this bastion recorded that replaced `key_id`.
    pub fn moves_replacing(&self, key_id: &str) -> Result<Vec<AliasMoveRecord>, StateError> {
        Ok(self
            .all::<AliasMoveRecord>(ALIASES)?
            .into_iter()
            .filter(|m| {
                m.previous_key
                    .as_deref()
                    .is_some_and(|p| super::client::key_id_of(p) == key_id)
            })
            .collect())
    }
}

/// What a state file must hold beyond its JSON shape: the bastion relies on
/// its own records (receipts decide what is sent again and what `verify`
/// calls proven), so one that is not what the bastion writes is refused,
/// not interpreted.
pub(crate) trait StateRecord: DeserializeOwned {
    /// Why this record cannot be one the bastion wrote, if it cannot.
    fn problem(&self) -> Option<String>;
}

/// Parse a state file's bytes (`path` is for the message): at most 64 KiB,
/// strict JSON of the record's shape, and the record's own checks.
pub(crate) fn parse_record<T: StateRecord>(path: PathBuf, bytes: &[u8]) -> Result<T, StateError> {
    let corrupt = |problem: String| StateError::Corrupt {
        path: path.clone(),
        problem,
    };
    if bytes.len() as u64 > MAX_STATE_FILE {
        return Err(corrupt("larger than 64 KiB".into()));
    }
    let record: T = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    match record.problem() {
        Some(problem) => Err(corrupt(problem)),
        None => Ok(record),
    }
}

/// Why `value` is not a lowercase hex SHA-256, if it is not.
fn sha256_problem(field: &str, value: &str) -> Option<String> {
    let ok = value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (!ok).then(|| format!("{field} is not a lowercase hex SHA-256"))
}

/// Why `value` is not an RFC 3339 time, if it is not.
fn time_problem(field: &str, value: &str) -> Option<String> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .is_err()
        .then(|| format!("{field} is not an RFC 3339 time"))
}

impl StateRecord for Receipt {
    fn problem(&self) -> Option<String> {
        if self.key_arn.is_empty() || self.key_arn.chars().any(char::is_control) {
            return Some("key_arn is empty or holds a control character".into());
        }
        if !matches!(self.import_type.as_str(), "DEFAULT" | "NEW_KEY_MATERIAL") {
            return Some("import_type is neither DEFAULT nor NEW_KEY_MATERIAL".into());
        }
        if self.how != "imported" && !self.how.starts_with("reconciled") {
            return Some("how is neither imported nor reconciled".into());
        }
        sha256_problem("transcript_sha256", &self.transcript_sha256)
            .or_else(|| {
                sha256_problem(
                    "encrypted_key_material_sha256",
                    &self.encrypted_key_material_sha256,
                )
            })
            .or_else(|| time_problem("imported_at", &self.imported_at))
    }
}

impl StateRecord for ParamsRecord {
    fn problem(&self) -> Option<String> {
        if !self.path.is_absolute() {
            return Some("path is not absolute".into());
        }
        sha256_problem("sha256", &self.sha256)
            .or_else(|| sha256_problem("import_token_sha256", &self.import_token_sha256))
            .or_else(|| sha256_problem("wrapping_key_sha256", &self.wrapping_key_sha256))
            .or_else(|| time_problem("recorded_at", &self.recorded_at))
    }
}

impl StateRecord for AliasMoveRecord {
    fn problem(&self) -> Option<String> {
        if !self.alias.starts_with("alias/") {
            return Some("alias does not start with alias/".into());
        }
        time_problem("moved_at", &self.moved_at)
    }
}

/// The file name of a receipt: SHA-256 over the transcript digest and the
/// bundle ID, NUL-separated, so two different (ceremony, bundle) pairs never
/// share a name, whatever characters the bundle ID holds.
pub fn receipt_name(transcript_sha256: &str, target: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"byok-ceremony receipt v1\0");
    h.update(transcript_sha256.as_bytes());
    h.update(b"\0");
    h.update(target.as_bytes());
    format!("{}.json", hex::encode(h.finalize()))
}

/// What an import did, recorded in the bastion's state directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The AWS account of the key (from its ARN).
    pub account: Option<String>,
    /// The Region the import was sent to.
    pub region: String,
    /// KMS key ARN.
    pub key_arn: String,
    /// KMS's KeyMaterialId, when it returns one.
    pub key_material_id: Option<String>,
    /// AWS request ID.
    pub request_id: Option<String>,
    /// `NEW_KEY_MATERIAL` or `DEFAULT`.
    pub import_type: String,
    /// How the receipt came about: `imported` (this bastion's ImportKeyMaterial
    /// answered) or `reconciled` (KMS already held this bundle's material).
    #[serde(default = "imported")]
    pub how: String,
    /// UTC, RFC 3339.
    pub imported_at: String,
    /// The verified ceremony.
    pub ceremony_id: String,
    /// `LABEL/TARGET` in a ceremony directory, `""` for a single wrap.
    pub target: String,
    /// Its transcript digest.
    pub transcript_sha256: String,
    /// Custodians whose attestations verified.
    pub signers: Vec<String>,
    /// SHA-256 of the uploaded EncryptedKeyMaterial.bin.
    pub encrypted_key_material_sha256: String,
    /// ImportKeyMaterial retries this import needed (throttling, server errors, lost connections).
    #[serde(default)]
    pub retries: u32,
}

fn imported() -> String {
    "imported".into()
}

/// A parameters file this bastion wrote with `prepare`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamsRecord {
    /// Where it was written (absolute).
    pub path: PathBuf,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    /// SHA-256 of its import token (the record's key).
    pub import_token_sha256: String,
    /// SHA-256 of the wrapping public key.
    pub wrapping_key_sha256: String,
    /// KMS key ARN.
    pub key_arn: String,
    /// Region.
    pub region: String,
    /// UTC, RFC 3339.
    pub recorded_at: String,
}

/// An alias move this bastion made after proving the new key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasMoveRecord {
    /// The alias.
    pub alias: String,
    /// Region.
    pub region: String,
    /// The key it pointed to before.
    pub previous_key: Option<String>,
    /// The proven key it points to now.
    pub new_key: String,
    /// How the new key was proven.
    pub proof: String,
    /// UTC, RFC 3339.
    pub moved_at: String,
}

/// Receipt files left next to `dir` by earlier versions (`NAME*.import-receipt.json`);
/// they are ignored: only the state directory's receipts count.
pub fn receipts_next_to(dir: &Path) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (
        dir.parent().map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        }),
        dir.file_name().map(|n| n.to_string_lossy().into_owned()),
    ) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&name) && n.ends_with(".import-receipt.json"))
        .map(|n| parent.join(n))
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(digest: &str, target: &str) -> Receipt {
        Receipt {
            account: Some("000000000000".into()),
            region: "us-east-1".into(),
            key_arn: "arn:aws:kms:us-east-1:000000000000:key/k".into(),
            key_material_id: Some("ab".repeat(32)),
            request_id: None,
            import_type: "DEFAULT".into(),
            how: "imported".into(),
            imported_at: "2026-12-01T00:00:00Z".into(),
            ceremony_id: "c".into(),
            target: target.into(),
            transcript_sha256: digest.into(),
            signers: vec!["alice".into()],
            encrypted_key_material_sha256: "cd".repeat(32),
            retries: 0,
        }
    }

    #[test]
    fn receipt_names_cannot_collide() {
        let d = "ab".repeat(32);
        // The old scheme (directory name + target with / turned into .) made these one file.
        assert_ne!(receipt_name(&d, "a.b/c"), receipt_name(&d, "a/b.c"));
        assert_ne!(receipt_name(&d, "a.b"), receipt_name(&d, "a/b"));
        assert_ne!(receipt_name(&d, ""), receipt_name(&"cd".repeat(32), ""));
        // The separator keeps digest and target apart.
        assert_ne!(receipt_name("ab", "c"), receipt_name("a", "bc"));
        let n = receipt_name(&d, "../../etc/passwd");
        assert!(
            n.len() == 69 && n.ends_with(".json") && !n.contains('/'),
            "{n}"
        );
    }

    #[test]
    fn receipts_are_written_once_and_read_back() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(&t.path().join("state")).unwrap();
        let mode = std::fs::metadata(s.path()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let d = "ab".repeat(32);
        assert_eq!(s.receipt(&d, "k/t").unwrap(), None);
        let r = receipt(&d, "k/t");
        s.write_receipt(&r).unwrap();
        assert_eq!(s.receipt(&d, "k/t").unwrap(), Some(r.clone()));
        assert_eq!(s.receipt(&d, "k/u").unwrap(), None);
        // Never overwritten.
        assert!(matches!(s.write_receipt(&r), Err(StateError::Exists(_))));
        // No temporary files left behind.
        let left: Vec<_> = std::fs::read_dir(s.path().join(RECEIPTS))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn symlinks_are_refused() {
        use std::os::unix::fs::symlink;
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(&t.path().join("state")).unwrap();
        let d = "ab".repeat(32);
        // A symlink planted where a receipt would be: reading refuses, writing refuses.
        let elsewhere = t.path().join("forged.json");
        std::fs::write(&elsewhere, serde_json::to_vec(&receipt(&d, "k/t")).unwrap()).unwrap();
        symlink(&elsewhere, s.receipt_path(&d, "k/t")).unwrap();
        assert!(matches!(s.receipt(&d, "k/t"), Err(StateError::Symlink(_))));
        assert!(matches!(
            s.write_receipt(&receipt(&d, "k/t")),
            Err(StateError::Exists(_))
        ));
        // The state directory itself may not be a symlink.
        let real = t.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = t.path().join("link");
        symlink(&real, &link).unwrap();
        assert!(matches!(StateDir::open(&link), Err(StateError::Symlink(_))));
        // Nor open to other users.
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        assert!(matches!(
            StateDir::open(&open),
            Err(StateError::Permissions { .. })
        ));
    }

    #[test]
    fn a_receipt_under_another_name_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(&t.path().join("state")).unwrap();
        let d = "ab".repeat(32);
        std::fs::write(
            s.receipt_path(&d, "k/t"),
            serde_json::to_vec(&receipt(&d, "other/t")).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            s.receipt(&d, "k/t"),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn resolution_order() {
        let (p, src) = resolve(Some(Path::new("/x"))).unwrap();
        assert_eq!((p, src), (PathBuf::from("/x"), StateSource::Flag));
    }
}
