//! `byok-bastion import`: upload a wrapped key, only from a ceremony
//! directory that verified against the bastion's own policy, and only with
//! the import token and wrapping key this bastion fetched.

use std::path::{Path, PathBuf};

use aws_sdk_kms::operation::RequestId;
use aws_sdk_kms::primitives::{Blob, DateTime};
use aws_sdk_kms::types::{ExpirationModelType, ImportType};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::client::Bastion;
use super::errors::{kms, BastionError};
use crate::bundle::manifest::{self, Manifest};
use crate::ceremony::VerifiedCeremony;
use crate::kms::import_params::rfc3339;
use crate::kms::ImportParameters;

/// How long the imported material lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiration {
    /// `KEY_MATERIAL_DOES_NOT_EXPIRE`.
    Never,
    /// `KEY_MATERIAL_EXPIRES` at this time (at most 365 days ahead).
    At(time::OffsetDateTime),
}

/// Options of an import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The import-parameters file this bastion wrote with `prepare`.
    pub params_file: PathBuf,
    /// Expiration model.
    pub expiration: Expiration,
    /// `ImportType=NEW_KEY_MATERIAL` (rotation of a symmetric key).
    pub new_key_material: bool,
}

/// What an import did, written next to the bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// KMS key ARN.
    pub key_arn: String,
    /// KMS's KeyMaterialId, when it returns one.
    pub key_material_id: Option<String>,
    /// AWS request ID.
    pub request_id: Option<String>,
    /// `NEW_KEY_MATERIAL`, `EXISTING_KEY_MATERIAL` or `DEFAULT`.
    pub import_type: String,
    /// UTC, RFC 3339.
    pub imported_at: String,
    /// The verified ceremony.
    pub ceremony_id: String,
    /// Its transcript digest.
    pub transcript_sha256: String,
    /// Custodians whose attestations verified.
    pub signers: Vec<String>,
    /// SHA-256 of the uploaded EncryptedKeyMaterial.bin.
    pub encrypted_key_material_sha256: String,
}

/// Where the receipt of importing `target` (`""` for a single wrap, else
/// `LABEL/TARGET` of a ceremony) of `dir` goes: next to the directory, not
/// inside (the directory is exactly what the custodians signed).
pub fn receipt_path(dir: &Path, target: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".into());
    let suffix = if target.is_empty() {
        String::new()
    } else {
        format!(".{}", target.replace('/', "."))
    };
    dir.with_file_name(format!("{name}{suffix}.import-receipt.json"))
}

/// The receipt of an earlier import of `target` of `dir`, if there is one.
pub fn existing_receipt(dir: &Path, target: &str) -> Result<Option<Receipt>, BastionError> {
    let file = receipt_path(dir, target);
    match std::fs::read(&file) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            BastionError::Local(format!(
                "{} is not a receipt ({e}); move it away if it is not one of ours",
                file.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BastionError::Local(format!(
            "cannot read {}: {e}",
            file.display()
        ))),
    }
}

/// The receipt of an earlier import of exactly this verified bundle: the
/// same transcript and the same encrypted key material. A receipt left by
/// another ceremony under the same directory name is refused, never taken as
/// "already imported".
pub fn receipt_of_this_bundle(
    v: &VerifiedCeremony,
    target: &str,
) -> Result<Option<Receipt>, BastionError> {
    let Some(r) = existing_receipt(v.dir(), target)? else {
        return Ok(None);
    };
    let blob = signed_file(v, &in_bundle(target, manifest::ENCRYPTED_KEY_MATERIAL))?;
    if r.transcript_sha256 != v.transcript_digest()
        || r.encrypted_key_material_sha256 != hex::encode(Sha256::digest(&blob))
    {
        return Err(BastionError::Local(format!(
            "{} is the receipt of another import (ceremony {}, transcript {}), not of this directory's; move it away and run again",
            receipt_path(v.dir(), target).display(),
            r.ceremony_id,
            r.transcript_sha256
        )));
    }
    Ok(Some(r))
}

/// The path of `name` inside bundle `target` of a verified directory.
pub fn in_bundle(target: &str, name: &str) -> String {
    if target.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", target.trim_end_matches('/'))
    }
}

/// Read a file of the verified directory, refusing it unless its bytes are the signed ones.
pub(crate) fn signed_file(v: &VerifiedCeremony, name: &str) -> Result<Vec<u8>, BastionError> {
    let bytes = std::fs::read(v.dir().join(name))
        .map_err(|e| BastionError::Local(format!("cannot read {name}: {e}")))?;
    if !v.covers(name, &bytes) {
        return Err(BastionError::Refused(format!(
            "{name} is not the file the custodians signed"
        )));
    }
    Ok(bytes)
}

