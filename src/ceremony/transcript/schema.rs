//! The typed schema of transcript entries: one [`Step`] per `step` name, one
//! struct per step's `data` object (`docs/formats.md`, "Steps and their
//! `data`").
//!
//! Reading is tolerant where versions differ and strict where they do not:
//! members added over versions are `Option`s, unknown members inside `data`
//! are ignored, but a known step whose `data` lacks a member every version
//! wrote (or has one of the wrong type) is refused. A step name this version
//! does not know is kept as [`Step::Unknown`], so a transcript written by a
//! later version still verifies (its lines are hashed as bytes, never
//! re-serialized); this tool never writes one.
//!
//! Writing: every `data` object is serialized through [`serde_json::Value`],
//! whose maps are sorted, so members appear in byte order of their names at
//! every level, whatever the field order of the structs below. That is the
//! order every earlier version wrote.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::airgap::confirm::ConfirmedBy;
use crate::airgap::module::ModuleOrigin;
use crate::bundle::manifest::{HsmKeyRecord, KeyProtectionRecord, TokenRecord};
use crate::ceremony::attest::OutputFile;
use crate::ceremony::file::Source;
use crate::hsm::key_checks::{HmacCheck, KeyChecks};
use crate::hsm::keygen::KeyProtection;
use crate::hsm::TokenFacts;
use crate::kms::{KeySpec, WrappingAlgorithm};

/// One transcript step: the entry's `step` name and its `data`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", content = "data", rename_all = "kebab-case")]
pub enum Step {
    /// `wrap-start`: opens a single `byok-airgap wrap`'s transcript.
    WrapStart(WrapStart),
    /// `hsm`: the token a `wrap` used.
    Hsm(HsmToken),
    /// `self-test`: the known-answer test of a `wrap` passed.
    SelfTest(SelfTest),
    /// `key-intent`: `ceremony run` is about to generate a key with this CKA_ID.
    KeyIntent(KeyIntent),
    /// `key-generated`: the key was generated in the HSM.
    KeyGenerated(KeyRecord),
    /// `key-found`: an existing HSM key was used.
    KeyFound(KeyRecord),
    /// `wrapped`: the key was wrapped for one KMS key.
    Wrapped(Wrapped),
    /// `outputs`: closes a `wrap`'s transcript with its output files.
    Outputs(Outputs),
    /// `ceremony-start`: opens a `ceremony run`'s transcript.
    CeremonyStart(CeremonyStart),
    /// `hsm-session`: `ceremony run` logged in to the token.
    HsmSession(HsmSession),
    /// `discarded-unrecorded-output`: resume removed an unrecorded bundle.
    DiscardedUnrecordedOutput(Discarded),
    /// `transcript-truncated`: resume cut an incomplete last line.
    TranscriptTruncated(Truncated),
    /// `resumed`: `ceremony run` continued an interrupted run.
    Resumed(Resumed),
    /// `ceremony-complete`: closes a `ceremony run`'s transcript.
    CeremonyComplete(CeremonyComplete),
    /// A step this version does not know (from a later version): kept so the
    /// transcript still verifies; never written by this tool.
    #[serde(skip)]
    Unknown {
        /// The entry's `step`.
        step: String,
        /// The entry's `data`, as read.
        data: serde_json::Value,
    },
}

/// The step names of every known [`Step`] variant.
const KNOWN: [&str; 14] = [
    "wrap-start",
    "hsm",
    "self-test",
    "key-intent",
    "key-generated",
    "key-found",
    "wrapped",
    "outputs",
    "ceremony-start",
    "hsm-session",
    "discarded-unrecorded-output",
    "transcript-truncated",
    "resumed",
    "ceremony-complete",
];

impl Step {
    /// The `step` name written for this step.
    pub fn name(&self) -> &str {
        match self {
            Step::WrapStart(_) => "wrap-start",
            Step::Hsm(_) => "hsm",
            Step::SelfTest(_) => "self-test",
            Step::KeyIntent(_) => "key-intent",
            Step::KeyGenerated(_) => "key-generated",
            Step::KeyFound(_) => "key-found",
            Step::Wrapped(_) => "wrapped",
            Step::Outputs(_) => "outputs",
            Step::CeremonyStart(_) => "ceremony-start",
            Step::HsmSession(_) => "hsm-session",
            Step::DiscardedUnrecordedOutput(_) => "discarded-unrecorded-output",
            Step::TranscriptTruncated(_) => "transcript-truncated",
            Step::Resumed(_) => "resumed",
            Step::CeremonyComplete(_) => "ceremony-complete",
            Step::Unknown { step, .. } => step,
        }
    }

