//! Custodian attestations over a ceremony directory, and their verification.
//!
//! A ceremony directory holds `transcript.jsonl`, the output files, and
//! `attestations/NAME.dsse.json`, one DSSE envelope per custodian. Each
//! envelope's payload ([`Payload`]) names the ceremony, the transcript digest
//! and every output file with its SHA-256. [`verify`] checks all of it against
//! a policy the verifier holds and returns a [`VerifiedCeremony`], the proof
//! the upload path requires.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::dsse::{self, Envelope, SignatureError, PAYLOAD_TYPE};
use super::policy::Policy;
use super::transcript::{self, ChainError, Completion, VerifiedTranscript};
use crate::media::{self, MediaReadError};
use crate::names::CustodianName;

/// Directory of attestations inside a ceremony directory.
pub const ATTESTATIONS: &str = "attestations";
/// The payload format tag.
pub const PAYLOAD_FORMAT: &str = "byok-ceremony/attestation/v1";

/// An output file and its SHA-256, path relative to the ceremony directory with `/`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputFile {
    /// Relative path, `/`-separated.
    pub path: String,
    /// SHA-256, hex.
    pub sha256: String,
}

/// What a custodian signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// Always [`PAYLOAD_FORMAT`].
    pub format: String,
    /// The ceremony's ID, from the transcript's first entry.
    pub ceremony_id: String,
    /// The signing custodian's name.
    pub custodian: CustodianName,
    /// The transcript digest (SHA-256 of its last line).
    pub transcript_sha256: String,
    /// Number of transcript entries.
    pub transcript_entries: usize,
    /// Every output file.
    pub outputs: Vec<OutputFile>,
    /// How the custodian confirmed: `typed` or `--yes`.
    pub confirmation: String,
    /// UTC time of signing, RFC 3339.
    pub signed_at: String,
    /// The custodian knowingly signed a transcript that does not record a
    /// finished run (`ceremony sign --partial`). Absent (false) otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// Why a ceremony directory does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The transcript chain is broken.
    #[error("transcript: {0}")]
    Chain(#[from] ChainError),
    /// An I/O error.
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, String),
    /// A symlink or special file in the directory.
    #[error("{0} is not a regular file; ceremony directories hold only regular files")]
    NotRegular(String),
    /// The transcript records no ceremony ID.
    #[error("the transcript's first entry has no ceremony_id")]
    NoCeremonyId,
    /// A file differs from what the transcript records.
    #[error("output {path}: {problem}")]
    Output {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// An attestation is malformed.
    #[error("attestation {file}: {problem}")]
    Attestation {
        /// The envelope file.
        file: String,
        /// What is wrong.
        problem: String,
    },
    /// A file from the media is too large, not a regular file, or unreadable.
    #[error(transparent)]
    Media(#[from] MediaReadError),
    /// A signature in an attestation is refused (high-S ECDSA, malformed, or not valid).
    #[error("attestation {file}: signature by {custodian:?} {source}")]
    Signature {
        /// The envelope file.
        file: String,
        /// The custodian whose key it claims.
        custodian: String,
        /// Why.
        source: SignatureError,
    },
    /// The transcript records a run that has not finished.
    #[error("the {kind} transcript ends with step {last_step:?}, not its closing entry: the run has not finished. Resume it (`byok-airgap ceremony run` with the same --out) and sign the finished ceremony, or sign with --partial to attest only what it records so far (your attestation will say so)")]
    Incomplete {
        /// `ceremony`, `wrap`, or the unknown first step.
        kind: String,
        /// The transcript's last step.
        last_step: String,
    },
    /// Not enough custodians signed.
    #[error("only {signed} of the {threshold} custodians the policy requires signed this ceremony (valid signatures from: {names}); collect the missing signatures with `byok-airgap ceremony sign`")]
    Threshold {
        /// Distinct valid signers.
        signed: usize,
        /// Required.
        threshold: usize,
        /// Who signed.
        names: String,
    },
}

/// Proof that a ceremony directory verified against a policy. Only [`verify`] makes one.
#[derive(Clone, Debug)]
pub struct VerifiedCeremony {
    dir: PathBuf,
    ceremony_id: String,
    transcript: VerifiedTranscript,
    outputs: Vec<OutputFile>,
    signers: Vec<String>,
    complete: bool,
}

impl VerifiedCeremony {
    /// The verified directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The ceremony ID.
    pub fn ceremony_id(&self) -> &str {
        &self.ceremony_id
    }
    /// The transcript digest that was signed.
    pub fn transcript_digest(&self) -> &str {
        &self.transcript.digest
    }
    /// The transcript entries.
    pub fn entries(&self) -> &[transcript::Entry] {
        &self.transcript.entries
    }
    /// The output files and their verified hashes.
    pub fn outputs(&self) -> &[OutputFile] {
        &self.outputs
    }
    /// Whether `path` (relative) is a verified output with this content.
    pub fn covers(&self, path: &str, bytes: &[u8]) -> bool {
        let h = hex::encode(Sha256::digest(bytes));
        self.outputs.iter().any(|o| o.path == path && o.sha256 == h)
    }
    /// The custodians whose signatures verified, sorted.
    pub fn signers(&self) -> &[String] {
        &self.signers
    }
    /// Whether the transcript records a finished run (else every signer
    /// signed it knowingly with `--partial`).
    pub fn is_complete(&self) -> bool {
        self.complete
    }
    /// The wrap bundles in the directory, in sorted order: `""` for a single
    /// wrap (`manifest.json` at the top), else `LABEL/TARGET` of a ceremony.
    pub fn bundles(&self) -> Vec<String> {
        bundles_in(&self.outputs)
    }
}

/// The wrap bundles among `outputs`, sorted: `""` for a single wrap
/// (`manifest.json` at the top), else `LABEL/TARGET` of a ceremony.
pub fn bundles_in(outputs: &[OutputFile]) -> Vec<String> {
    use crate::bundle::manifest::MANIFEST;
    let mut out: Vec<String> = outputs
        .iter()
        .filter_map(|o| {
            if o.path == MANIFEST {
                Some(String::new())
            } else {
                o.path
                    .strip_suffix(&format!("/{MANIFEST}"))
                    .filter(|t| t.split('/').count() == 2)
                    .map(String::from)
            }
        })
        .collect();
    out.sort();
    out
}

fn io_err(p: &Path) -> impl FnOnce(std::io::Error) -> VerifyError + '_ {
    move |e| VerifyError::Io(p.to_path_buf(), e.to_string())
}

