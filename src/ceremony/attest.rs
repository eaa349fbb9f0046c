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
use super::policy::{Custodian, Policy};
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
    /// A symlink or special file in the directory (or a `transcript.jsonl`
    /// that is not a regular file, an `attestations` that is not a real
    /// directory).
    #[error("{0} is not a regular file (or, for attestations, a real directory); ceremony directories hold only regular files and directories, no symlinks")]
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
        problem: OutputProblem,
    },
    /// An attestation is malformed, or does not attest this directory.
    #[error("attestation {file}: {problem}")]
    Attestation {
        /// The envelope file.
        file: String,
        /// What is wrong.
        problem: AttestationProblem,
    },
    /// A file from the media is too large, not a regular file, or unreadable.
    #[error(transparent)]
    Media(#[from] MediaReadError),
    /// A signature in an attestation is refused (high-S ECDSA, malformed, or
    /// not valid) by the policy key its `keyid` names, and no other policy key
    /// verifies it either.
    #[error("attestation {file}: signature by {custodian:?} {source}")]
    Signature {
        /// The envelope file.
        file: String,
        /// The custodian whose key the signature's `keyid` names.
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

/// What is wrong with one file of a ceremony directory
/// ([`VerifyError::Output`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutputProblem {
    /// On disk, but no transcript entry records it.
    #[error("is not recorded in the transcript (added after the ceremony?): remove it, or copy the directory again from the original media")]
    NotRecorded,
    /// Its content differs from the hash the transcript records.
    #[error("SHA-256 is {found}, the transcript records {recorded}: the file was changed; copy it again from the original media")]
    Changed {
        /// SHA-256 (hex) of the file on disk.
        found: String,
        /// SHA-256 (hex) the transcript records.
        recorded: String,
    },
    /// Recorded by the transcript, absent on disk.
    #[error("is recorded in the transcript but missing: copy it again from the original media")]
    Missing,
}

/// What is wrong with one attestation envelope ([`VerifyError::Attestation`]).
/// Each message completes "attestation NAME.dsse.json: …".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttestationProblem {
    /// Not a regular file named `NAME.dsse.json`.
    #[error("is not an attestation envelope (NAME.dsse.json, a regular file): attestations/ holds only custodians' envelopes; move it out")]
    NotAnEnvelopeFile,
    /// Not DSSE envelope JSON (or unknown fields).
    #[error("is not a DSSE envelope ({0})")]
    NotDsse(String),
    /// The envelope's `payloadType` is not [`PAYLOAD_TYPE`].
    #[error("has payload type {0:?}, expected {PAYLOAD_TYPE:?}")]
    PayloadType(String),
    /// The payload is not standard base64.
    #[error("payload is not base64 ({0})")]
    PayloadNotBase64(String),
    /// The payload is not an attestation payload (or has unknown fields).
    #[error("payload is not an attestation ({0})")]
    PayloadNotAttestation(String),
    /// The payload's `format` is not [`PAYLOAD_FORMAT`].
    #[error("payload format is {0:?}, expected {PAYLOAD_FORMAT:?}")]
    PayloadFormat(String),
    /// The file is not `attestations/CUSTODIAN.dsse.json` for the custodian
    /// its payload names.
    #[error("is the attestation of custodian {payload_custodian:?} (its payload says so), but its file name is for {file_custodian:?}: each custodian's attestation is attestations/NAME.dsse.json; if it is {payload_custodian:?}'s, name it {payload_custodian}.dsse.json")]
    FileNameMismatch {
        /// The custodian the signed payload names.
        payload_custodian: CustodianName,
        /// The name the file name gives (`NAME` of `NAME.dsse.json`).
        file_custodian: String,
    },
    /// The payload says `partial` but the transcript records a finished run.
    #[error(
        "says it signs an unfinished run (partial), but the transcript records a finished one"
    )]
    PartialButComplete,
    /// The transcript is unfinished and the payload does not say `partial`.
    #[error("signs a transcript that does not record a finished run, without saying so (--partial): sign the finished ceremony, or re-sign with --partial")]
    UnacknowledgedPartial,
    /// The payload names another ceremony.
    #[error("attests ceremony {attested:?}, not {actual:?}")]
    OtherCeremony {
        /// The ceremony ID in the payload.
        attested: String,
        /// The transcript's ceremony ID.
        actual: String,
    },
    /// The payload signs another transcript digest or length.
    #[error("signs transcript digest {signed} ({signed_entries} entries) but the transcript is {actual} ({actual_entries} entries): the transcript changed after signing")]
    OtherTranscript {
        /// The digest in the payload.
        signed: String,
        /// The entry count in the payload.
        signed_entries: usize,
        /// The transcript's digest.
        actual: String,
        /// The transcript's entry count.
        actual_entries: usize,
    },
    /// The payload lists other output files or hashes.
    #[error("signs a different set of output files (first difference: {first_difference})")]
    OtherOutputs {
        /// The first path that differs.
        first_difference: String,
    },
    /// The envelope has no signature.
    #[error("has no signature")]
    NoSignature,
    /// A signature is not standard base64.
    #[error("signature is not base64 ({0})")]
    SignatureNotBase64(String),
    /// No policy key verifies the signature, and its `keyid` names none.
    #[error("is signed by key {keyid} which is not in the policy (no policy key verifies its signature): remove it; if that custodian should sign, add them to the policy")]
    NotInPolicy {
        /// The signature's `keyid` (unsigned).
        keyid: String,
    },
    /// The signature verifies with a policy key, but not the key of the
    /// custodian the payload names.
    #[error("names custodian {claimed:?}, but its signature verifies with {signer:?}'s policy key: {signer:?} signed a payload in {claimed:?}'s name; remove it and have {claimed:?} sign")]
    SignedByOtherCustodian {
        /// The custodian the payload names.
        claimed: CustodianName,
        /// The custodian whose key verifies the signature.
        signer: CustodianName,
    },
    /// The signature verifies with the policy key of the custodian the
    /// payload names, but the (unsigned) `keyid` hint is not that key's.
    #[error("its signature verifies with {signer:?}'s policy key, but its keyid {keyid} {}: keyids are not signed, so only this hint is wrong (edited or damaged). Set the keyid to {expected} ({signer:?}'s key), or have {signer:?} sign again", match hinted { Some(h) => format!("names {:?}'s key", h.as_str()), None => "names no key in the policy".to_string() })]
    WrongKeyId {
        /// The keyid found in the envelope.
        keyid: String,
        /// The custodian whose key verifies the signature.
        signer: CustodianName,
        /// The policy custodian the wrong keyid names, if any.
        hinted: Option<CustodianName>,
        /// The signer's keyid.
        expected: String,
    },
    /// One envelope carries the same custodian's signature twice.
    #[error("carries {0:?}'s signature twice; each custodian counts once and signs once")]
    DuplicateSignature(CustodianName),
    /// A custodian signed in two envelopes.
    #[error(
        "is a second attestation by {custodian:?} (first: {first}); each custodian signs once"
    )]
    SecondAttestation {
        /// The custodian.
        custodian: CustodianName,
        /// The first envelope file.
        first: String,
    },
    /// Writing: the custodian's envelope exists already.
    #[error("already exists: this custodian has signed; remove it only if that signature is void")]
    AlreadyExists,
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
pub(crate) fn list_outputs(dir: &Path) -> Result<Vec<OutputFile>, VerifyError> {
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

/// The outputs the transcript records ([`transcript::Step::outputs`]).
fn recorded_outputs(t: &VerifiedTranscript) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for e in &t.entries {
        for o in e.step.outputs() {
            m.insert(o.path, o.sha256);
        }
    }
    m
}

