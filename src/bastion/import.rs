//! `byok-bastion import`: upload a wrapped key, only from a ceremony
//! directory that verified against the bastion's own policy, and only with
//! the import token and wrapping key this bastion fetched.

use std::path::{Path, PathBuf};

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::operation::import_key_material::builders::ImportKeyMaterialFluentBuilder;
use aws_sdk_kms::operation::import_key_material::ImportKeyMaterialOutput;
use aws_sdk_kms::operation::RequestId;
use aws_sdk_kms::primitives::{Blob, DateTime};
use aws_sdk_kms::types::{ExpirationModelType, ImportType, KeyState};
use sha2::{Digest, Sha256};

use super::client::{account_of, Bastion};
use super::errors::{kms, BastionError, Refusal};
use super::state::StateDir;
use crate::bundle::manifest::{self, Manifest};
use crate::ceremony::VerifiedCeremony;
use crate::kms::import_params::rfc3339;
use crate::kms::{ImportParameters, KeyFamily};

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
    /// Pacing of ImportKeyMaterial per account and Region (shared by a batch).
    pub pace: Option<std::sync::Arc<super::prepare::RatePacer>>,
}

pub use super::state::Receipt;

/// The receipt of an earlier import of exactly this verified bundle, from
/// the bastion's own state directory (never from the media): keyed by the
/// transcript digest and the bundle, and for the same encrypted key material.
pub fn receipt_of_this_bundle(
    state: &StateDir,
    v: &VerifiedCeremony,
    target: &str,
) -> Result<Option<Receipt>, BastionError> {
    let Some(r) = state.receipt(v.transcript_digest(), target)? else {
        return Ok(None);
    };
    let blob = signed_file(v, &in_bundle(target, manifest::ENCRYPTED_KEY_MATERIAL))?;
    if r.encrypted_key_material_sha256 != hex::encode(Sha256::digest(&blob)) {
        return Err(Refusal::ReceiptMaterialDiffers(
            state.receipt_path(v.transcript_digest(), target),
        )
        .into());
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
    let path = v.dir().join(name);
    let bytes = std::fs::read(&path).map_err(|source| BastionError::Io {
        action: "read",
        path,
        source,
    })?;
    if !v.covers(name, &bytes) {
        return Err(Refusal::NotSigned(name.to_string()).into());
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

/// The checks before anything is sent, shared by import and its tests: the
/// signed files, and the bastion's own parameters file (recorded in its state
/// directory by `prepare`, unchanged since) holding this bundle's token.
pub fn check_bundle(
    state: &StateDir,
    v: &VerifiedCeremony,
    target: &str,
    params_file: &Path,
) -> Result<(Manifest, Vec<u8>, ImportParameters), BastionError> {
    let manifest: Manifest =
        serde_json::from_slice(&signed_file(v, &in_bundle(target, manifest::MANIFEST))?)
            .map_err(Refusal::NotAManifest)?;
    let blob = signed_file(v, &in_bundle(target, manifest::ENCRYPTED_KEY_MATERIAL))?;
    let token = signed_file(v, &in_bundle(target, manifest::IMPORT_TOKEN))?;
    if hex::encode(Sha256::digest(&blob)) != manifest.encrypted_key_material_sha256 {
        return Err(Refusal::BlobDiffers.into());
    }
    let own = std::fs::read(params_file).map_err(|source| BastionError::Io {
        action: "read the bastion's parameters",
        path: params_file.to_path_buf(),
        source,
    })?;
    let params = ImportParameters::parse(&own, time::OffsetDateTime::now_utc())
        .map_err(Refusal::Parameters)?;
    if params.import_token != token {
        return Err(Refusal::TokenDiffers.into());
    }
    if hex::encode(params.wrapping_key_sha256()) != manifest.wrapping_key_sha256 {
        return Err(Refusal::WrappingKeyDiffers.into());
    }
    if params.key_id != manifest.key_id {
        return Err(Refusal::KeyDiffers {
            bundle_key: manifest.key_id.clone(),
            params_key: params.key_id.clone(),
        }
        .into());
    }
    let token_sha256: [u8; 32] = Sha256::digest(&params.import_token).into();
    match state.params_record(&token_sha256)? {
        None => {
            return Err(Refusal::ParamsNotRecorded {
                file: params_file.to_path_buf(),
                state: state.path().to_path_buf(),
            }
            .into())
        }
        Some(r) if r.sha256 != hex::encode(Sha256::digest(&own)) || r.key_arn != params.key_id => {
            return Err(Refusal::ParamsChanged {
                file: params_file.to_path_buf(),
                recorded: r.path,
                sha256: r.sha256,
            }
            .into())
        }
        Some(_) => {}
    }
    Ok((manifest, blob, params))
}

/// Attempts at ImportKeyMaterial, counting the first.
const IMPORT_ATTEMPTS: u32 = 6;

/// How a failed ImportKeyMaterial may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// KMS refused it (ThrottlingException) or it never left: retry.
    NotApplied,
    /// A server error or a lost connection: KMS may have applied it, so
    /// reconcile before sending it again.
    MaybeApplied,
    /// Any other error: report it.
    Final,
}

fn classify<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Fault {
    match e {
        SdkError::ConstructionFailure(_) => Fault::Final,
        // A dispatch failure that is not the caller's fault (I/O, timeout,
        // a connection closed mid-response) may have reached KMS.
        SdkError::DispatchFailure(d) if d.is_user() => Fault::Final,
        SdkError::DispatchFailure(_) => Fault::MaybeApplied,
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => Fault::MaybeApplied,
        SdkError::ServiceError(_) => match e.code() {
            Some("ThrottlingException" | "RequestLimitExceeded" | "TooManyRequestsException") => {
                Fault::NotApplied
            }
            Some(
                "InternalFailure"
                | "KMSInternalException"
                | "KmsInternalException"
                | "ServiceUnavailableException"
                | "ServiceUnavailable"
                | "InternalServerError",
            ) => Fault::MaybeApplied,
            _ => Fault::Final,
        },
        _ => Fault::MaybeApplied,
    }
}

/// Exponential backoff with jitter: about 0.1, 0.2, 0.4, 0.8, 1.6 s.
fn backoff(retry: u32) -> std::time::Duration {
    use rand_like::jitter;
    let base = 100u64 << retry.saturating_sub(1).min(6);
    std::time::Duration::from_millis(base / 2 + jitter(base / 2 + 1))
}

mod rand_like {
    /// A number below `n` from the clock (jitter needs no cryptographic randomness).
    pub fn jitter(n: u64) -> u64 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
        t % n.max(1)
    }
}

/// The pacing key of a key ARN in `region`: quotas are per account and Region.
pub fn pace_key(key_arn: &str, region: &str) -> String {
    format!("{}/{region}", account_of(key_arn).unwrap_or("-"))
}

/// What [`import`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Imported {
    /// ImportKeyMaterial was sent now and answered.
    Sent,
    /// This bastion's receipt shows an earlier import; nothing was sent.
    Recorded,
    /// KMS already held this bundle's key (an earlier run lost the response or
    /// crashed before its receipt): proven by KMS's answer, receipt written, no import sent.
    Reconciled,
}