    /// The step's `data` object as written (members sorted by name).
    pub fn data(&self) -> serde_json::Result<serde_json::Value> {
        if let Step::Unknown { data, .. } = self {
            return Ok(data.clone());
        }
        match serde_json::to_value(self)? {
            serde_json::Value::Object(mut tagged) => Ok(tagged
                .remove("data")
                .unwrap_or(serde_json::Value::Object(Default::default()))),
            _ => Err(serde::ser::Error::custom("a step serializes to an object")),
        }
    }

    /// The typed step for an entry's `step` name and `data`: a known name
    /// whose data does not fit its schema is an error; an unknown name is
    /// kept as [`Step::Unknown`].
    pub fn from_parts(step: String, data: serde_json::Value) -> serde_json::Result<Step> {
        if !KNOWN.contains(&step.as_str()) {
            return Ok(Step::Unknown { step, data });
        }
        let mut tagged = serde_json::Map::new();
        tagged.insert("step".into(), step.into());
        tagged.insert("data".into(), data);
        serde_json::from_value(serde_json::Value::Object(tagged))
    }

    /// The output files this entry records (`outputs`, `wrapped` in a
    /// ceremony, `ceremony-complete`, and an unknown step's `data.outputs`
    /// elements that have string `path` and `sha256`).
    pub fn outputs(&self) -> Vec<OutputFile> {
        match self {
            Step::Outputs(o) => o.outputs.clone(),
            Step::CeremonyComplete(c) => c.outputs.clone(),
            Step::Wrapped(Wrapped::Target(w)) => w.outputs.clone(),
            Step::Unknown { data, .. } => data
                .get("outputs")
                .and_then(|o| o.as_array())
                .into_iter()
                .flatten()
                .filter_map(|o| match (o["path"].as_str(), o["sha256"].as_str()) {
                    (Some(path), Some(sha256)) => Some(OutputFile {
                        path: path.into(),
                        sha256: sha256.into(),
                    }),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The ceremony ID, if this step opens a transcript (an unknown first
    /// step counts when its `data.ceremony_id` is a string).
    pub fn ceremony_id(&self) -> Option<&str> {
        match self {
            Step::WrapStart(s) => Some(&s.ceremony_id),
            Step::CeremonyStart(s) => Some(&s.ceremony_id),
            Step::Unknown { data, .. } => data.get("ceremony_id").and_then(|v| v.as_str()),
            _ => None,
        }
    }

    /// Record this tool's version and binary on a first step.
    pub(crate) fn stamp_tool(&mut self, version: &str, binary_sha256: &str) {
        let (v, b) = match self {
            Step::WrapStart(s) => (&mut s.tool_version, &mut s.tool_binary_sha256),
            Step::CeremonyStart(s) => (&mut s.tool_version, &mut s.tool_binary_sha256),
            _ => return,
        };
        *v = version.into();
        *b = binary_sha256.into();
    }
}

/// `wrap-start`: what a single `wrap` was asked to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WrapStart {
    /// `wrap-LABEL-YYYYMMDDTHHMMSSZ`.
    pub ceremony_id: String,
    /// What the run is for, in words.
    pub purpose: String,
    /// The KMS key ARN or ID from the parameters.
    pub key_id: String,
    /// KMS key spec of the material.
    pub key_spec: KeySpec,
    /// KMS wrapping algorithm.
    pub wrapping_algorithm: WrappingAlgorithm,
    /// `RSA_2048`, `RSA_3072` or `RSA_4096`.
    pub wrapping_key_spec: String,
    /// SHA-256 (hex) of the wrapping public key's DER.
    pub wrapping_key_sha256: String,
    /// How the wrapping key's fingerprint was confirmed.
    pub wrapping_key_confirmed_by: ConfirmedBy,
    /// SHA-256 (hex) of the parameters file.
    pub import_parameters_sha256: String,
    /// SHA-256 (hex) of the import token.
    pub import_token_sha256: String,
    /// When the parameters expire, RFC 3339.
    pub parameters_valid_to: String,
    /// The tool's version (filled in by [`super::TranscriptWriter::create`]).
    pub tool_version: String,
    /// SHA-256 (hex) of the running binary, or `unavailable: REASON`
    /// (filled in by [`super::TranscriptWriter::create`]).
    pub tool_binary_sha256: String,
}

/// `hsm`: the token of a `wrap`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HsmToken {
    /// What the token reports.
    pub token: TokenRecord,
}

/// `self-test`: the known-answer test before the real wrap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelfTest {
    /// `pass`.
    pub result: String,
    /// The wrapping method, in words.
    pub method: String,
    /// What the test compared.
    pub checks: Vec<String>,
}

/// `key-intent`: the CKA_ID `ceremony run` is about to generate a key with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyIntent {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`, hex.
    pub id_hex: String,
    /// KMS key spec.
    pub key_spec: KeySpec,
}

/// Protection attributes as the token reports them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protection {
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`.
    pub always_sensitive: bool,
    /// `CKA_NEVER_EXTRACTABLE`.
    pub never_extractable: bool,
    /// `CKA_TOKEN` (`ceremony run` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<bool>,
    /// `CKA_PRIVATE` (`ceremony run` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<bool>,
    /// `CKA_MODIFIABLE` (absent in older transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modifiable: Option<bool>,
    /// `CKA_COPYABLE` (absent in older transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copyable: Option<bool>,
}

impl From<&KeyProtection> for Protection {
    fn from(p: &KeyProtection) -> Self {
        Protection {
            sensitive: p.sensitive,
            extractable: p.extractable,
            always_sensitive: p.always_sensitive,
            never_extractable: p.never_extractable,
            token: Some(p.token),
            private: Some(p.private),
            modifiable: Some(p.modifiable),
            copyable: Some(p.copyable),
        }
    }
}

impl From<&KeyProtectionRecord> for Protection {
    fn from(p: &KeyProtectionRecord) -> Self {
        Protection {
            sensitive: p.sensitive,
            extractable: p.extractable,
            always_sensitive: p.always_sensitive,
            never_extractable: p.never_extractable,
            token: None,
            private: None,
            modifiable: p.modifiable,
            copyable: p.copyable,
        }
    }
}

/// `key-generated` / `key-found`: the HSM key, in the one shape written
/// (label and CKA_ID at the top level). Reading also accepts the shape
/// `wrap` wrote before, with them nested in `hsm_key`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "KeyRecordWire")]
pub struct KeyRecord {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`, hex.
    pub id_hex: String,
    /// KMS key spec.
    pub key_spec: KeySpec,
    /// Protection attributes (absent in old `wrap` transcripts that had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protection: Option<Protection>,
    /// Check values computed in the HSM (absent in older transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<KeyChecks>,
    /// Whether resume adopted a key generated by an interrupted run (absent
    /// in older transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted_after_interruption: Option<bool>,
    /// `CKA_WRAP_WITH_TRUSTED` (written by `wrap`; `ceremony run` records it
    /// once in `hsm-session`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap_with_trusted: Option<bool>,
}