/// KMS allows `^[a-zA-Z0-9:/_\s.-]+$`, at most 256 characters.
pub fn material_description(ceremony_id: &str) -> String {
    let clean: String = format!("byok-ceremony {ceremony_id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ":/_ .-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    clean.chars().take(256).collect()
}

/// The checks before anything is sent, shared by import and its tests.
pub fn check_bundle(
    v: &VerifiedCeremony,
    target: &str,
    params_file: &Path,
) -> Result<(Manifest, Vec<u8>, ImportParameters), BastionError> {
    let manifest: Manifest =
        serde_json::from_slice(&signed_file(v, &in_bundle(target, manifest::MANIFEST))?).map_err(
            |e| BastionError::Refused(format!("manifest.json is not a wrap manifest ({e})")),
        )?;
    let blob = signed_file(v, &in_bundle(target, manifest::ENCRYPTED_KEY_MATERIAL))?;
    let token = signed_file(v, &in_bundle(target, manifest::IMPORT_TOKEN))?;
    if hex::encode(Sha256::digest(&blob)) != manifest.encrypted_key_material_sha256 {
        return Err(BastionError::Refused(
            "EncryptedKeyMaterial.bin differs from the manifest".into(),
        ));
    }
    let own = std::fs::read(params_file).map_err(|e| {
        BastionError::Local(format!(
            "cannot read the bastion's parameters {}: {e}",
            params_file.display()
        ))
    })?;
    let params = ImportParameters::parse(&own, time::OffsetDateTime::now_utc())
        .map_err(|e| BastionError::Refused(format!("the bastion's import parameters: {e}")))?;
    if params.import_token != token {
        return Err(BastionError::Refused(
            "the bundle's ImportToken.bin is not the token in the bastion's parameters file: it was wrapped for another prepare".into(),
        ));
    }
    if hex::encode(params.wrapping_key_sha256()) != manifest.wrapping_key_sha256 {
        return Err(BastionError::Refused(
            "the key material was wrapped under another wrapping key than the one this bastion fetched".into(),
        ));
    }
    if params.key_id != manifest.key_id {
        return Err(BastionError::Refused(format!(
            "the bundle is for {} but the parameters are for {}",
            manifest.key_id, params.key_id
        )));
    }
    Ok((manifest, blob, params))
}

/// Import the verified bundle. Re-running after success reports the receipt
/// and sends nothing.
pub async fn import(
    b: &Bastion,
    v: &VerifiedCeremony,
    target: &str,
    opts: &ImportOptions,
) -> Result<(Receipt, bool), BastionError> {
    let receipt_file = receipt_path(v.dir(), target);
    if let Some(r) = receipt_of_this_bundle(v, target)? {
        return Ok((r, false));
    }
    let (manifest, blob, params) = check_bundle(v, target, &opts.params_file)?;
    let mut req = b
        .kms
        .import_key_material()
        .key_id(&params.key_id)
        .import_token(Blob::new(params.import_token.clone()))
        .encrypted_key_material(Blob::new(blob.clone()));
    req = match opts.expiration {
        Expiration::Never => req.expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire),
        Expiration::At(t) => req
            .expiration_model(ExpirationModelType::KeyMaterialExpires)
            .valid_to(DateTime::from_secs(t.unix_timestamp())),
    };
    if opts.new_key_material {
        req = req
            .import_type(ImportType::NewKeyMaterial)
            .key_material_description(material_description(v.ceremony_id()));
    }
    let out = req.send().await.map_err(|e| kms("ImportKeyMaterial", e))?;
    let receipt = Receipt {
        key_arn: params.key_id.clone(),
        key_material_id: out.key_material_id().map(String::from),
        request_id: out.request_id().map(String::from),
        import_type: if opts.new_key_material {
            "NEW_KEY_MATERIAL"
        } else {
            "DEFAULT"
        }
        .into(),
        imported_at: rfc3339(time::OffsetDateTime::now_utc()),
        ceremony_id: v.ceremony_id().into(),
        transcript_sha256: v.transcript_digest().into(),
        signers: v.signers().to_vec(),
        encrypted_key_material_sha256: manifest.encrypted_key_material_sha256.clone(),
    };
    let json = serde_json::to_vec_pretty(&receipt).expect("serializes");
    // Temporary file, then rename: a crash never leaves half a receipt.
    let tmp = receipt_file.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, &receipt_file))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            BastionError::Local(format!(
                "imported (KeyMaterialId {}), but cannot write the receipt {}: {e}",
                receipt.key_material_id.as_deref().unwrap_or("not reported"),
                receipt_file.display()
            ))
        })?;
    Ok((receipt, true))
}
