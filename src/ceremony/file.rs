//! The ceremony file: a declarative, strictly parsed description of a whole
//! rotation (keys × wrap targets), checked completely before an HSM is touched.
//!
//! ```json
//! {
//!   "format": "byok-ceremony/ceremony/v1",
//!   "ceremony_id": "2026-11-prod-rotation",
//!   "purpose": "Quarterly rotation of prod data keys",
//!   "hsm": { "module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "ceremony" },
//!   "policy": "policy.json",
//!   "keys": [
//!     { "label": "prod-s3-2026-11", "key_spec": "SYMMETRIC_DEFAULT", "source": "generate",
//!       "targets": [
//!         { "name": "eu-west-1", "params": "params/prod-s3-eu-west-1.json",
//!           "wrapping_algorithm": "RSAES_OAEP_SHA_1", "wrapping_key_sha256": "…" } ] } ]
//! }
//! ```
//! Paths are relative to the ceremony file. PINs are never in it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::policy::{Policy, PolicyError};
use crate::fingerprint::normalize;
use crate::kms::key_spec::CombinationError;
use crate::kms::{check_combination, ImportParameters, KeySpec, ParamsError, WrappingAlgorithm};

/// The format tag.
pub const FORMAT: &str = "byok-ceremony/ceremony/v1";

/// Where the key material comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Generate a new key in the HSM.
    Generate,
    /// Wrap the existing HSM key with this label again.
    Existing,
}

/// The HSM section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmSection {
    /// PKCS#11 module path.
    pub module: PathBuf,
    /// Optional `C_Initialize` init string.
    #[serde(default)]
    pub module_init_string: Option<String>,
    /// Token label.
    pub token_label: String,
}

/// One wrap target: a KMS key (in some Region) to import the key into.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Name, unique within the key (e.g. the Region).
    pub name: String,
    /// Import-parameters file.
    pub params: PathBuf,
    /// The algorithm requested from GetParametersForImport.
    pub wrapping_algorithm: WrappingAlgorithm,
    /// The fingerprint the bastion printed, confirmed out of band. Empty in a
    /// draft; `byok-bastion prepare --ceremony` fills it in.
    #[serde(default)]
    pub wrapping_key_sha256: String,
    /// The KMS key (ARN, key ID or alias) this target imports into; the
    /// bastion's `prepare --ceremony` uses it and records the key ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
    /// The AWS Region of the KMS key (default: the key ARN's Region, else the
    /// bastion's configured Region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// RSA_2048, RSA_3072 or RSA_4096: the wrapping key `prepare` asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapping_key_spec: Option<String>,
}

/// One key of the ceremony.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPlan {
    /// CKA_LABEL.
    pub label: String,
    /// KMS key spec.
    pub key_spec: KeySpec,
    /// Generate or existing.
    pub source: Source,
    /// Where to import it.
    pub targets: Vec<Target>,
}

/// The ceremony file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonyFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// ID, recorded in the transcript and attestations.
    pub ceremony_id: String,
    /// Why this ceremony happens.
    pub purpose: String,
    /// The HSM.
    pub hsm: HsmSection,
    /// The custodian policy file.
    pub policy: PathBuf,
    /// The keys.
    pub keys: Vec<KeyPlan>,
}

/// A target whose parameters were read and checked.
#[derive(Clone, Debug)]
pub struct CheckedTarget {
    /// As declared.
    pub target: Target,
    /// The parameters.
    pub params: ImportParameters,
    /// The parameters file's bytes.
    pub params_bytes: Vec<u8>,
}

/// A ceremony that passed every check that needs no HSM.
#[derive(Clone, Debug)]
pub struct CheckedCeremony {
    /// The file.
    pub file: CeremonyFile,
    /// SHA-256 of the ceremony file.
    pub file_sha256: String,
    /// The policy.
    pub policy: Policy,
    /// SHA-256 of the policy file.
    pub policy_sha256: String,
    /// Targets per key, in file order.
    pub targets: Vec<Vec<CheckedTarget>>,
}

/// Why a ceremony file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Cannot read a file.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// Not ceremony JSON.
    #[error("the ceremony file is not valid ({0}); unknown and duplicate fields are refused")]
    Json(#[from] serde_json::Error),
    /// Something in it is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The policy is wrong.
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
    /// Import parameters refused.
    #[error("key {label:?} target {target:?}: {source}")]
    Params {
        /// Key label.
        label: String,
        /// Target name.
        target: String,
        /// Why.
        source: ParamsError,
    },
    /// KMS rule broken.
    #[error("key {label:?} target {target:?}: {source}")]
    Combination {
        /// Key label.
        label: String,
        /// Target name.
        target: String,
        /// Why.
        source: CombinationError,
    },
}

