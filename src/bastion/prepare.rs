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
use super::errors::{kms, BastionError};
use super::regions::Regions;
use super::state::{ParamsRecord, StateDir};
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
                            .map_err(|e| BastionError::Local(format!("tag {k}: {e}")))
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
        .ok_or_else(|| BastionError::Local("CreateKey returned no key".into()))?;
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
        return Err(BastionError::Local(format!(
            "{} already exists; refusing to overwrite it",
            out_file.display()
        )));
    }
    let meta = b.describe(key).await?;
    if meta.origin() != Some(&OriginType::External) {
        return Err(BastionError::Local(format!(
            "{key} is not a key with Origin EXTERNAL; create one with --create"
        )));
    }
    let key_spec = meta
        .key_spec()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    let arn = meta.arn().unwrap_or(meta.key_id()).to_string();
    if let Some(want) = expect_spec {
        if key_spec != want.as_str() {
            return Err(BastionError::Local(format!(
                "{key} is a {key_spec} key, the ceremony file says {want}"
            )));
        }
    }
    if let Err(e) = crate::kms::check_combination(
        KeySpec::from_str(&key_spec).map_err(|e| BastionError::Local(format!("{key}: {e}")))?,
        algorithm,
        wrapping_key_bits(wrapping_key_spec)?,
    ) {
        return Err(BastionError::Local(format!("{key}: {e}")));
    }
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
        return Err(BastionError::Local(
            "GetParametersForImport returned an incomplete answer".into(),
        ));
    };
    let valid_to = time::OffsetDateTime::from_unix_timestamp(valid_to.secs())
        .map_err(|e| BastionError::Local(e.to_string()))?;
    let valid_to = crate::kms::import_params::rfc3339(valid_to);
    let b64 = base64::engine::general_purpose::STANDARD;
    let file = serde_json::json!({
        "KeyId": arn,
        "ImportToken": b64.encode(token.as_ref()),
        "PublicKey": b64.encode(public.as_ref()),
        "ParametersValidTo": valid_to,
        "KeySpec": key_spec,
        "WrappingAlgorithm": algorithm.as_str(),
        "WrappingKeySpec": wrapping_key_spec,
        "Region": b.region,
    });
    let bytes = serde_json::to_vec_pretty(&file).expect("serializes");
    // Check we wrote something byok-airgap accepts.
    crate::kms::ImportParameters::parse(&bytes, time::OffsetDateTime::now_utc()).map_err(|e| {
        BastionError::Local(format!(
            "KMS returned parameters byok-airgap would refuse: {e}"
        ))
    })?;
    write_atomically(out_file, &bytes)?;
    let now = crate::kms::import_params::rfc3339(time::OffsetDateTime::now_utc());
    let path = std::fs::canonicalize(out_file)
        .map_err(|e| local(format!("cannot resolve {}: {e}", out_file.display())))?;
    state.record_params(&ParamsRecord {
        path,
        sha256: hex::encode(Sha256::digest(&bytes)),
        import_token_sha256: hex::encode(Sha256::digest(token.as_ref())),
        wrapping_key_sha256: Fingerprint::of(public.as_ref()).hex(),
        key_arn: arn.clone(),
        region: b.region.clone(),
        recorded_at: now,
    })?;
    Ok(Prepared {
        key_arn: arn,
        key_spec,
        params_file: out_file.to_path_buf(),
        wrapping_key_sha256: Fingerprint::of(public.as_ref()).hex(),
        valid_to,
    })
}

/// Write a file via a temporary name and a hard link, which never overwrites.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BastionError> {
    let err =
        |e: std::io::Error| BastionError::Local(format!("cannot write {}: {e}", path.display()));
    let tmp = path.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(err)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(err)
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
        _ => Err(BastionError::Local(format!(
            "wrapping key spec {spec:?} must be RSA_2048, RSA_3072 or RSA_4096"
        ))),
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

