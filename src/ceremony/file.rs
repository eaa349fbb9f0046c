//! The ceremony file: a declarative, strictly parsed description of a whole
//! rotation (keys × wrap targets), checked completely before an HSM is touched.
//!
//! ```json
//! {
//!   "format": "byok-ceremony/ceremony/v1",
//!   "ceremony_id": "2026-11-prod-rotation",
//!   "purpose": "Quarterly rotation of prod data keys",
//!   "hsm": { "token_label": "ceremony", "module": "/usr/lib/softhsm/libsofthsm2.so",
//!            "token": { "manufacturer": "SoftHSM project", "serial": "…" } },
//!   "policy": "policy.json",
//!   "keys": [
//!     { "label": "prod-s3-2026-11", "key_spec": "SYMMETRIC_DEFAULT", "source": "generate",
//!       "targets": [
//!         { "name": "eu-west-1", "params": "params/prod-s3-eu-west-1.json",
//!           "wrapping_algorithm": "RSAES_OAEP_SHA_1", "wrapping_key_sha256": "…" } ] } ]
//! }
//! ```
//! Paths are relative to the ceremony file and stay inside its directory.
//! PINs are never in it, and neither is the module to load: `hsm.module`
//! and `hsm.token` are expectations, compared with the workstation's own
//! choice ([`crate::airgap::module`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::params_digest::{self, DigestLine};
use super::policy::{Policy, PolicyError};
use crate::airgap::module::LocalModule;
use crate::fingerprint::{normalize, Fingerprint};
use crate::kms::key_spec::CombinationError;
use crate::kms::{check_combination, ImportParameters, KeySpec, ParamsError, WrappingAlgorithm};
use crate::media::{read_bounded, MediaReadError};
use crate::names::{CeremonyId, KeyLabel, TargetName};

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

/// The HSM section: which token to use on the workstation's own module, and
/// what the ceremony expects of that module and token. The module itself is
/// never taken from the file (see [`crate::airgap::module`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmSection {
    /// The PKCS#11 module path this ceremony was planned for; `plan` and `run`
    /// refuse when the workstation's module is another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<PathBuf>,
    /// The `C_Initialize` init string it was planned with (compared, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_init_string: Option<String>,
    /// Token label.
    pub token_label: String,
    /// What the token must report (compared after the module is loaded, before login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<ExpectedToken>,
}

/// Facts the token must report; each one given must match exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedToken {
    /// `CK_TOKEN_INFO.manufacturerID` (trimmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// `CK_TOKEN_INFO.model` (trimmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `CK_TOKEN_INFO.serialNumber` (trimmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// One wrap target: a KMS key (in some Region) to import the key into.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Name, unique within the key (e.g. the Region); a path component.
    pub name: TargetName,
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
    /// CKA_LABEL, and the key's directory under `--out`.
    pub label: KeyLabel,
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
    pub ceremony_id: CeremonyId,
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
    /// One line per target for the parameters digest.
    pub digest_lines: Vec<DigestLine>,
    /// The parameters digest of the files read (what custodians confirm).
    pub parameters_digest: Fingerprint,
}