fn simple(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// Parse a ceremony file and check everything that needs no other file:
/// format, ID, labels, target names. Also what `byok-bastion prepare
/// --ceremony` reads (a draft, before the parameters exist).
pub fn parse_structure(bytes: &[u8]) -> Result<CeremonyFile, PlanError> {
    let file: CeremonyFile = serde_json::from_slice(bytes)?;
    let invalid = |m: String| PlanError::Invalid(m);
    if file.format != FORMAT {
        return Err(invalid(format!(
            "format is {:?}, expected {FORMAT:?}",
            file.format
        )));
    }
    if !simple(&file.ceremony_id, 100) {
        return Err(invalid(format!(
            "ceremony_id {:?} must be 1-100 letters, digits, '-', '_' or '.'",
            file.ceremony_id
        )));
    }
    if file.keys.is_empty() {
        return Err(invalid("the ceremony has no keys".into()));
    }
    let mut labels = BTreeSet::new();
    for key in &file.keys {
        if !simple(&key.label, 64) || !labels.insert(key.label.clone()) {
            return Err(invalid(format!(
                "key label {:?} is not simple (letters, digits, '-', '_', '.') or is used twice",
                key.label
            )));
        }
        if key.targets.is_empty() {
            return Err(invalid(format!("key {:?} has no targets", key.label)));
        }
        let mut names = BTreeSet::new();
        for t in &key.targets {
            if !simple(&t.name, 64) || !names.insert(t.name.clone()) {
                return Err(invalid(format!(
                    "key {:?}: target name {:?} is not simple or is used twice",
                    key.label, t.name
                )));
            }
            if let Some(spec) = &t.wrapping_key_spec {
                if !["RSA_2048", "RSA_3072", "RSA_4096"].contains(&spec.as_str()) {
                    return Err(invalid(format!(
                        "key {:?} target {:?}: wrapping_key_spec {spec:?} must be RSA_2048, RSA_3072 or RSA_4096",
                        key.label, t.name
                    )));
                }
            }
        }
    }
    Ok(file)
}

/// Read and check a ceremony file against `now`; every target's parameters
/// must stay valid for `min_remaining` more.
pub fn check(
    path: &Path,
    now: OffsetDateTime,
    min_remaining: Duration,
) -> Result<CheckedCeremony, PlanError> {
    let bytes = std::fs::read(path).map_err(|e| PlanError::Read(path.to_path_buf(), e))?;
    let file = parse_structure(&bytes)?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let invalid = |m: String| PlanError::Invalid(m);
    let policy_path = base.join(&file.policy);
    let policy_bytes =
        std::fs::read(&policy_path).map_err(|e| PlanError::Read(policy_path.clone(), e))?;
    let policy = Policy::parse(&policy_bytes)?;
    let mut tokens: std::collections::BTreeMap<[u8; 32], String> = Default::default();
    let mut all_targets = Vec::new();
    for key in &file.keys {
        let mut checked = Vec::new();
        for t in &key.targets {
            if t.wrapping_key_sha256.is_empty() {
                return Err(invalid(format!(
                    "key {:?} target {:?}: wrapping_key_sha256 is missing; this is a draft: run `byok-bastion prepare --ceremony` on the bastion and bring the file it writes",
                    key.label, t.name
                )));
            }
            let p = base.join(&t.params);
            let pbytes = std::fs::read(&p).map_err(|e| PlanError::Read(p.clone(), e))?;
            let err = |source| PlanError::Params {
                label: key.label.clone(),
                target: t.name.clone(),
                source,
            };
            let params = ImportParameters::parse(&pbytes, now).map_err(err)?;
            if params.remaining(now) < min_remaining {
                return Err(invalid(format!(
                    "key {:?} target {:?}: the import parameters expire at {}, before the ceremony can finish; fetch new ones",
                    key.label,
                    t.name,
                    crate::kms::import_params::rfc3339(params.valid_to)
                )));
            }
            if let Some(a) = params.wrapping_algorithm {
                if a != t.wrapping_algorithm {
                    return Err(invalid(format!("key {:?} target {:?}: the parameters were requested for {a}, the file says {}", key.label, t.name, t.wrapping_algorithm)));
                }
            }
            if let Some(s) = params.key_spec {
                if s != key.key_spec {
                    return Err(invalid(format!(
                        "key {:?} target {:?}: the KMS key is {s}, the file says {}",
                        key.label, t.name, key.key_spec
                    )));
                }
            }
            if let Some(kms_key) = t.kms_key.as_deref().filter(|k| k.starts_with("arn:")) {
                if kms_key != params.key_id {
                    return Err(invalid(format!(
                        "key {:?} target {:?}: the file names KMS key {kms_key}, the parameters are for {}",
                        key.label, t.name, params.key_id
                    )));
                }
            }
            let params_region = params
                .region
                .clone()
                .or_else(|| params.key_id.split(':').nth(3).map(String::from))
                .filter(|r| !r.is_empty());
            if let (Some(r), Some(pr)) = (&t.region, &params_region) {
                if r != pr {
                    return Err(invalid(format!(
                        "key {:?} target {:?}: the file says Region {r}, the parameters are from {pr}",
                        key.label, t.name
                    )));
                }
            }
            if let Some(spec) = &t.wrapping_key_spec {
                if *spec != format!("RSA_{}", params.wrapping_key_bits) {
                    return Err(invalid(format!(
                        "key {:?} target {:?}: the file asks for a {spec} wrapping key, the parameters have RSA-{}",
                        key.label, t.name, params.wrapping_key_bits
                    )));
                }
            }
            let Some(expected) = normalize(&t.wrapping_key_sha256) else {
                return Err(invalid(format!(
                    "key {:?} target {:?}: wrapping_key_sha256 is not 64 hex digits",
                    key.label, t.name
                )));
            };
            if expected != hex::encode(params.wrapping_key_sha256()) {
                return Err(invalid(format!(
                    "key {:?} target {:?}: wrapping key fingerprint mismatch: the parameters have {}, the ceremony file expects {expected}. Do not continue: compare with the bastion",
                    key.label,
                    t.name,
                    hex::encode(params.wrapping_key_sha256())
                )));
            }
            check_combination(key.key_spec, t.wrapping_algorithm, params.wrapping_key_bits)
                .map_err(|source| PlanError::Combination {
                    label: key.label.clone(),
                    target: t.name.clone(),
                    source,
                })?;
            let here = format!("{}/{}", key.label, t.name);
            if let Some(first) = tokens.insert(params.import_token_sha256(), here.clone()) {
                return Err(invalid(format!(
                    "targets {first} and {here} use the same import token: each wrap needs its own GetParametersForImport"
                )));
            }
            checked.push(CheckedTarget {
                target: t.clone(),
                params,
                params_bytes: pbytes,
            });
        }
        all_targets.push(checked);
    }
    Ok(CheckedCeremony {
        file_sha256: sha256_hex(&bytes),
        policy_sha256: sha256_hex(&policy_bytes),
        file,
        policy,
        targets: all_targets,
    })
}

/// The printable custodian runbook for a checked ceremony (Markdown).
pub fn runbook(c: &CheckedCeremony) -> String {
    use crate::fingerprint::Fingerprint;
    let f = &c.file;
    let mut s = format!(
        "# Ceremony {}\n\n{}\n\n* Ceremony file SHA-256: `{}`\n* HSM: token `{}`, module `{}`\n* Custodian policy: {} of {} (`{}`)\n\n## Before starting\n\n- [ ] The workstation clock shows the correct UTC time. ______ ______\n- [ ] `byok-airgap mechanisms --token-label {}` passes for every key spec and algorithm below. ______ ______\n\n## Keys\n\n",
        f.ceremony_id,
        f.purpose,
        c.file_sha256,
        f.hsm.token_label,
        f.hsm.module.display(),
        c.policy.threshold,
        c.policy.custodians.len(),
        c.policy.custodians.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", "),
        f.hsm.token_label,
    );
    for (step, (key, targets)) in (1..).zip(f.keys.iter().zip(&c.targets)) {
        s += &format!(
            "### {step}. `{}` ({}, {})\n\n",
            key.label,
            key.key_spec,
            if key.source == Source::Generate {
                "generate in the HSM"
            } else {
                "existing HSM key"
            }
        );
        for t in targets {
            let fp = Fingerprint(t.params.wrapping_key_sha256());
            s += &format!(
                "- Target **{}**: KMS key `{}`, {} under RSA-{}, parameters valid until {}\n  Wrapping key SHA-256, read aloud and compare with the bastion:\n\n  ```\n  {}\n  ```\n  - [ ] Fingerprint compared. ______ ______\n",
                t.target.name,
                t.params.key_id,
                t.target.wrapping_algorithm,
                t.params.wrapping_key_bits,
                crate::kms::import_params::rfc3339(t.params.valid_to),
                fp.grouped().replace('\n', "\n  "),
            );
        }
        s += "- [ ] Check value written down (KCV, HMAC check or public key SHA-256): ____________________\n\n";
    }
    s += "## Sign-off\n\nEach custodian signs with `byok-airgap ceremony sign OUT --custodian NAME --key-label …` after reading the transcript digest aloud.\n\n| custodian | signature | time |\n|---|---|---|\n";
    for cu in &c.policy.custodians {
        s += &format!("| {} | | |\n", cu.name);
    }
    s
}