/// Both shapes of `key-generated` data, for reading.
#[derive(Deserialize)]
#[serde(untagged)]
enum KeyRecordWire {
    Flat {
        label: String,
        id_hex: String,
        key_spec: KeySpec,
        #[serde(default)]
        protection: Option<Protection>,
        #[serde(default)]
        checks: Option<KeyChecks>,
        #[serde(default)]
        adopted_after_interruption: Option<bool>,
        #[serde(default)]
        wrap_with_trusted: Option<bool>,
    },
    Nested {
        key_spec: KeySpec,
        hsm_key: HsmKeyRecord,
    },
}

impl From<KeyRecordWire> for KeyRecord {
    fn from(w: KeyRecordWire) -> Self {
        match w {
            KeyRecordWire::Flat {
                label,
                id_hex,
                key_spec,
                protection,
                checks,
                adopted_after_interruption,
                wrap_with_trusted,
            } => KeyRecord {
                label,
                id_hex,
                key_spec,
                protection,
                checks,
                adopted_after_interruption,
                wrap_with_trusted,
            },
            KeyRecordWire::Nested { key_spec, hsm_key } => KeyRecord {
                label: hsm_key.label,
                id_hex: hsm_key.id_hex,
                key_spec,
                protection: hsm_key.protection.as_ref().map(Protection::from),
                checks: None,
                adopted_after_interruption: None,
                wrap_with_trusted: Some(hsm_key.wrap_with_trusted),
            },
        }
    }
}

/// `wrapped`: one of two shapes, told apart by `label` and `target`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Wrapped {
    /// `ceremony run`: one bundle `LABEL/TARGET`, with its files.
    Target(TargetWrapped),
    /// `wrap`: the single key, whose files `outputs` records next.
    Single(SingleWrapped),
}