/// Why a ceremony file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Cannot read a file, or it is larger than any genuine one.
    #[error(transparent)]
    Read(#[from] MediaReadError),
    /// A path in the file leaves the ceremony file's directory.
    #[error("{what} path {path:?} must be relative to the ceremony file and stay inside its directory (no absolute paths, no '..'); copy the file next to the ceremony file")]
    PathOutside {
        /// Which path.
        what: String,
        /// As written.
        path: PathBuf,
    },
    /// Not ceremony JSON.
    #[error("the ceremony file is not valid ({0}); unknown and duplicate fields are refused")]
    Json(#[from] serde_json::Error),
    /// The `format` member is not [`FORMAT`].
    #[error("format is {found:?}, expected {FORMAT:?}")]
    Format {
        /// The format found.
        found: String,
    },
    /// The `keys` list is empty.
    #[error("the ceremony has no keys")]
    NoKeys,
    /// Two keys have the same label.
    #[error("key label {:?} is used twice", label.as_str())]
    DuplicateLabel {
        /// The label.
        label: KeyLabel,
    },
    /// A key has no targets.
    #[error("key {label:?} has no targets")]
    NoTargets {
        /// The key's label.
        label: KeyLabel,
    },
    /// Two targets of one key have the same name.
    #[error("key {:?}: target name {:?} is used twice", label.as_str(), target.as_str())]
    DuplicateTarget {
        /// The key's label.
        label: KeyLabel,
        /// The target name.
        target: TargetName,
    },
    /// `wrapping_key_spec` is not one KMS offers.
    #[error("key {label:?} target {target:?}: wrapping_key_spec {spec:?} must be RSA_2048, RSA_3072 or RSA_4096")]
    WrappingKeySpec {
        /// The key's label.
        label: KeyLabel,
        /// The target name.
        target: TargetName,
        /// The spec written.
        spec: String,
    },
    /// A draft: the bastion has not filled in the wrapping key's fingerprint.
    #[error("key {label:?} target {target:?}: wrapping_key_sha256 is missing; this is a draft: run `byok-bastion prepare --ceremony` on the bastion and bring the file it writes")]
    Draft {
        /// The key's label.
        label: KeyLabel,
        /// The target name.
        target: TargetName,
    },
    /// The parameters expire before the ceremony can finish.
    #[error("key {label:?} target {target:?}: the import parameters expire at {valid_to}, before the ceremony can finish; fetch new ones")]
    ExpiresTooSoon {
        /// The key's label.
        label: KeyLabel,
        /// The target name.
        target: TargetName,
        /// When they expire, RFC 3339.
        valid_to: String,
    },
    /// The parameters were fetched for another wrapping algorithm.
    #[error("key {label:?} target {target:?}: the parameters were requested for {requested}, the file says {file}")]
    AlgorithmMismatch {
        /// The key's label.
        label: KeyLabel,
        /// The target name.
        target: TargetName,
        /// The algorithm the parameters record.
        requested: WrappingAlgorithm,
        /// The algorithm the ceremony file names.
        file: WrappingAlgorithm,
    },
    /// The parameters are for a KMS key of another key spec.
    #[error("key {label:?} target {target:?}: the KMS key is {kms}, the file says {file}")]
    KeySpecMismatch {
        /// The key's label.
        label: KeyLabel,
        /// The target name.
        target: TargetName,
        /// The KMS key's spec, from the parameters.
        kms: KeySpec,
        /// The spec the ceremony file names.
        file: KeySpec,
    },
    /// The parameters are for another KMS key than the file names.
    #[error("key {label:?} target {target:?}: the file names KMS key {file}, the parameters are for {params}")]
    KmsKeyMismatch {
        /// The key's label.
        label: KeyLabel,
        /// The target name.
        target: TargetName,
        /// The key ARN in the ceremony file.
        file: String,
        /// The key in the parameters.
        params: String,
    },
    /// The parameters are from another Region than the file names.
    #[error("key {label:?} target {target:?}: the file says Region {file}, the parameters are from {params}")]
    RegionMismatch {
        /// The key's label.
        label: KeyLabel,
        /// The target name.
        target: TargetName,
        /// The Region in the ceremony file.
        file: String,
        /// The Region of the parameters.
        params: String,
    },
    /// The parameters' wrapping key has another size than the file asks for.
    #[error("key {label:?} target {target:?}: the file asks for a {spec} wrapping key, the parameters have RSA-{bits}")]
    WrappingKeySize {
        /// The key's label.
        label: KeyLabel,
        /// The target name.
        target: TargetName,
        /// The spec the ceremony file names.
        spec: String,
        /// The wrapping key's size in the parameters.
        bits: usize,
    },
    /// `wrapping_key_sha256` is not a SHA-256.
    #[error("key {label:?} target {target:?}: wrapping_key_sha256 is not 64 hex digits")]
    FingerprintFormat {
        /// The key's label.
        label: KeyLabel,
        /// The target name.
        target: TargetName,
    },
    /// The parameters' wrapping key is not the one the bastion printed.
    #[error("key {label:?} target {target:?}: wrapping key fingerprint mismatch: the parameters have {actual}, the ceremony file expects {expected}. Do not continue: compare with the bastion")]
    FingerprintMismatch {
        /// The key's label.
        label: KeyLabel,
        /// The target name.
        target: TargetName,
        /// The fingerprint of the parameters' wrapping key, hex.
        actual: String,
        /// The fingerprint the ceremony file records, hex.
        expected: String,
    },
    /// Two targets carry the same import token.
    #[error("targets {first} and {second} use the same import token: each wrap needs its own GetParametersForImport")]
    SharedImportToken {
        /// `LABEL/TARGET` of the first.
        first: String,
        /// `LABEL/TARGET` of the second.
        second: String,
    },
    /// The policy is wrong.
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
    /// Import parameters refused.
    #[error("key {label:?} target {target:?}: {source}")]
    Params {
        /// Key label.
        label: KeyLabel,
        /// Target name.
        target: TargetName,
        /// Why.
        source: ParamsError,
    },
    /// KMS rule broken.
    #[error("key {label:?} target {target:?}: {source}")]
    Combination {
        /// Key label.
        label: KeyLabel,
        /// Target name.
        target: TargetName,
        /// Why.
        source: CombinationError,
    },
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
    if file.format != FORMAT {
        return Err(PlanError::Format {
            found: file.format.clone(),
        });
    }
    if file.keys.is_empty() {
        return Err(PlanError::NoKeys);
    }
    let mut labels = BTreeSet::new();
    for key in &file.keys {
        let label = || key.label.clone();
        if !labels.insert(key.label.clone()) {
            return Err(PlanError::DuplicateLabel { label: label() });
        }
        if key.targets.is_empty() {
            return Err(PlanError::NoTargets { label: label() });
        }
        let mut names = BTreeSet::new();
        for t in &key.targets {
            if !names.insert(t.name.clone()) {
                return Err(PlanError::DuplicateTarget {
                    label: label(),
                    target: t.name.clone(),
                });
            }
            if let Some(spec) = &t.wrapping_key_spec {
                if !["RSA_2048", "RSA_3072", "RSA_4096"].contains(&spec.as_str()) {
                    return Err(PlanError::WrappingKeySpec {
                        label: label(),
                        target: t.name.clone(),
                        spec: spec.clone(),
                    });
                }
            }
        }
    }
    Ok(file)
}

/// `base/rel`, where `rel` (from the ceremony file) must be relative and may
/// not climb out of `base`.
pub fn inside(base: &Path, rel: &Path, what: &str) -> Result<PathBuf, PlanError> {
    use std::path::Component;
    let ok = !rel.as_os_str().is_empty()
        && rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !ok {
        return Err(PlanError::PathOutside {
            what: what.to_string(),
            path: rel.to_path_buf(),
        });
    }
    Ok(base.join(rel))
}

/// Read and parse one target's parameters file (inside `base`, bounded).
fn read_target_params(
    base: &Path,
    key: &KeyPlan,
    t: &Target,
    now: OffsetDateTime,
) -> Result<(ImportParameters, Vec<u8>), PlanError> {
    let p = inside(base, &t.params, &format!("{}/{} params", key.label, t.name))?;
    let bytes = read_bounded(
        &p,
        "import-parameters file",
        crate::kms::import_params::MAX_FILE_LEN as u64,
    )?;
    let params = ImportParameters::parse(&bytes, now).map_err(|source| PlanError::Params {
        label: key.label.clone(),
        target: t.name.clone(),
        source,
    })?;
    Ok((params, bytes))
}

/// Read and check a ceremony file against `now`; every target's parameters
/// must stay valid for `min_remaining` more.
pub fn check(
    path: &Path,
    now: OffsetDateTime,
    min_remaining: Duration,
) -> Result<CheckedCeremony, PlanError> {
    let bytes = read_bounded(path, "ceremony file", crate::media::MAX_CEREMONY_FILE)?;
    let file = parse_structure(&bytes)?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let policy_path = inside(&base, &file.policy, "policy")?;
    let policy_bytes = read_bounded(&policy_path, "custodian policy", crate::media::MAX_POLICY)?;
    let policy = Policy::parse(&policy_bytes)?;
    let mut tokens: std::collections::BTreeMap<[u8; 32], String> = Default::default();
    let mut all_targets = Vec::new();
    let mut digest_lines = Vec::new();
    for key in &file.keys {
        let mut checked = Vec::new();
        for t in &key.targets {
            let target = check_target(&base, key, t, now, min_remaining)?;
            let here = format!("{}/{}", key.label, t.name);
            if let Some(first) = tokens.insert(target.params.import_token_sha256(), here.clone()) {
                return Err(PlanError::SharedImportToken {
                    first,
                    second: here,
                });
            }
            digest_lines.push(DigestLine::new(&key.label, &t.name, &target.params));
            checked.push(target);
        }
        all_targets.push(checked);
    }
    Ok(CheckedCeremony {
        file_sha256: sha256_hex(&bytes),
        policy_sha256: sha256_hex(&policy_bytes),
        file,
        policy,
        targets: all_targets,
        parameters_digest: params_digest::digest(&digest_lines),
        digest_lines,
    })
}

/// Read one target's parameters and check them against the ceremony file:
/// not a draft, valid long enough, for the key, Region, algorithm and
/// wrapping key the file names, and a combination KMS accepts.
fn check_target(
    base: &Path,
    key: &KeyPlan,
    t: &Target,
    now: OffsetDateTime,
    min_remaining: Duration,
) -> Result<CheckedTarget, PlanError> {
    if t.wrapping_key_sha256.is_empty() {
        return Err(PlanError::Draft {
            label: key.label.clone(),
            target: t.name.clone(),
        });
    }
    let (params, params_bytes) = read_target_params(base, key, t, now)?;
    if params.remaining(now) < min_remaining {
        return Err(PlanError::ExpiresTooSoon {
            label: key.label.clone(),
            target: t.name.clone(),
            valid_to: crate::kms::import_params::rfc3339(params.valid_to),
        });
    }
    check_params_match(key, t, &params)?;
    check_fingerprint(key, t, &params)?;
    check_combination(key.key_spec, t.wrapping_algorithm, params.wrapping_key_bits).map_err(
        |source| PlanError::Combination {
            label: key.label.clone(),
            target: t.name.clone(),
            source,
        },
    )?;
    Ok(CheckedTarget {
        target: t.clone(),
        params,
        params_bytes,
    })
}

/// What the parameters say about themselves (algorithm, key spec, key ARN,
/// Region, wrapping-key size) must agree with what the file names.
fn check_params_match(
    key: &KeyPlan,
    t: &Target,
    params: &ImportParameters,
) -> Result<(), PlanError> {
    let (label, target) = (key.label.clone(), t.name.clone());
    if let Some(a) = params
        .wrapping_algorithm
        .filter(|a| *a != t.wrapping_algorithm)
    {
        return Err(PlanError::AlgorithmMismatch {
            label,
            target,
            requested: a,
            file: t.wrapping_algorithm,
        });
    }
    if let Some(s) = params.key_spec.filter(|s| *s != key.key_spec) {
        return Err(PlanError::KeySpecMismatch {
            label,
            target,
            kms: s,
            file: key.key_spec,
        });
    }
    if let Some(kms_key) = t.kms_key.as_deref().filter(|k| k.starts_with("arn:")) {
        if kms_key != params.key_id {
            return Err(PlanError::KmsKeyMismatch {
                label,
                target,
                file: kms_key.to_string(),
                params: params.key_id.clone(),
            });
        }
    }
    let params_region = params
        .region
        .clone()
        .or_else(|| params.key_id.split(':').nth(3).map(String::from))
        .filter(|r| !r.is_empty());
    if let (Some(r), Some(pr)) = (&t.region, &params_region) {
        if r != pr {
            return Err(PlanError::RegionMismatch {
                label,
                target,
                file: r.clone(),
                params: pr.clone(),
            });
        }
    }
    if let Some(spec) = &t.wrapping_key_spec {
        if *spec != format!("RSA_{}", params.wrapping_key_bits) {
            return Err(PlanError::WrappingKeySize {
                label,
                target,
                spec: spec.clone(),
                bits: params.wrapping_key_bits,
            });
        }
    }
    Ok(())
}

/// The parameters' wrapping key must be the one whose fingerprint the file
/// records (the bastion's, confirmed out of band).
fn check_fingerprint(
    key: &KeyPlan,
    t: &Target,
    params: &ImportParameters,
) -> Result<(), PlanError> {
    let Some(expected) = normalize(&t.wrapping_key_sha256) else {
        return Err(PlanError::FingerprintFormat {
            label: key.label.clone(),
            target: t.name.clone(),
        });
    };
    let actual = hex::encode(params.wrapping_key_sha256());
    if expected != actual {
        return Err(PlanError::FingerprintMismatch {
            label: key.label.clone(),
            target: t.name.clone(),
            actual,
            expected,
        });
    }
    Ok(())
}

/// The parameters digest of a ceremony file and the parameters files it
/// names, as the bastion computes it from its own copy (no policy or
/// fingerprint needed, so a draft filled in by hand works too).
pub fn parameters_digest_of(
    path: &Path,
    now: OffsetDateTime,
) -> Result<(Vec<DigestLine>, Fingerprint), PlanError> {
    let bytes = read_bounded(path, "ceremony file", crate::media::MAX_CEREMONY_FILE)?;
    let file = parse_structure(&bytes)?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut lines = Vec::new();
    for key in &file.keys {
        for t in &key.targets {
            let (params, _) = read_target_params(&base, key, t, now)?;
            lines.push(DigestLine::new(&key.label, &t.name, &params));
        }
    }
    let digest = params_digest::digest(&lines);
    Ok((lines, digest))
}

/// The printable custodian runbook for a checked ceremony (Markdown), for
/// the HSM module this workstation will load.
pub fn runbook(c: &CheckedCeremony, module: &LocalModule) -> String {
    let f = &c.file;
    let mut s = format!(
        "# Ceremony {}\n\n{}\n\n* Ceremony file SHA-256: `{}`\n* HSM: token `{}` on module `{}` (from {}){}\n* Custodian policy: {} of {} (`{}`)\n\n## Before starting\n\n- [ ] The workstation clock shows the correct UTC time. ______ ______\n- [ ] `byok-airgap mechanisms --token-label {}` passes for every key spec and algorithm below. ______ ______\n\n",
        f.ceremony_id,
        f.purpose,
        c.file_sha256,
        f.hsm.token_label,
        module.spec.path.display(),
        module.origin,
        expected_token_text(f.hsm.token.as_ref()),
        c.policy.threshold,
        c.policy.custodians.len(),
        c.policy.custodians.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", "),
        f.hsm.token_label,
    );
    s += &format!(
        "## Confirm the parameters from the bastion\n\nThe bastion printed a **parameters digest** after `byok-bastion prepare --ceremony` (or `byok-bastion params-digest --ceremony FILE`). Read it from the bastion's screen or printout, never from this media; `ceremony run` asks for it. The files on this media give:\n\n```\n{}\n```\n\n- [ ] Parameters digest compared with the bastion's. ______ ______\n\n## Keys\n\n",
        c.parameters_digest.grouped()
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
                "- Target **{}**: KMS key `{}`, {} under RSA-{}, parameters valid until {}\n  Wrapping key SHA-256 (covered by the parameters digest):\n\n  ```\n  {}\n  ```\n",
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

fn expected_token_text(t: Option<&ExpectedToken>) -> String {
    let Some(t) = t else {
        return String::new();
    };
    let parts: Vec<String> = [
        ("manufacturer", &t.manufacturer),
        ("model", &t.model),
        ("serial", &t.serial),
    ]
    .iter()
    .filter_map(|(n, v)| v.as_ref().map(|v| format!("{n} `{v}`")))
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("; the token must report {}", parts.join(", "))
    }
}

impl CeremonyFile {
    /// What the file expects of the workstation's module (compared, never used to load).
    pub fn expected_module(&self) -> crate::airgap::module::Expected<'_> {
        crate::airgap::module::Expected {
            module: self.hsm.module.as_deref(),
            module_init_string: self.hsm.module_init_string.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const FINGERPRINT: &str = "203f14c15a2ed3c1ea751a72e48a80013d8d4b7b952812322553714561d7707b";

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/ceremony")
            .join(name)
    }

    /// A ceremony file for the committed good-wrap parameters (HMAC_256,
    /// RSAES_OAEP_SHA_1, RSA-2048, eu-west-1).
    fn good() -> Value {
        json!({
            "format": FORMAT,
            "ceremony_id": "2026-12-test",
            "purpose": "test",
            "hsm": { "token_label": "t" },
            "policy": "policy.json",
            "keys": [{
                "label": "webhooks", "key_spec": "HMAC_256", "source": "generate",
                "targets": [{
                    "name": "eu-west-1", "params": "params.json",
                    "wrapping_algorithm": "RSAES_OAEP_SHA_1",
                    "wrapping_key_sha256": FINGERPRINT,
                }],
            }],
        })
    }

    fn structure(v: &Value) -> PlanError {
        parse_structure(&serde_json::to_vec(v).unwrap()).unwrap_err()
    }

    #[test]
    fn structure_refusals_are_typed_with_exact_messages() {
        let target = |f: &dyn Fn(&mut Value)| {
            let mut v = good();
            f(&mut v);
            v
        };
        let cases: Vec<(Value, &str)> = vec![
            (
                target(&|v| v["format"] = "x".into()),
                "format is \"x\", expected \"byok-ceremony/ceremony/v1\"",
            ),
            (
                target(&|v| v["keys"] = json!([])),
                "the ceremony has no keys",
            ),
            (
                target(&|v| {
                    let k = v["keys"][0].clone();
                    v["keys"].as_array_mut().unwrap().push(k);
                }),
                "key label \"webhooks\" is used twice",
            ),
            (
                target(&|v| v["keys"][0]["targets"] = json!([])),
                "key \"webhooks\" has no targets",
            ),
            (
                target(&|v| {
                    let t = v["keys"][0]["targets"][0].clone();
                    v["keys"][0]["targets"].as_array_mut().unwrap().push(t);
                }),
                "key \"webhooks\": target name \"eu-west-1\" is used twice",
            ),
            (
                target(&|v| v["keys"][0]["targets"][0]["wrapping_key_spec"] = "RSA_1024".into()),
                "key \"webhooks\" target \"eu-west-1\": wrapping_key_spec \"RSA_1024\" must be RSA_2048, RSA_3072 or RSA_4096",
            ),
        ];
        for (v, message) in cases {
            let e = structure(&v);
            assert_eq!(e.to_string(), message);
        }
        assert!(
            matches!(structure(&target(&|v| v["format"] = "x".into())), PlanError::Format { found } if found == "x")
        );
        assert!(matches!(
            structure(&target(&|v| v["keys"] = json!([]))),
            PlanError::NoKeys
        ));
        assert!(matches!(
            structure(&target(&|v| v["keys"][0]["targets"] = json!([]))),
            PlanError::NoTargets { label } if label.as_str() == "webhooks"
        ));
    }

    /// Check `v` in a directory holding the committed policy and good-wrap
    /// parameters, at the time those parameters were written.
    fn check_in_dir(v: &Value) -> Result<CheckedCeremony, PlanError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(fixture("policy.json"), dir.path().join("policy.json")).unwrap();
        std::fs::copy(
            fixture("good-wrap/ImportParameters.json"),
            dir.path().join("params.json"),
        )
        .unwrap();
        let path = dir.path().join("ceremony.json");
        std::fs::write(&path, serde_json::to_vec(v).unwrap()).unwrap();
        let now = time::macros::datetime!(2026-12-01 23:04:20 UTC);
        check(&path, now, Duration::hours(1))
    }

    #[test]
    fn the_good_file_checks() {
        let c = check_in_dir(&good()).unwrap();
        assert_eq!(c.targets.len(), 1);
        assert_eq!(c.digest_lines.len(), 1);
    }

    #[test]
    fn target_refusals_are_typed_with_exact_messages() {
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = good();
            f(&mut v["keys"][0]["targets"][0]);
            check_in_dir(&v).unwrap_err()
        };
        let here = "key \"webhooks\" target \"eu-west-1\": ";
        let e = with(&|t| t["wrapping_key_sha256"] = "".into());
        assert!(matches!(e, PlanError::Draft { .. }), "{e}");
        assert!(e.to_string().starts_with(&format!(
            "{here}wrapping_key_sha256 is missing; this is a draft"
        )));

        let e = with(&|t| t["kms_key"] = "arn:aws:kms:eu-west-1:111122223333:key/other".into());
        assert!(
            matches!(&e, PlanError::KmsKeyMismatch { file, .. } if file.ends_with("/other")),
            "{e}"
        );
        assert_eq!(e.to_string(), format!("{here}the file names KMS key arn:aws:kms:eu-west-1:111122223333:key/other, the parameters are for arn:aws:kms:eu-west-1:111122223333:key/0b6d3bb4-6b4f-4f3c-9a55-5b2b7c6f0e11"));

        let e = with(&|t| t["region"] = "us-east-1".into());
        assert!(
            matches!(&e, PlanError::RegionMismatch { file, params, .. } if file == "us-east-1" && params == "eu-west-1"),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            format!("{here}the file says Region us-east-1, the parameters are from eu-west-1")
        );

        let e = with(&|t| t["wrapping_key_spec"] = "RSA_4096".into());
        assert!(
            matches!(e, PlanError::WrappingKeySize { bits: 2048, .. }),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "{here}the file asks for a RSA_4096 wrapping key, the parameters have RSA-2048"
            )
        );

        let e = with(&|t| t["wrapping_key_sha256"] = "abc".into());
        assert!(matches!(e, PlanError::FingerprintFormat { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            format!("{here}wrapping_key_sha256 is not 64 hex digits")
        );

        let e = with(&|t| t["wrapping_key_sha256"] = "00".repeat(32).into());
        assert!(
            matches!(&e, PlanError::FingerprintMismatch { actual, .. } if actual == FINGERPRINT),
            "{e}"
        );
        assert_eq!(e.to_string(), format!("{here}wrapping key fingerprint mismatch: the parameters have {FINGERPRINT}, the ceremony file expects {}. Do not continue: compare with the bastion", "00".repeat(32)));

        // Checked at a time too close to expiry.
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(fixture("policy.json"), dir.path().join("policy.json")).unwrap();
        std::fs::copy(
            fixture("good-wrap/ImportParameters.json"),
            dir.path().join("params.json"),
        )
        .unwrap();
        let path = dir.path().join("ceremony.json");
        std::fs::write(&path, serde_json::to_vec(&good()).unwrap()).unwrap();
        let now = time::macros::datetime!(2026-12-02 21:30:00 UTC);
        let e = check(&path, now, Duration::hours(1)).unwrap_err();
        assert!(matches!(e, PlanError::ExpiresTooSoon { .. }), "{e}");
        assert!(
            e.to_string().starts_with(&format!(
                "{here}the import parameters expire at 2026-12-02T22:04:20"
            )),
            "{e}"
        );
    }

    #[test]
    fn two_targets_with_one_import_token_are_refused() {
        let mut v = good();
        let mut second = v["keys"][0]["targets"][0].clone();
        second["name"] = "second".into();
        v["keys"][0]["targets"].as_array_mut().unwrap().push(second);
        let e = check_in_dir(&v).unwrap_err();
        assert!(
            matches!(&e, PlanError::SharedImportToken { first, second } if first == "webhooks/eu-west-1" && second == "webhooks/second"),
            "{e}"
        );
        assert_eq!(e.to_string(), "targets webhooks/eu-west-1 and webhooks/second use the same import token: each wrap needs its own GetParametersForImport");
    }
}