fn walk(root: &Path, rel: &str, out: &mut Vec<OutputFile>) -> Result<(), VerifyError> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err(&dir))?;
    names.sort();
    for name in names {
        let name = name.to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if rel.is_empty() && (name == transcript::FILE_NAME || name == ATTESTATIONS) {
            continue;
        }
        let full = root.join(&path);
        let meta = std::fs::symlink_metadata(&full).map_err(io_err(&full))?;
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            // Checked against the transcript's hashes: nothing genuine is
            // larger, so a huge file is refused before it is read.
            let (what, limit) = if rel.is_empty() && name == super::run::SUMMARY {
                ("ceremony summary", media::MAX_SUMMARY)
            } else {
                ("bundle file", media::MAX_BUNDLE_FILE)
            };
            let bytes = media::read_bounded(&full, what, limit)?;
            out.push(OutputFile {
                path,
                sha256: hex::encode(Sha256::digest(&bytes)),
            });
        } else {
            return Err(VerifyError::NotRegular(path));
        }
    }
    Ok(())
}

/// Every output file in `dir` (all regular files but the transcript and attestations), sorted.
pub fn list_outputs(dir: &Path) -> Result<Vec<OutputFile>, VerifyError> {
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

/// The outputs the transcript records: every `data.outputs` array of `{path, sha256}`.
fn recorded_outputs(t: &VerifiedTranscript) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for e in &t.entries {
        if let Some(list) = e.data.get("outputs").and_then(|o| o.as_array()) {
            for o in list {
                if let (Some(p), Some(h)) = (o["path"].as_str(), o["sha256"].as_str()) {
                    m.insert(p.to_string(), h.to_string());
                }
            }
        }
    }
    m
}

