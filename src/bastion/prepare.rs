//! `byok-bastion prepare`: create EXTERNAL keys if asked, fetch import
//! parameters, and write the file `byok-airgap` reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use aws_sdk_kms::types::{
    AlgorithmSpec, KeySpec as SdkKeySpec, KeyUsageType, OriginType, WrappingKeySpec,
};
use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::client::Bastion;
use super::errors::{kms, BastionError, DraftError, KeyProblem, UsageError};
use super::regions::Regions;
use super::state::{ParamsRecord, StateDir};
use crate::bundle::output::write_new_file;
use crate::fingerprint::Fingerprint;
use crate::kms::{KeySpec, WrappingAlgorithm};

/// What to create with `--create`.
#[derive(Clone, Debug)]
pub struct CreateSpec {
    /// Key spec.
    pub key_spec: KeySpec,
    /// Description.
    pub description: String,
    /// Alias to attach (`alias/...`), if any.
    pub alias: Option<String>,
    /// Tags (key, value).
    pub tags: Vec<(String, String)>,
}

/// Parse `KEY=VALUE` (KMS: key 1-128, value 0-256 characters; `aws:` keys are AWS's).
pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("tag {s:?} is not KEY=VALUE"))?;
    if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
        return Err(format!(
            "tag {s:?}: keys are 1-128 characters, values at most 256"
        ));
    }
    if k.to_ascii_lowercase().starts_with("aws:") {
        return Err(format!("tag {s:?}: keys starting with aws: are reserved"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// One prepared key.
#[derive(Clone, Debug, Serialize)]
pub struct Prepared {
    /// Key ARN.
    pub key_arn: String,
    /// Key spec from DescribeKey.
    pub key_spec: String,
    /// The file written.
    pub params_file: PathBuf,
    /// SHA-256 of the wrapping public key.
    pub wrapping_key_sha256: String,
    /// Expiry, RFC 3339.
    pub valid_to: String,
}

/// The usage KMS needs for a key spec.
pub fn usage_for(spec: KeySpec) -> KeyUsageType {
    use crate::kms::KeyFamily;
    match spec.family() {
        KeyFamily::Aes => KeyUsageType::EncryptDecrypt,
        KeyFamily::Hmac => KeyUsageType::GenerateVerifyMac,
        KeyFamily::Rsa | KeyFamily::Ec => KeyUsageType::SignVerify,
    }
}

/// Create an EXTERNAL key; returns its ARN.
pub async fn create(b: &Bastion, c: &CreateSpec) -> Result<String, BastionError> {
    let out = b
        .kms
        .create_key()
        .origin(OriginType::External)
        .key_spec(SdkKeySpec::from(c.key_spec.as_str()))
        .key_usage(usage_for(c.key_spec))
        .description(&c.description)
        .set_tags(if c.tags.is_empty() {
            None
        } else {
            Some(
                c.tags
                    .iter()
                    .map(|(k, v)| {
                        aws_sdk_kms::types::Tag::builder()
                            .tag_key(k)
                            .tag_value(v)
                            .build()
                            .map_err(|_| BastionError::Internal("a KMS tag without key or value"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            )
        })
        .send()
        .await
        .map_err(|e| kms("CreateKey", e))?;
    let arn = out
        .key_metadata()
        .map(|m| m.arn().unwrap_or(m.key_id()).to_string())
        .ok_or(BastionError::IncompleteAnswer {
            operation: "CreateKey",
            missing: "the key's metadata",
        })?;
    if let Some(alias) = &c.alias {
        b.kms
            .create_alias()
            .alias_name(alias)
            .target_key_id(&arn)
            .send()
            .await
            .map_err(|e| kms("CreateAlias", e))?;
    }
    Ok(arn)
}

/// Fetch import parameters for `key`, write them to `out_file` (which must
/// not exist), and record the file (path, SHA-256, key, Region, time) in the
/// state directory: `import` and `prepare --ceremony` accept only recorded files.
pub async fn prepare(
    b: &Bastion,
    state: &StateDir,
    key: &str,
    algorithm: WrappingAlgorithm,
    wrapping_key_spec: &str,
    expect_spec: Option<KeySpec>,
    out_file: &Path,
) -> Result<Prepared, BastionError> {
    if out_file.exists() {
        return Err(UsageError::Exists(out_file.to_path_buf()).into());
    }
    let (arn, spec) = importable_key(b, key, algorithm, wrapping_key_spec, expect_spec).await?;
    let out = b
        .kms
        .get_parameters_for_import()
        .key_id(&arn)
        .wrapping_algorithm(AlgorithmSpec::from(algorithm.as_str()))
        .wrapping_key_spec(WrappingKeySpec::from(wrapping_key_spec))
        .send()
        .await
        .map_err(|e| kms("GetParametersForImport", e))?;
    let (Some(token), Some(public), Some(valid_to)) = (
        out.import_token(),
        out.public_key(),
        out.parameters_valid_to(),
    ) else {
        return Err(BastionError::IncompleteAnswer {
            operation: "GetParametersForImport",
            missing: "the import token, public key or expiry",
        });
    };
    let valid_to = time::OffsetDateTime::from_unix_timestamp(valid_to.secs()).map_err(|_| {
        BastionError::IncompleteAnswer {
            operation: "GetParametersForImport",
            missing: "a representable ParametersValidTo",
        }
    })?;
    let valid_to = crate::kms::import_params::rfc3339(valid_to);
    let b64 = base64::engine::general_purpose::STANDARD;
    let file = serde_json::json!({
        "KeyId": arn,
        "ImportToken": b64.encode(token.as_ref()),
        "PublicKey": b64.encode(public.as_ref()),
        "ParametersValidTo": valid_to,
        "KeySpec": spec.as_str(),
        "WrappingAlgorithm": algorithm.as_str(),
        "WrappingKeySpec": wrapping_key_spec,
        "Region": b.region,
    });
    let bytes = serde_json::to_vec_pretty(&file).expect("serializes");
    write_and_record(state, out_file, &bytes, token.as_ref(), &arn, &b.region)?;
    Ok(Prepared {
        key_arn: arn,
        key_spec: spec.as_str().to_string(),
        params_file: out_file.to_path_buf(),
        wrapping_key_sha256: Fingerprint::of(public.as_ref()).hex(),
        valid_to,
    })
}

/// DescribeKey: the key must be EXTERNAL, of the spec the ceremony file
/// says (if it says one), and importable with this wrapping. Returns its ARN and spec.
pub(crate) async fn importable_key(
    b: &Bastion,
    key: &str,
    algorithm: WrappingAlgorithm,
    wrapping_key_spec: &str,
    expect_spec: Option<KeySpec>,
) -> Result<(String, KeySpec), BastionError> {
    let meta = b.describe(key).await?;
    if meta.origin() != Some(&OriginType::External) {
        return Err(KeyProblem::NotExternal(key.to_string()).into());
    }
    let actual = meta
        .key_spec()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    if let Some(want) = expect_spec {
        if actual != want.as_str() {
            return Err(KeyProblem::SpecDiffers {
                key: key.to_string(),
                actual,
                expected: want,
            }
            .into());
        }
    }
    let spec = KeySpec::from_str(&actual).map_err(|source| KeyProblem::UnknownSpec {
        key: key.to_string(),
        source,
    })?;
    crate::kms::check_combination(spec, algorithm, wrapping_key_bits(wrapping_key_spec)?).map_err(
        |source| KeyProblem::Combination {
            key: key.to_string(),
            source,
        },
    )?;
    Ok((answered_arn(key, &meta)?, spec))
}

/// The key ARN DescribeKey answered with, when it is the key asked about: a
/// key ARN asked about must come back as itself, a key ID as its own ID; an
/// alias can name any key. An answer without an ARN is refused.
fn answered_arn(asked: &str, meta: &aws_sdk_kms::types::KeyMetadata) -> Result<String, KeyProblem> {
    let arn = meta.arn().unwrap_or_default();
    let by_alias = asked.starts_with("alias/") || asked.contains(":alias/");
    let same = if by_alias {
        true
    } else if asked.starts_with("arn:") {
        arn == asked
    } else {
        meta.key_id() == asked
    };
    if arn.is_empty() || !arn.starts_with("arn:") || !same {
        return Err(KeyProblem::AnswerForAnotherKey {
            asked: asked.to_string(),
            answered: arn.to_string(),
        });
    }
    Ok(arn.to_string())
}

/// Check that the air-gapped side would accept `bytes`, write them to
/// `out_file` (never overwriting) and record the file in the state directory.
fn write_and_record(
    state: &StateDir,
    out_file: &Path,
    bytes: &[u8],
    token: &[u8],
    arn: &str,
    region: &str,
) -> Result<(), BastionError> {
    let p = crate::kms::ImportParameters::parse(bytes, time::OffsetDateTime::now_utc())
        .map_err(BastionError::UnusableParameters)?;
    write_new_file(out_file, bytes)?;
    let path = std::fs::canonicalize(out_file).map_err(io("resolve", out_file))?;
    state.record_params(&ParamsRecord {
        path,
        sha256: hex::encode(Sha256::digest(bytes)),
        import_token_sha256: hex::encode(Sha256::digest(token)),
        wrapping_key_sha256: hex::encode(p.wrapping_key_sha256()),
        key_arn: arn.to_string(),
        region: region.to_string(),
        recorded_at: crate::kms::import_params::rfc3339(time::OffsetDateTime::now_utc()),
    })?;
    Ok(())
}

/// `map_err` for a file operation on `path`.
fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> BastionError + 'a {
    move |source| BastionError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether a draft's params path stays inside the draft's directory: relative,
/// with no `..` (symlinks inside are the operator's own directory).
pub fn stays_inside(p: &Path) -> bool {
    use std::path::Component;
    !p.as_os_str().is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Wait between GetParametersForImport calls to stay under its ~1/s quota.
pub const PACE: Duration = Duration::from_millis(1100);

/// The bits of `RSA_2048`, `RSA_3072` or `RSA_4096`.
pub fn wrapping_key_bits(spec: &str) -> Result<usize, BastionError> {
    match spec {
        "RSA_2048" => Ok(2048),
        "RSA_3072" => Ok(3072),
        "RSA_4096" => Ok(4096),
        _ => Err(UsageError::WrappingKeySpec(spec.to_string()).into()),
    }
}

/// Spaces calls per key (account and Region: KMS's quotas are per account and
/// Region), shared between concurrent tasks: each call gets the next free slot
/// at least `interval` after the previous one, and nobody sleeps holding the lock.
#[derive(Debug)]
pub struct RatePacer {
    interval: Duration,
    next: std::sync::Mutex<BTreeMap<String, Instant>>,
}

impl RatePacer {
    /// At most `per_second` calls per second per key (`0` or less: no pacing).
    pub fn per_second(per_second: f64) -> Self {
        let interval = if per_second > 0.0 {
            Duration::from_secs_f64(1.0 / per_second)
        } else {
            Duration::ZERO
        };
        RatePacer {
            interval,
            next: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Wait for this call's slot under `key`.
    pub async fn wait(&self, key: &str) {
        if self.interval.is_zero() {
            return;
        }
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = next.get(key).copied().filter(|t| *t > now).unwrap_or(now);
            next.insert(key.to_string(), slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

/// Spaces GetParametersForImport calls per Region (its quota is per account
/// and Region; one invocation uses one account's credentials).
pub struct Pacer {
    last: BTreeMap<String, Instant>,
    interval: Duration,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            last: BTreeMap::new(),
            interval: PACE,
        }
    }
}

impl Pacer {
    /// At most `per_second` calls per second per Region (`0` or less: no pacing).
    pub fn per_second(per_second: f64) -> Self {
        Pacer {
            last: BTreeMap::new(),
            interval: if per_second > 0.0 {
                Duration::from_secs_f64(1.0 / per_second)
            } else {
                Duration::ZERO
            },
        }
    }

    /// Wait until a call to `region` keeps under the quota, and record it.
    pub async fn wait(&mut self, region: &str) {
        if let Some(last) = self.last.get(region) {
            let since = last.elapsed();
            if since < self.interval {
                tokio::time::sleep(self.interval - since).await;
            }
        }
        self.last.insert(region.to_string(), Instant::now());
    }
}

/// One target of a ceremony file after `prepare --ceremony`.
#[derive(Clone, Debug, Serialize)]
pub struct PreparedTarget {
    /// Key label.
    pub label: String,
    /// Target name.
    pub target: String,
    /// Region.
    pub region: String,
    /// Whether the KMS key was created now.
    pub created: bool,
    /// Whether an existing, still valid parameters file was kept (a re-run).
    pub kept: bool,
    /// The parameters.
    #[serde(flatten)]
    pub prepared: Prepared,
}

/// Options of `prepare --ceremony`.
pub struct CeremonyPrepare<'a> {
    /// The draft ceremony file.
    pub draft: &'a Path,
    /// Where to write the completed ceremony file (next to the draft; never overwritten).
    pub out: &'a Path,
    /// Create an EXTERNAL key for targets that name none.
    pub create_missing: bool,
    /// Wrapping key spec for targets that do not name one.
    pub default_wrapping_key_spec: &'a str,
    /// Tags for created keys (besides `byok:ceremony` and `byok:target`).
    pub tags: &'a [(String, String)],
    /// GetParametersForImport calls per second per Region.
    pub params_per_second: f64,
}

/// Parameters kept from an earlier, interrupted run must be valid at least this long.
const KEEP_MARGIN: time::Duration = time::Duration::hours(2);

/// Fill in a draft ceremony file: for every target, find (or create) its KMS
/// key in its Region, fetch import parameters into the file the target names,
/// and record the key ARN, Region, wrapping key spec and fingerprint. Every
/// local check runs before the first KMS call; parameters files left by an
/// interrupted run are kept when still valid, so re-running continues.
pub async fn prepare_ceremony(
    regions: &Regions,
    state: &StateDir,
    opts: &CeremonyPrepare<'_>,
    report: &(dyn Fn(&PreparedTarget) + Sync),
) -> Result<Vec<PreparedTarget>, BastionError> {
    let bytes = std::fs::read(opts.draft).map_err(io("read", opts.draft))?;
    let mut file =
        crate::ceremony::file::parse_structure(&bytes).map_err(|source| DraftError::Structure {
            path: opts.draft.to_path_buf(),
            source: Box::new(source),
        })?;
    let base = draft_base(opts)?;
    check_draft(&file, opts, &base)?;
    let mut pacer = Pacer::per_second(opts.params_per_second);
    let mut done = Vec::new();
    let ceremony_id = file.ceremony_id.to_string();
    for key in &mut file.keys {
        for t in &mut key.targets {
            let here = format!("{}/{}", key.label, t.name);
            let spec = t
                .wrapping_key_spec
                .clone()
                .unwrap_or_else(|| opts.default_wrapping_key_spec.to_string());
            let path = base.join(&t.params);
            let (prepared, created, kept, region) = if path.exists() {
                let (p, region) = kept_parameters(state, &here, key.key_spec, t, &spec, &path)?;
                (p, false, true, region)
            } else {
                let new = Fetch {
                    bundle: &here,
                    ceremony_id: &ceremony_id,
                    key_spec: key.key_spec,
                    spec: &spec,
                    path: &path,
                };
                let (p, created, region) =
                    fetch_parameters(regions, state, opts, &mut pacer, t, &new).await?;
                (p, created, false, region)
            };
            t.kms_key = Some(prepared.key_arn.clone());
            t.region = Some(region.clone()).filter(|r| !r.is_empty());
            t.wrapping_key_spec = Some(spec);
            t.wrapping_key_sha256 = prepared.wrapping_key_sha256.clone();
            let pt = PreparedTarget {
                label: key.label.to_string(),
                target: t.name.to_string(),
                region,
                created,
                kept,
                prepared,
            };
            report(&pt);
            done.push(pt);
        }
    }
    let mut json = serde_json::to_vec_pretty(&file).expect("serializes");
    json.push(b'\n');
    write_new_file(opts.out, &json)?;
    Ok(done)
}

/// The draft's directory, after checking that the completed file goes next
/// to it (its paths are relative to it) and does not exist yet.
fn draft_base(opts: &CeremonyPrepare<'_>) -> Result<PathBuf, BastionError> {
    if opts.out.exists() {
        return Err(UsageError::Exists(opts.out.to_path_buf()).into());
    }
    let base = opts
        .draft
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let dir_of = |p: &Path| {
        let parent = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::canonicalize(parent).ok()
    };
    if dir_of(opts.out).is_none() || dir_of(opts.out) != dir_of(opts.draft) {
        return Err(UsageError::OutNotNextToDraft(base).into());
    }
    Ok(base)
}

/// Every local check of the draft, before any KMS call.
fn check_draft(
    file: &crate::ceremony::file::CeremonyFile,
    opts: &CeremonyPrepare<'_>,
    base: &Path,
) -> Result<(), BastionError> {
    let mut paths = std::collections::BTreeSet::new();
    for key in &file.keys {
        for t in &key.targets {
            let bundle = format!("{}/{}", key.label, t.name);
            if !t.wrapping_key_sha256.is_empty() {
                return Err(DraftError::AlreadyPrepared(bundle).into());
            }
            if t.kms_key.is_none() && !opts.create_missing {
                return Err(DraftError::NoKey {
                    bundle,
                    key_spec: key.key_spec,
                }
                .into());
            }
            let spec = t
                .wrapping_key_spec
                .as_deref()
                .unwrap_or(opts.default_wrapping_key_spec);
            let bits = wrapping_key_bits(spec)?;
            if let Err(source) =
                crate::kms::check_combination(key.key_spec, t.wrapping_algorithm, bits)
            {
                return Err(DraftError::Combination { bundle, source }.into());
            }
            if let (Some(k), Some(r)) = (
                t.kms_key.as_deref().and_then(super::regions::region_of),
                &t.region,
            ) {
                if k != r {
                    return Err(DraftError::Region {
                        bundle,
                        key_region: k.to_string(),
                        region: r.clone(),
                    }
                    .into());
                }
            }
            if !stays_inside(&t.params) {
                return Err(DraftError::ParamsOutside {
                    bundle,
                    params: t.params.clone(),
                    base: base.to_path_buf(),
                }
                .into());
            }
            if !paths.insert(base.join(&t.params)) {
                return Err(DraftError::ParamsShared {
                    bundle,
                    params: t.params.clone(),
                }
                .into());
            }
        }
    }
    Ok(())
}

/// Parameters an earlier, interrupted run fetched for this target: kept only
/// if this bastion recorded them unchanged, they are this target's and they
/// stay valid long enough. Returns them and their Region.
fn kept_parameters(
    state: &StateDir,
    bundle: &str,
    key_spec: KeySpec,
    t: &crate::ceremony::file::Target,
    spec: &str,
    path: &Path,
) -> Result<(Prepared, String), BastionError> {
    let now = time::OffsetDateTime::now_utc();
    let pbytes = std::fs::read(path).map_err(io("read", path))?;
    let p = crate::kms::ImportParameters::parse(&pbytes, now).map_err(|source| {
        DraftError::ParamsUnusable {
            bundle: bundle.to_string(),
            path: path.to_path_buf(),
            source,
        }
    })?;
    let token_sha256: [u8; 32] = Sha256::digest(&p.import_token).into();
    let ours = state.params_record(&token_sha256)?.is_some_and(|r| {
        r.sha256 == hex::encode(Sha256::digest(&pbytes))
            && std::fs::canonicalize(path).is_ok_and(|c| c == r.path)
    });
    if !ours {
        return Err(DraftError::ParamsNotOurs {
            bundle: bundle.to_string(),
            path: path.to_path_buf(),
            state: state.path().to_path_buf(),
        }
        .into());
    }
    let matches = p.wrapping_algorithm == Some(t.wrapping_algorithm)
        && p.key_spec == Some(key_spec)
        && format!("RSA_{}", p.wrapping_key_bits) == spec
        && t.kms_key
            .as_deref()
            .is_none_or(|k| !k.starts_with("arn:") || k == p.key_id)
        && p.remaining(now) >= KEEP_MARGIN;
    if !matches {
        return Err(DraftError::ParamsNotThisTarget {
            bundle: bundle.to_string(),
            path: path.to_path_buf(),
        }
        .into());
    }
    let region = p
        .region
        .clone()
        .or_else(|| super::regions::region_of(&p.key_id).map(String::from))
        .unwrap_or_default();
    let prepared = Prepared {
        key_arn: p.key_id.clone(),
        key_spec: key_spec.as_str().to_string(),
        params_file: path.to_path_buf(),
        wrapping_key_sha256: hex::encode(p.wrapping_key_sha256()),
        valid_to: crate::kms::import_params::rfc3339(p.valid_to),
    };
    Ok((prepared, region))
}

/// What [`fetch_parameters`] fetches for one target.
struct Fetch<'a> {
    bundle: &'a str,
    ceremony_id: &'a str,
    key_spec: KeySpec,
    spec: &'a str,
    path: &'a Path,
}

/// Fetch new parameters for a target (creating its key first if it names
/// none). Returns them, whether the key was created, and the Region.
async fn fetch_parameters(
    regions: &Regions,
    state: &StateDir,
    opts: &CeremonyPrepare<'_>,
    pacer: &mut Pacer,
    t: &crate::ceremony::file::Target,
    f: &Fetch<'_>,
) -> Result<(Prepared, bool, String), BastionError> {
    let b = match (&t.kms_key, &t.region) {
        (Some(k), r) => regions.for_key(k, r.as_deref()).await?,
        (None, Some(r)) => regions.region(r).await?,
        (None, None) => regions.default_region().await?,
    };
    let (key_ref, created) = match &t.kms_key {
        Some(k) => (k.clone(), false),
        None => {
            let tags = [
                ("byok:ceremony".to_string(), f.ceremony_id.to_string()),
                ("byok:target".to_string(), f.bundle.to_string()),
            ]
            .into_iter()
            .chain(opts.tags.iter().cloned())
            .collect();
            let spec = CreateSpec {
                key_spec: f.key_spec,
                description: format!("byok-ceremony {} {}", f.ceremony_id, f.bundle),
                alias: None,
                tags,
            };
            (create(&b, &spec).await?, true)
        }
    };
    if let Some(dir) = f.path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    pacer.wait(&b.region).await;
    let algorithm = t.wrapping_algorithm;
    let p = prepare(
        &b,
        state,
        &key_ref,
        algorithm,
        f.spec,
        Some(f.key_spec),
        f.path,
    )
    .await?;
    Ok((p, created, b.region.clone()))
}

/// The parameters digest of a ceremony file (`docs/formats.md`), computed from
/// the parameters files it names, each of which must be one this bastion
/// fetched (recorded in `state`, same wrapping key and KMS key). Custodians
/// type the digest at `byok-airgap ceremony run`; it never travels on the media.
pub fn parameters_digest(
    state: &crate::bastion::state::StateDir,
    ceremony_file: &Path,
) -> Result<
    (
        Vec<crate::ceremony::params_digest::DigestLine>,
        crate::fingerprint::Fingerprint,
    ),
    BastionError,
> {
    let (lines, digest) = crate::ceremony::file::parameters_digest_of(
        ceremony_file,
        time::OffsetDateTime::now_utc(),
    )?;
    for l in &lines {
        let mut token = [0u8; 32];
        hex::decode_to_slice(&l.import_token_sha256, &mut token).map_err(|_| {
            BastionError::Internal("a parameters digest line without a hex token digest")
        })?;
        let recorded = state.params_record(&token)?;
        let ok = recorded.as_ref().is_some_and(|r| {
            r.wrapping_key_sha256 == l.wrapping_key_sha256 && r.key_arn == l.key_arn
        });
        if !ok {
            return Err(BastionError::ParamsNotRecorded {
                bundle: l.bundle.clone(),
                token_sha256: l.import_token_sha256.clone(),
                state: state.path().to_path_buf(),
            });
        }
    }
    Ok((lines, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_rate_pacer_spaces_calls_per_key() {
        let p = std::sync::Arc::new(RatePacer::per_second(20.0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..5 {
            let p = p.clone();
            tasks.push(tokio::spawn(async move {
                p.wait(if i < 4 { "a/us-east-1" } else { "a/eu-west-1" })
                    .await;
                start.elapsed()
            }));
        }
        let mut at = Vec::new();
        for t in tasks {
            at.push(t.await.unwrap());
        }
        let mut same: Vec<_> = at[..4].to_vec();
        same.sort();
        // Four calls for one account and Region: slots 0, 50, 100, 150 ms.
        for (i, t) in same.iter().enumerate() {
            assert!(*t >= Duration::from_millis(50 * i as u64), "{same:?}");
        }
        // Another Region is not held back behind them.
        assert!(at[4] < same[3], "{at:?}");
    }

    #[test]
    fn draft_params_paths_stay_inside() {
        for ok in ["params/a.json", "./a.json", "a/b/c.json"] {
            assert!(stays_inside(Path::new(ok)), "{ok}");
        }
        for bad in ["/etc/x.json", "../x.json", "params/../../x.json", ""] {
            assert!(!stays_inside(Path::new(bad)), "{bad}");
        }
    }
}
