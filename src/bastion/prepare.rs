//! `byok-bastion prepare`: create EXTERNAL keys if asked, fetch import
//! parameters, and write the file `byok-airgap` reads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_kms::types::{
    AlgorithmSpec, KeySpec as SdkKeySpec, KeyUsageType, OriginType, WrappingKeySpec,
};
use base64::Engine as _;
use serde::Serialize;

use super::client::Bastion;
use super::errors::{kms, BastionError};
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

/// Fetch import parameters for `key` and write them to `out_file` (which must not exist).
pub async fn prepare(
    b: &Bastion,
    key: &str,
    algorithm: WrappingAlgorithm,
    wrapping_key_spec: &str,
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

/// Wait between GetParametersForImport calls to stay under its ~1/s quota.
pub const PACE: Duration = Duration::from_millis(1100);