/// Before sending: does KMS already hold this bundle's key, from an earlier
/// run whose response or receipt was lost? For HMAC and asymmetric keys
/// GenerateMac / GetPublicKey answer it (then a receipt is written and nothing
/// imported); a key still PENDING_IMPORT, and AES material (which no call
/// reveals: KMS itself accepts a re-import only of the same material, and its
/// KeyMaterialId answer then ties it), go on to ImportKeyMaterial.
async fn reconcile(
    b: &Bastion,
    state: &StateDir,
    v: &VerifiedCeremony,
    target: &str,
    manifest: &Manifest,
    opts: &ImportOptions,
) -> Result<Option<Receipt>, BastionError> {
    let meta = b.describe(&manifest.key_id).await?;
    if meta.key_state() == Some(&KeyState::PendingImport)
        || opts.new_key_material
        || manifest.key_spec.family() == KeyFamily::Aes
    {
        return Ok(None);
    }
    let method =
        super::prove::kms_check(b, manifest)
            .await
            .map_err(|e| Refusal::HoldsOtherMaterial {
                key: manifest.key_id.clone(),
                source: Box::new(e),
            })?;
    let receipt = Receipt {
        account: account_of(&manifest.key_id).map(String::from),
        region: b.region.clone(),
        key_arn: manifest.key_id.clone(),
        key_material_id: meta.current_key_material_id.clone(),
        request_id: None,
        import_type: "DEFAULT".into(),
        how: format!("reconciled: {method}"),
        imported_at: rfc3339(time::OffsetDateTime::now_utc()),
        ceremony_id: v.ceremony_id().into(),
        target: target.into(),
        transcript_sha256: v.transcript_digest().into(),
        signers: v.signers().to_vec(),
        encrypted_key_material_sha256: manifest.encrypted_key_material_sha256.clone(),
        retries: 0,
    };
    state.write_receipt(&receipt)?;
    Ok(Some(receipt))
}