/// `wrapped` in a `ceremony run`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetWrapped {
    /// The key's label.
    pub label: String,
    /// The target's name.
    pub target: String,
    /// The KMS key ARN or ID.
    pub key_id: String,
    /// KMS wrapping algorithm.
    pub wrapping_algorithm: WrappingAlgorithm,
    /// SHA-256 (hex) of the wrapping public key's DER.
    pub wrapping_key_sha256: String,
    /// SHA-256 (hex) of the parameters file.
    pub import_parameters_sha256: String,
    /// SHA-256 (hex) of the import token.
    pub import_token_sha256: String,
    /// The wrapping method, in words.
    pub mechanism: String,
    /// What the self-test compared.
    pub self_test: Vec<String>,
    /// AES key check value, or `null`.
    pub kcv: Option<String>,
    /// HMAC check, or `null`.
    pub hmac_check: Option<HmacCheck>,
    /// Base64 DER SubjectPublicKeyInfo, or `null`.
    pub public_key: Option<String>,
    /// The bundle's four files as `LABEL/TARGET/FILE`.
    pub outputs: Vec<OutputFile>,
}

impl TargetWrapped {
    /// The check values this entry records.
    pub fn checks(&self) -> KeyChecks {
        KeyChecks {
            kcv: self.kcv.clone(),
            hmac_check: self.hmac_check.clone(),
            public_key: self.public_key.clone(),
        }
    }
}

/// `wrapped` in a single `wrap`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SingleWrapped {
    /// The wrapping method, in words.
    pub mechanism: String,
    /// SHA-256 (hex) of `EncryptedKeyMaterial.bin`.
    pub encrypted_key_material_sha256: String,
    /// Its length in bytes.
    pub encrypted_key_material_len: u64,
    /// AES key check value, or `null`.
    pub kcv: Option<String>,
    /// HMAC check, or `null`.
    pub hmac_check: Option<HmacCheck>,
    /// Base64 DER SubjectPublicKeyInfo, or `null`.
    pub public_key: Option<String>,
}

/// `outputs`: a `wrap`'s files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outputs {
    /// The four files, in the order written.
    pub outputs: Vec<OutputFile>,
}

/// The PKCS#11 module a `ceremony run` loaded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModuleRecord {
    /// The module path.
    pub path: PathBuf,
    /// Where the path came from.
    pub origin: ModuleOrigin,
    /// Whether an init string was given (the string is not recorded).
    pub init_string: bool,
}

/// What was confirmed before a run, and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Confirmations {
    /// What every current run records.
    Recorded {
        /// `typed` or `skipped (--non-interactive)`.
        ceremony_id: String,
        /// The parameters digest confirmed.
        parameters_digest: DigestConfirmation,
    },
    /// A sentence, as versions before the parameters digest wrote.
    Legacy(String),
}

/// The parameters digest a run was confirmed with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DigestConfirmation {
    /// The digest, hex.
    pub value: String,
    /// How it was confirmed.
    pub by: ConfirmedBy,
}

/// One key of `ceremony-start`'s plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedKey {
    /// The key's label.
    pub label: String,
    /// KMS key spec.
    pub key_spec: KeySpec,
    /// Generate or existing.
    pub source: Source,
    /// Its targets.
    pub targets: Vec<PlannedTarget>,
}

/// One target of a [`PlannedKey`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedTarget {
    /// The target's name.
    pub name: String,
    /// KMS wrapping algorithm.
    pub wrapping_algorithm: WrappingAlgorithm,
    /// The confirmed wrapping key's SHA-256, hex.
    pub wrapping_key_sha256: String,
}

/// `ceremony-start`: what a `ceremony run` was asked to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CeremonyStart {
    /// The ceremony file's ID.
    pub ceremony_id: String,
    /// The ceremony file's purpose.
    pub purpose: String,
    /// SHA-256 (hex) of the ceremony file.
    pub ceremony_file_sha256: String,
    /// SHA-256 (hex) of the policy file the ceremony file names.
    pub policy_sha256: String,
    /// The parameters digest, hex (absent in older transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters_digest: Option<String>,
    /// The module loaded (absent in older transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<ModuleRecord>,
    /// Every key and target.
    pub plan: Vec<PlannedKey>,
    /// What was confirmed, and how.
    pub confirmations: Confirmations,
    /// The tool's version (filled in by [`super::TranscriptWriter::create`]).
    pub tool_version: String,
    /// SHA-256 (hex) of the running binary, or `unavailable: REASON`
    /// (filled in by [`super::TranscriptWriter::create`]).
    pub tool_binary_sha256: String,
}

/// `hsm-session`: the token `ceremony run` logged in to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HsmSession {
    /// What the token reports (with its slot).
    pub token: TokenFacts,
    /// The module loaded (absent in older transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<ModuleRecord>,
    /// Whether this run resumed an earlier one.
    pub resumed: bool,
    /// Whether keys are generated with `CKA_WRAP_WITH_TRUSTED` (absent in
    /// older transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap_with_trusted: Option<bool>,
}