/// Check the transcript and that the files on disk are exactly the ones it records.
pub fn check_directory(
    dir: &Path,
) -> Result<(String, VerifiedTranscript, Vec<OutputFile>), VerifyError> {
    let t = transcript::verify_file(&dir.join(transcript::FILE_NAME))?;
    let ceremony_id = t.entries[0].data["ceremony_id"]
        .as_str()
        .ok_or(VerifyError::NoCeremonyId)?
        .to_string();
    let on_disk = list_outputs(dir)?;
    let recorded = recorded_outputs(&t);
    for f in &on_disk {
        match recorded.get(&f.path) {
            None => {
                return Err(VerifyError::Output {
                    path: f.path.clone(),
                    problem: "is not recorded in the transcript (added after the ceremony?)".into(),
                })
            }
            Some(h) if h != &f.sha256 => {
                return Err(VerifyError::Output {
                    path: f.path.clone(),
                    problem: format!(
                        "SHA-256 is {}, the transcript records {h}: the file was changed",
                        f.sha256
                    ),
                })
            }
            Some(_) => {}
        }
    }
    let present: BTreeSet<&str> = on_disk.iter().map(|f| f.path.as_str()).collect();
    if let Some(missing) = recorded.keys().find(|p| !present.contains(p.as_str())) {
        return Err(VerifyError::Output {
            path: missing.clone(),
            problem: "is recorded in the transcript but missing".into(),
        });
    }
    Ok((ceremony_id, t, on_disk))
}

/// Build the payload a custodian signs for `dir`. A transcript that does not
/// record a finished run ([`VerifiedTranscript::completion`]) is refused
/// ([`VerifyError::Incomplete`]) unless `partial`, which the payload then
/// records; `partial` on a finished run changes nothing.
pub fn payload_for(
    dir: &Path,
    custodian: &CustodianName,
    confirmation: &str,
    partial: bool,
) -> Result<Payload, VerifyError> {
    let (ceremony_id, t, outputs) = check_directory(dir)?;
    let incomplete = match t.completion() {
        Completion::Complete => false,
        Completion::Incomplete { kind, last_step } => {
            if !partial {
                return Err(VerifyError::Incomplete { kind, last_step });
            }
            true
        }
    };
    Ok(Payload {
        partial: incomplete,
        format: PAYLOAD_FORMAT.into(),
        ceremony_id,
        custodian: custodian.clone(),
        transcript_sha256: t.digest.clone(),
        transcript_entries: t.entries.len(),
        outputs,
        confirmation: confirmation.to_string(),
        signed_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    })
}

/// Path of a custodian's envelope in `dir`.
pub fn envelope_path(dir: &Path, custodian: &CustodianName) -> PathBuf {
    dir.join(ATTESTATIONS)
        .join(format!("{custodian}.dsse.json"))
}