/// Check the transcript and that the files on disk are exactly the ones it records.
pub(crate) fn check_directory(
    dir: &Path,
) -> Result<(String, VerifiedTranscript, Vec<OutputFile>), VerifyError> {
    let tpath = dir.join(transcript::FILE_NAME);
    if std::fs::symlink_metadata(&tpath).is_ok_and(|m| !m.is_file()) {
        return Err(VerifyError::NotRegular(transcript::FILE_NAME.into()));
    }
    let t = transcript::verify_file(&tpath)?;
    let ceremony_id = t.entries[0]
        .step
        .ceremony_id()
        .ok_or(VerifyError::NoCeremonyId)?
        .to_string();
    let on_disk = list_outputs(dir)?;
    let recorded = recorded_outputs(&t);
    for f in &on_disk {
        match recorded.get(&f.path) {
            None => {
                return Err(VerifyError::Output {
                    path: f.path.clone(),
                    problem: OutputProblem::NotRecorded,
                })
            }
            Some(h) if h != &f.sha256 => {
                return Err(VerifyError::Output {
                    path: f.path.clone(),
                    problem: OutputProblem::Changed {
                        found: f.sha256.clone(),
                        recorded: h.clone(),
                    },
                })
            }
            Some(_) => {}
        }
    }
    let present: BTreeSet<&str> = on_disk.iter().map(|f| f.path.as_str()).collect();
    if let Some(missing) = recorded.keys().find(|p| !present.contains(p.as_str())) {
        return Err(VerifyError::Output {
            path: missing.clone(),
            problem: OutputProblem::Missing,
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

/// Path of a custodian's envelope in `dir`: `attestations/NAME.dsse.json`.
pub(crate) fn envelope_path(dir: &Path, custodian: &CustodianName) -> PathBuf {
    dir.join(ATTESTATIONS)
        .join(format!("{custodian}{ENVELOPE_SUFFIX}"))
}

/// The file name suffix of an envelope: `NAME.dsse.json`.
pub(crate) const ENVELOPE_SUFFIX: &str = ".dsse.json";

/// Verify `dir` against `policy`: chain, every file, and at least
/// `policy.threshold` distinct custodians' valid attestations over exactly this
/// transcript and these files. Any attestation that does not verify fails the
/// whole directory: a bundle carries only good signatures.
pub fn verify(dir: &Path, policy: &Policy) -> Result<VerifiedCeremony, VerifyError> {
    let (ceremony_id, t, outputs) = check_directory(dir)?;
    let complete = t.completion() == Completion::Complete;
    let signed = Signed {
        ceremony_id: &ceremony_id,
        transcript: &t,
        outputs: &outputs,
        complete,
    };
    let mut signers: BTreeMap<String, String> = BTreeMap::new();
    for path in envelope_files(dir)? {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bad = |problem: AttestationProblem| VerifyError::Attestation {
            file: file.clone(),
            problem,
        };
        let envelope = read_envelope(&path, &file)?;
        for custodian in check_envelope(&envelope, &signed, policy, &file)? {
            if let Some(first) = signers.insert(custodian.to_string(), file.clone()) {
                if first != file {
                    return Err(bad(AttestationProblem::SecondAttestation {
                        custodian,
                        first,
                    }));
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

/// What every attestation of a directory must sign.
struct Signed<'a> {
    ceremony_id: &'a str,
    transcript: &'a VerifiedTranscript,
    outputs: &'a [OutputFile],
    complete: bool,
}

/// The entries of `DIR/attestations`, sorted (none if it does not exist).
fn envelope_files(dir: &Path) -> Result<Vec<PathBuf>, VerifyError> {
    let att_dir = dir.join(ATTESTATIONS);
    match std::fs::symlink_metadata(&att_dir) {
        Ok(m) if !m.is_dir() => return Err(VerifyError::NotRegular(ATTESTATIONS.into())),
        _ => {}
    }
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&att_dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io_err(&att_dir))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(VerifyError::Io(att_dir, e.to_string())),
    };
    files.sort();
    Ok(files)
}

/// An envelope and its decoded payload.
struct ReadEnvelope {
    envelope: Envelope,
    payload_bytes: Vec<u8>,
    payload: Payload,
}

/// Read and parse one envelope file (a regular file named `NAME.dsse.json`,
/// bounded), its payload type, payload and payload format.
fn read_envelope(path: &Path, file: &str) -> Result<ReadEnvelope, VerifyError> {
    let bad = |problem: AttestationProblem| VerifyError::Attestation {
        file: file.to_string(),
        problem,
    };
    let meta = std::fs::symlink_metadata(path).map_err(io_err(path))?;
    if !meta.is_file() || !file.ends_with(ENVELOPE_SUFFIX) {
        return Err(bad(AttestationProblem::NotAnEnvelopeFile));
    }
    let bytes = media::read_bounded(path, "attestation envelope", media::MAX_ENVELOPE)?;
    let envelope: Envelope = serde_json::from_slice(&bytes)
        .map_err(|e| bad(AttestationProblem::NotDsse(e.to_string())))?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(bad(AttestationProblem::PayloadType(
            envelope.payload_type.clone(),
        )));
    }
    let payload_bytes = dsse::payload_bytes(&envelope)
        .map_err(|e| bad(AttestationProblem::PayloadNotBase64(e.to_string())))?;
    let payload: Payload = serde_json::from_slice(&payload_bytes)
        .map_err(|e| bad(AttestationProblem::PayloadNotAttestation(e.to_string())))?;
    if payload.format != PAYLOAD_FORMAT {
        return Err(bad(AttestationProblem::PayloadFormat(payload.format)));
    }
    Ok(ReadEnvelope {
        envelope,
        payload_bytes,
        payload,
    })
}

/// Check one envelope against what must be signed and the policy; returns
/// the custodians whose signatures it carries (exactly one: the payload's).
fn check_envelope(
    read: &ReadEnvelope,
    signed: &Signed,
    policy: &Policy,
    file: &str,
) -> Result<Vec<CustodianName>, VerifyError> {
    let bad = |problem: AttestationProblem| VerifyError::Attestation {
        file: file.to_string(),
        problem,
    };
    check_payload(&read.payload, signed, file).map_err(bad)?;
    let env = &read.envelope;
    let message = dsse::pae(&env.payload_type, &read.payload_bytes);
    if env.signatures.is_empty() {
        return Err(bad(AttestationProblem::NoSignature));
    }
    let mut in_envelope = Vec::new();
    for s in &env.signatures {
        let signer = identify_signer(policy, &message, s, file)?;
        if signer.name != read.payload.custodian {
            return Err(bad(AttestationProblem::SignedByOtherCustodian {
                claimed: read.payload.custodian.clone(),
                signer: signer.name.clone(),
            }));
        }
        if s.keyid != signer.keyid {
            return Err(bad(AttestationProblem::WrongKeyId {
                keyid: s.keyid.clone(),
                signer: signer.name.clone(),
                hinted: policy.by_keyid(&s.keyid).map(|c| c.name.clone()),
                expected: signer.keyid.clone(),
            }));
        }
        if in_envelope.contains(&signer.name) {
            return Err(bad(AttestationProblem::DuplicateSignature(
                signer.name.clone(),
            )));
        }
        in_envelope.push(signer.name.clone());
    }
    Ok(in_envelope)
}

/// The payload must name the custodian of its file name and sign exactly
/// this ceremony, transcript, completeness and set of files.
fn check_payload(payload: &Payload, signed: &Signed, file: &str) -> Result<(), AttestationProblem> {
    let file_custodian = file.strip_suffix(ENVELOPE_SUFFIX).unwrap_or(file);
    if file_custodian != payload.custodian.as_str() {
        return Err(AttestationProblem::FileNameMismatch {
            payload_custodian: payload.custodian.clone(),
            file_custodian: file_custodian.to_string(),
        });
    }
    if payload.partial == signed.complete {
        return Err(if signed.complete {
            AttestationProblem::PartialButComplete
        } else {
            AttestationProblem::UnacknowledgedPartial
        });
    }
    if payload.ceremony_id != signed.ceremony_id {
        return Err(AttestationProblem::OtherCeremony {
            attested: payload.ceremony_id.clone(),
            actual: signed.ceremony_id.to_string(),
        });
    }
    let t = signed.transcript;
    if payload.transcript_sha256 != t.digest || payload.transcript_entries != t.entries.len() {
        return Err(AttestationProblem::OtherTranscript {
            signed: payload.transcript_sha256.clone(),
            signed_entries: payload.transcript_entries,
            actual: t.digest.clone(),
            actual_entries: t.entries.len(),
        });
    }
    if payload.outputs != signed.outputs {
        let in_payload: BTreeSet<_> = payload.outputs.iter().collect();
        let on_disk: BTreeSet<_> = signed.outputs.iter().collect();
        let first_difference = on_disk
            .symmetric_difference(&in_payload)
            .next()
            .map(|o| o.path.clone())
            .unwrap_or_default();
        return Err(AttestationProblem::OtherOutputs { first_difference });
    }
    Ok(())
}

/// The policy custodian whose key verifies signature `s` over `message`.
///
/// The `keyid` is not signed: it only says which key to try first. If that
/// key does not verify the signature, every other policy key is tried, so
/// that a wrong keyid is reported as such rather than as a wrong signer.
/// When no policy key verifies: the refusal of the key the keyid names
/// ([`VerifyError::Signature`]), or [`AttestationProblem::NotInPolicy`].
fn identify_signer<'p>(
    policy: &'p Policy,
    message: &[u8],
    s: &dsse::Signature,
    file: &str,
) -> Result<&'p Custodian, VerifyError> {
    let sig = base64::engine::general_purpose::STANDARD
        .decode(&s.sig)
        .map_err(|e| VerifyError::Attestation {
            file: file.to_string(),
            problem: AttestationProblem::SignatureNotBase64(e.to_string()),
        })?;
    let hinted = policy.by_keyid(&s.keyid);
    let hinted_refusal = match hinted.map(|c| c.key.verify(message, &sig)) {
        Some(Ok(())) => return Ok(hinted.expect("checked above")),
        Some(Err(e)) => Some(e),
        None => None,
    };
    if let Some(actual) = policy
        .custodians
        .iter()
        .find(|c| c.key.verify(message, &sig).is_ok())
    {
        return Ok(actual);
    }
    Err(match (hinted, hinted_refusal) {
        (Some(c), Some(source)) => VerifyError::Signature {
            file: file.to_string(),
            custodian: c.name.to_string(),
            source,
        },
        _ => VerifyError::Attestation {
            file: file.to_string(),
            problem: AttestationProblem::NotInPolicy {
                keyid: s.keyid.clone(),
            },
        },
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
                file: format!("{custodian}{ENVELOPE_SUFFIX}"),
                problem: AttestationProblem::AlreadyExists,
            },
            e => VerifyError::Io(path.clone(), e.to_string()),
        })?;
    Ok(path)
}