fn local(e: impl std::fmt::Display) -> BastionError {
    BastionError::Local(e.to_string())
}

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
    use crate::ceremony::file::parse_structure;
    let bytes = std::fs::read(opts.draft)
        .map_err(|e| local(format!("cannot read {}: {e}", opts.draft.display())))?;
    let mut file =
        parse_structure(&bytes).map_err(|e| local(format!("{}: {e}", opts.draft.display())))?;
    if opts.out.exists() {
        return Err(local(format!(
            "{} already exists; refusing to overwrite it",
            opts.out.display()
        )));
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
        return Err(local(format!(
            "write the prepared ceremony file next to the draft (in {}): the paths in it are relative to its directory",
            base.display()
        )));
    }
    // Every local check first.
    let mut paths = std::collections::BTreeSet::new();
    for key in &file.keys {
        for t in &key.targets {
            let here = format!("{}/{}", key.label, t.name);
            if !t.wrapping_key_sha256.is_empty() {
                return Err(local(format!("{here} already has a wrapping_key_sha256: this file was prepared already; start from the draft")));
            }
            if t.kms_key.is_none() && !opts.create_missing {
                return Err(local(format!("{here} names no kms_key: add one, or pass --create-missing to create an EXTERNAL {} key", key.key_spec)));
            }
            let spec = t
                .wrapping_key_spec
                .as_deref()
                .unwrap_or(opts.default_wrapping_key_spec);
            crate::kms::check_combination(
                key.key_spec,
                t.wrapping_algorithm,
                wrapping_key_bits(spec)?,
            )
            .map_err(|e| local(format!("{here}: {e}")))?;
            if let (Some(k), Some(r)) = (
                t.kms_key.as_deref().and_then(super::regions::region_of),
                &t.region,
            ) {
                if k != r {
                    return Err(local(format!("{here}: kms_key is in {k}, region says {r}")));
                }
            }
            if !stays_inside(&t.params) {
                return Err(local(format!(
                    "{here}: params path {} leaves the draft's directory (absolute, or with ..): name a file under {}",
                    t.params.display(),
                    base.display()
                )));
            }
            if !paths.insert(base.join(&t.params)) {
                return Err(local(format!(
                    "{here}: another target writes {} too",
                    t.params.display()
                )));
            }
        }
    }
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
            let now = time::OffsetDateTime::now_utc();
            let (prepared, created, kept, region) = if path.exists() {
                let pbytes = std::fs::read(&path)
                    .map_err(|e| local(format!("cannot read {}: {e}", path.display())))?;
                let p = crate::kms::ImportParameters::parse(&pbytes, now).map_err(|e| {
                    local(format!("{here}: {} exists and is not usable ({e}); remove it to fetch new parameters", path.display()))
                })?;
                let token_sha256: [u8; 32] = Sha256::digest(&p.import_token).into();
                let ours = state.params_record(&token_sha256)?.is_some_and(|r| {
                    r.sha256 == hex::encode(Sha256::digest(&pbytes))
                        && std::fs::canonicalize(&path).is_ok_and(|c| c == r.path)
                });
                if !ours {
                    return Err(local(format!(
                        "{here}: {} exists but this bastion did not write it (no matching record in its state directory {}), or it changed since; remove it to fetch new parameters",
                        path.display(),
                        state.path().display()
                    )));
                }
                let matches = p.wrapping_algorithm == Some(t.wrapping_algorithm)
                    && p.key_spec == Some(key.key_spec)
                    && format!("RSA_{}", p.wrapping_key_bits) == spec
                    && t.kms_key
                        .as_deref()
                        .is_none_or(|k| !k.starts_with("arn:") || k == p.key_id)
                    && p.remaining(now) >= KEEP_MARGIN;
                if !matches {
                    return Err(local(format!(
                        "{here}: {} exists but is not this target's (algorithm, key spec, wrapping key, key) or expires within 2 hours; remove it to fetch new parameters",
                        path.display()
                    )));
                }
                let region = p
                    .region
                    .clone()
                    .or_else(|| super::regions::region_of(&p.key_id).map(String::from))
                    .unwrap_or_default();
                (
                    Prepared {
                        key_arn: p.key_id.clone(),
                        key_spec: key.key_spec.as_str().to_string(),
                        params_file: path.clone(),
                        wrapping_key_sha256: hex::encode(p.wrapping_key_sha256()),
                        valid_to: crate::kms::import_params::rfc3339(p.valid_to),
                    },
                    false,
                    true,
                    region,
                )
            } else {
                let b = match &t.kms_key {
                    Some(k) => regions.for_key(k, t.region.as_deref()).await?,
                    None => match &t.region {
                        Some(r) => regions.region(r).await?,
                        None => regions.default_region().await?,
                    },
                };
                let (key_ref, created) = match &t.kms_key {
                    Some(k) => (k.clone(), false),
                    None => {
                        let arn = create(
                            &b,
                            &CreateSpec {
                                key_spec: key.key_spec,
                                description: format!("byok-ceremony {ceremony_id} {here}"),
                                alias: None,
                                tags: [
                                    ("byok:ceremony".to_string(), ceremony_id.clone()),
                                    ("byok:target".to_string(), here.clone()),
                                ]
                                .into_iter()
                                .chain(opts.tags.iter().cloned())
                                .collect(),
                            },
                        )
                        .await?;
                        (arn, true)
                    }
                };
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| local(format!("cannot create {}: {e}", dir.display())))?;
                }
                pacer.wait(&b.region).await;
                let p = prepare(
                    &b,
                    state,
                    &key_ref,
                    t.wrapping_algorithm,
                    &spec,
                    Some(key.key_spec),
                    &path,
                )
                .await?;
                (p, created, false, b.region.clone())
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
    write_atomically(opts.out, &json)?;
    Ok(done)
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
        hex::decode_to_slice(&l.import_token_sha256, &mut token)
            .map_err(|e| BastionError::Local(format!("{}: {e}", l.bundle)))?;
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