/// Verify `dir` against `policy`: chain, every file, and at least
/// `policy.threshold` distinct custodians' valid attestations over exactly this
/// transcript and these files. Any attestation that does not verify fails the
/// whole directory: a bundle carries only good signatures.
pub fn verify(dir: &Path, policy: &Policy) -> Result<VerifiedCeremony, VerifyError> {
    let (ceremony_id, t, outputs) = check_directory(dir)?;
    let complete = t.completion() == Completion::Complete;
    let att_dir = dir.join(ATTESTATIONS);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&att_dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io_err(&att_dir))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(VerifyError::Io(att_dir, e.to_string())),
    };
    files.sort();
    let mut signers: BTreeMap<String, String> = BTreeMap::new();
    for path in files {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bad = |problem: String| VerifyError::Attestation {
            file: file.clone(),
            problem,
        };
        let meta = std::fs::symlink_metadata(&path).map_err(io_err(&path))?;
        if !meta.is_file() || !file.ends_with(".dsse.json") {
            return Err(bad(
                "is not an attestation envelope (NAME.dsse.json, a regular file)".into(),
            ));
        }
        let bytes = media::read_bounded(&path, "attestation envelope", media::MAX_ENVELOPE)?;
        let env: Envelope = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("is not a DSSE envelope ({e})")))?;
        if env.payload_type != PAYLOAD_TYPE {
            return Err(bad(format!(
                "has payload type {:?}, expected {PAYLOAD_TYPE:?}",
                env.payload_type
            )));
        }
        let payload_bytes =
            dsse::payload_bytes(&env).map_err(|e| bad(format!("payload is not base64 ({e})")))?;
        let payload: Payload = serde_json::from_slice(&payload_bytes)
            .map_err(|e| bad(format!("payload is not an attestation ({e})")))?;
        if payload.format != PAYLOAD_FORMAT {
            return Err(bad(format!("payload format is {:?}", payload.format)));
        }
        if file != format!("{}.dsse.json", payload.custodian) {
            return Err(bad(format!(
                "is named for another custodian than the one it names ({:?})",
                payload.custodian.as_str()
            )));
        }
        if payload.partial == complete {
            return Err(bad(if complete {
                "says it signs an unfinished run (partial), but the transcript records a finished one".into()
            } else {
                "signs a transcript that does not record a finished run, without saying so (--partial): sign the finished ceremony, or re-sign with --partial".into()
            }));
        }
        if payload.ceremony_id != ceremony_id {
            return Err(bad(format!(
                "attests ceremony {:?}, not {ceremony_id:?}",
                payload.ceremony_id
            )));
        }
        if payload.transcript_sha256 != t.digest || payload.transcript_entries != t.entries.len() {
            return Err(bad(format!(
                "signs transcript digest {} ({} entries) but the transcript is {} ({} entries): the transcript changed after signing",
                payload.transcript_sha256, payload.transcript_entries, t.digest, t.entries.len()
            )));
        }
        if payload.outputs != outputs {
            let signed: BTreeSet<_> = payload.outputs.iter().collect();
            let now: BTreeSet<_> = outputs.iter().collect();
            let diff = now
                .symmetric_difference(&signed)
                .next()
                .map(|o| o.path.clone())
                .unwrap_or_default();
            return Err(bad(format!(
                "signs a different set of output files (first difference: {diff})"
            )));
        }
        let message = dsse::pae(&env.payload_type, &payload_bytes);
        if env.signatures.is_empty() {
            return Err(bad("has no signature".into()));
        }
        let mut in_envelope = BTreeSet::new();
        for s in &env.signatures {
            let Some(custodian) = policy.by_keyid(&s.keyid) else {
                return Err(bad(format!(
                    "is signed by key {} which is not in the policy",
                    s.keyid
                )));
            };
            if custodian.name != payload.custodian {
                return Err(bad(format!(
                    "claims custodian {:?} but is signed by {:?}'s key",
                    payload.custodian.as_str(),
                    custodian.name.as_str()
                )));
            }
            let sig = base64::engine::general_purpose::STANDARD
                .decode(&s.sig)
                .map_err(|e| bad(format!("signature is not base64 ({e})")))?;
            custodian
                .key
                .verify(&message, &sig)
                .map_err(|source| VerifyError::Signature {
                    file: file.clone(),
                    custodian: custodian.name.to_string(),
                    source,
                })?;
            if !in_envelope.insert(custodian.name.clone()) {
                return Err(bad(format!(
                    "carries {:?}'s signature twice; each custodian counts once and signs once",
                    custodian.name.as_str()
                )));
            }
            if let Some(first) = signers.insert(custodian.name.to_string(), file.clone()) {
                if first != file {
                    return Err(bad(format!("is a second attestation by {:?} (first: {first}); each custodian signs once", custodian.name.as_str())));
                }
            }
        }
    }
    if signers.len() < policy.threshold {
        return Err(VerifyError::Threshold {
            signed: signers.len(),
            threshold: policy.threshold,
            names: if signers.is_empty() {
                "nobody".into()
            } else {
                signers.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        });
    }
    Ok(VerifiedCeremony {
        dir: dir.to_path_buf(),
        ceremony_id,
        transcript: t,
        outputs,
        signers: signers.into_keys().collect(),
        complete,
    })
}

/// Write `env` as `custodian`'s attestation in `dir`, refusing to overwrite.
pub fn write_envelope(
    dir: &Path,
    custodian: &CustodianName,
    env: &Envelope,
) -> Result<PathBuf, VerifyError> {
    use crate::bundle::output::{ensure_real_dir, write_new_file};
    use crate::bundle::OutputError;
    let att_dir = dir.join(ATTESTATIONS);
    let path = envelope_path(dir, custodian);
    let mut json = serde_json::to_vec_pretty(env).expect("envelopes serialize");
    json.push(b'\n');
    ensure_real_dir(&att_dir)
        .and_then(|()| write_new_file(&path, &json))
        .map_err(|e| match e {
            OutputError::Exists(_) => VerifyError::Attestation {
                file: format!("{custodian}.dsse.json"),
                problem: "already exists: this custodian has signed; remove it only if that signature is void".into(),
            },
            e => VerifyError::Io(path.clone(), e.to_string()),
        })?;
    Ok(path)
}