/// `discarded-unrecorded-output`: a bundle an interrupted run left unrecorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Discarded {
    /// `LABEL/NAME` under `--out`.
    pub path: String,
    /// Why it was removed.
    pub reason: String,
}

/// `transcript-truncated`: the incomplete last line resume cut off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Truncated {
    /// How many bytes were removed.
    pub removed_bytes: u64,
    /// SHA-256 (hex) of the removed bytes.
    pub removed_sha256: String,
    /// Why.
    pub reason: String,
}

/// `resumed`: a run continued an interrupted one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resumed {
    /// What this run confirmed, and how.
    pub confirmations: Confirmations,
    /// The module this run loaded.
    pub module: ModuleRecord,
}

/// `ceremony-complete`: closes a `ceremony run`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CeremonyComplete {
    /// How many keys.
    pub keys: u64,
    /// How many wraps.
    pub wraps: u64,
    /// `SUMMARY.md` and its SHA-256.
    pub outputs: Vec<OutputFile>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_name_parses_to_its_variant() {
        for name in KNOWN {
            // Data that fits no step: the error must be about the data, not
            // an unknown variant, and never an Unknown step.
            let err = Step::from_parts(name.into(), serde_json::json!({})).unwrap_err();
            assert!(
                !err.to_string().contains("unknown variant"),
                "{name}: {err}"
            );
        }
        let unknown = Step::from_parts("later-step".into(), serde_json::json!({"x": 1})).unwrap();
        assert_eq!(unknown.name(), "later-step");
        assert_eq!(unknown.data().unwrap(), serde_json::json!({"x": 1}));
    }

    #[test]
    fn names_match_what_serde_writes() {
        let d = Step::DiscardedUnrecordedOutput(Discarded {
            path: "a/b".into(),
            reason: "r".into(),
        });
        let t = Step::TranscriptTruncated(Truncated {
            removed_bytes: 1,
            removed_sha256: "00".into(),
            reason: "r".into(),
        });
        for s in [d, t] {
            let v = serde_json::to_value(&s).unwrap();
            assert_eq!(v["step"], s.name());
            assert!(KNOWN.contains(&s.name()));
            assert_eq!(
                Step::from_parts(s.name().into(), s.data().unwrap()).unwrap(),
                s
            );
        }
    }
}

/// Minimal steps for unit tests.
#[cfg(test)]
pub(crate) mod samples {
    use super::*;

    /// A `ceremony-start` with an empty plan.
    pub fn ceremony_start(id: &str) -> Step {
        Step::CeremonyStart(CeremonyStart {
            ceremony_id: id.into(),
            purpose: "test".into(),
            ceremony_file_sha256: "00".into(),
            policy_sha256: "00".into(),
            parameters_digest: None,
            module: None,
            plan: Vec::new(),
            confirmations: Confirmations::Legacy("none".into()),
            tool_version: String::new(),
            tool_binary_sha256: String::new(),
        })
    }

    /// A `wrap-start`.
    pub fn wrap_start(id: &str) -> Step {
        Step::WrapStart(WrapStart {
            ceremony_id: id.into(),
            purpose: "test".into(),
            key_id: "k".into(),
            key_spec: KeySpec::SymmetricDefault,
            wrapping_algorithm: WrappingAlgorithm::RsaesOaepSha1,
            wrapping_key_spec: "RSA_2048".into(),
            wrapping_key_sha256: "00".into(),
            wrapping_key_confirmed_by: ConfirmedBy::ExpectedValue,
            import_parameters_sha256: "00".into(),
            import_token_sha256: "00".into(),
            parameters_valid_to: "2026-01-01T00:00:00Z".into(),
            tool_version: String::new(),
            tool_binary_sha256: String::new(),
        })
    }

    /// A `discarded-unrecorded-output` naming `path`: a step that neither
    /// opens nor closes a transcript.
    pub fn middle(path: &str) -> Step {
        Step::DiscardedUnrecordedOutput(Discarded {
            path: path.into(),
            reason: "test".into(),
        })
    }

    /// A `ceremony-complete` with no outputs.
    pub fn ceremony_complete() -> Step {
        Step::CeremonyComplete(CeremonyComplete {
            keys: 0,
            wraps: 0,
            outputs: Vec::new(),
        })
    }

    /// A `wrap`'s closing `outputs`, empty.
    pub fn wrap_outputs() -> Step {
        Step::Outputs(Outputs {
            outputs: Vec::new(),
        })
    }
}
