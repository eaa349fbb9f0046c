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
    let invalid = |m: String| PlanError::Invalid(m);
    if file.format != FORMAT {
        return Err(invalid(format!(
            "format is {:?}, expected {FORMAT:?}",
            file.format
        )));
    }
    if file.keys.is_empty() {
        return Err(invalid("the ceremony has no keys".into()));
    }
    let mut labels = BTreeSet::new();
    for key in &file.keys {
        if !labels.insert(key.label.clone()) {
            return Err(invalid(format!(
                "key label {:?} is used twice",
                key.label.as_str()
            )));
        }
        if key.targets.is_empty() {
            return Err(invalid(format!("key {:?} has no targets", key.label)));
        }
        let mut names = BTreeSet::new();
        for t in &key.targets {
            if !names.insert(t.name.clone()) {
                return Err(invalid(format!(
                    "key {:?}: target name {:?} is used twice",
                    key.label.as_str(),
                    t.name.as_str()
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
    let invalid = |m: String| PlanError::Invalid(m);
    let policy_path = inside(&base, &file.policy, "policy")?;
    let policy_bytes = read_bounded(&policy_path, "custodian policy", crate::media::MAX_POLICY)?;
    let policy = Policy::parse(&policy_bytes)?;
    let mut tokens: std::collections::BTreeMap<[u8; 32], String> = Default::default();
    let mut all_targets = Vec::new();
    let mut digest_lines = Vec::new();
    for key in &file.keys {
        let mut checked = Vec::new();
        for t in &key.targets {
            if t.wrapping_key_sha256.is_empty() {
                return Err(invalid(format!(
                    "key {:?} target {:?}: wrapping_key_sha256 is missing; this is a draft: run `byok-bastion prepare --ceremony` on the bastion and bring the file it writes",
                    key.label, t.name
                )));
            }
            let (params, pbytes) = read_target_params(&base, key, t, now)?;
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
            digest_lines.push(DigestLine::new(&key.label, &t.name, &params));
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
        parameters_digest: params_digest::digest(&digest_lines),
        digest_lines,
    })
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