/// The ImportKeyMaterial request for these parameters and blob.
fn request(
    b: &Bastion,
    params: &ImportParameters,
    blob: &[u8],
    opts: &ImportOptions,
    ceremony_id: &str,
) -> ImportKeyMaterialFluentBuilder {
    let req = b
        .kms
        .import_key_material()
        .key_id(&params.key_id)
        .import_token(Blob::new(params.import_token.clone()))
        .encrypted_key_material(Blob::new(blob.to_vec()));
    let req = match opts.expiration {
        Expiration::Never => req.expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire),
        Expiration::At(t) => req
            .expiration_model(ExpirationModelType::KeyMaterialExpires)
            .valid_to(DateTime::from_secs(t.unix_timestamp())),
    };
    if !opts.new_key_material {
        return req;
    }
    req.import_type(ImportType::NewKeyMaterial)
        .key_material_description(material_description(ceremony_id))
}

/// The bundle being imported, as [`reconcile`] needs it.
struct ThisBundle<'a> {
    v: &'a VerifiedCeremony,
    target: &'a str,
    manifest: &'a Manifest,
}

/// What sending ImportKeyMaterial came to.
enum Sent {
    /// KMS answered, after this many retries.
    Answer(ImportKeyMaterialOutput, u32),
    /// A response was lost and KMS already holds the bundle's key: receipt written.
    Reconciled(Box<Receipt>),
}

/// Send the request, retrying throttling and server errors with backoff.
/// ImportKeyMaterial is not retried by the SDK: a lost response (the
/// connection dropped after KMS applied it) must be reconciled with KMS
/// before anything is sent again, so this loop retries itself.
async fn send(
    b: &Bastion,
    state: &StateDir,
    bundle: &ThisBundle<'_>,
    opts: &ImportOptions,
    req: ImportKeyMaterialFluentBuilder,
    key_id: &str,
) -> Result<Sent, BastionError> {
    let mut retries = 0u32;
    loop {
        if let Some(p) = &opts.pace {
            p.wait(&pace_key(key_id, &b.region)).await;
        }
        let sent = req
            .clone()
            .customize()
            .config_override(
                aws_sdk_kms::config::Builder::default()
                    .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled()),
            )
            .send()
            .await;
        let e = match sent {
            Ok(out) => return Ok(Sent::Answer(out, retries)),
            Err(e) => e,
        };
        let fault = classify(&e);
        if fault == Fault::Final || retries + 1 >= IMPORT_ATTEMPTS {
            return Err(kms("ImportKeyMaterial", e));
        }
        retries += 1;
        tokio::time::sleep(backoff(retries)).await;
        if fault == Fault::MaybeApplied {
            let (v, target, manifest) = (bundle.v, bundle.target, bundle.manifest);
            if let Some(mut r) = reconcile(b, state, v, target, manifest, opts).await? {
                r.retries = retries;
                return Ok(Sent::Reconciled(Box::new(r)));
            }
        }
    }
}

/// Import the verified bundle. Re-running after success reports the receipt
/// and sends nothing; re-running after a lost response or a crash first
/// reconciles with KMS.
pub async fn import(
    b: &Bastion,
    state: &StateDir,
    v: &VerifiedCeremony,
    target: &str,
    opts: &ImportOptions,
) -> Result<(Receipt, Imported), BastionError> {
    if let Some(r) = receipt_of_this_bundle(state, v, target)? {
        return Ok((r, Imported::Recorded));
    }
    let (manifest, blob, params) = check_bundle(state, v, target, &opts.params_file)?;
    if let Some(r) = reconcile(b, state, v, target, &manifest, opts).await? {
        return Ok((r, Imported::Reconciled));
    }
    let req = request(b, &params, &blob, opts, v.ceremony_id());
    let bundle = ThisBundle {
        v,
        target,
        manifest: &manifest,
    };
    let (out, retries) = match send(b, state, &bundle, opts, req, &params.key_id).await? {
        Sent::Answer(out, retries) => (out, retries),
        Sent::Reconciled(r) => return Ok((*r, Imported::Reconciled)),
    };
    let receipt = Receipt {
        account: account_of(&params.key_id).map(String::from),
        region: b.region.clone(),
        key_arn: params.key_id.clone(),
        key_material_id: out.key_material_id().map(String::from),
        request_id: out.request_id().map(String::from),
        import_type: if opts.new_key_material {
            "NEW_KEY_MATERIAL"
        } else {
            "DEFAULT"
        }
        .into(),
        how: "imported".into(),
        imported_at: rfc3339(time::OffsetDateTime::now_utc()),
        ceremony_id: v.ceremony_id().into(),
        target: target.into(),
        transcript_sha256: v.transcript_digest().into(),
        signers: v.signers().to_vec(),
        encrypted_key_material_sha256: manifest.encrypted_key_material_sha256.clone(),
        retries,
    };
    state
        .write_receipt(&receipt)
        .map_err(|source| BastionError::ReceiptNotRecorded {
            key_material_id: receipt
                .key_material_id
                .clone()
                .unwrap_or_else(|| "not reported".into()),
            source,
        })?;
    Ok((receipt, Imported::Sent))
}
