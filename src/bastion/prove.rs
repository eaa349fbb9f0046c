//! `byok-bastion verify`: prove KMS now holds the HSM's key, using the check
//! values the HSM computed (from a verified bundle's manifest) and the
//! KeyMaterialId this bastion's own ImportKeyMaterial returned (from its
//! receipt in the state directory, never from the media).
//!
//! * HMAC: GenerateMac equals the HSM's HMAC: proven.
//! * RSA/EC: GetPublicKey equals the HSM's public key: proven.
//! * AES: no KMS call can reveal the key. **Proven** ("KMS holds the material
//!   this bastion imported from this signed bundle") only when DescribeKey's
//!   CurrentKeyMaterialId, or the PENDING_ROTATION material ListKeyRotations
//!   lists, is the KeyMaterialId of this bastion's receipt for this bundle;
//!   otherwise an Encrypt/Decrypt round trip only shows the key is **usable,
//!   not proven** (it works with any material).
//!
//! For every family, a CurrentKeyMaterialId that KMS reports and that differs
//! from the receipt's makes the verdict "not proven". (KMS reports
//! CurrentKeyMaterialId for symmetric encryption keys only; HMAC and
//! asymmetric keys are proven by KMS's own answer.)

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{IncludeKeyMaterial, KeyMaterialState, MacAlgorithmSpec};
use base64::Engine as _;
use serde::Serialize;

use super::client::Bastion;
use super::errors::{kms, BastionError, Mismatch, Refusal};
use super::iam::ROUND_TRIP_CONTEXT;
use super::import::{in_bundle, receipt_of_this_bundle, Receipt};
use super::state::StateDir;
use crate::bundle::manifest::{self, Manifest};
use crate::ceremony::VerifiedCeremony;
use crate::kms::KeyFamily;

/// What `verify` may say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// KMS's own answer ties the key to this bundle.
    Proven,
    /// The key works, but nothing KMS said ties it to this bundle.
    UsableNotProven,
}

/// What `verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct Proof {
    /// KMS key ARN.
    pub key_arn: String,
    /// Proven, or usable but not proven.
    pub verdict: Verdict,
    /// What KMS answered: `GenerateMac(…) equals the HSM's HMAC …`, …
    pub method: String,
    /// The sentence to show: what is proven, or what was only shown and why not more.
    pub statement: String,
    /// The KMS key's current material, when KMS reports it.
    pub current_key_material_id: Option<String>,
    /// The KeyMaterialId this bastion's ImportKeyMaterial of this bundle returned.
    pub imported_key_material_id: Option<String>,
}

/// How the key's material compares with this bastion's receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Material {
    /// CurrentKeyMaterialId is the receipt's.
    Current(String),
    /// The receipt's material is PENDING_ROTATION.
    Pending(String),
    /// This bastion has no receipt for this bundle.
    NoReceipt,
    /// The receipt names another key than the signed manifest.
    OtherKey(String),
    /// KMS returned no KeyMaterialId at import.
    NotReported,
    /// KMS reports no current material ID for this key.
    NotShown,
    /// KMS holds other current material, and the receipt's is not pending (or cannot be listed).
    Differs {
        current: String,
        imported: String,
        rotations: Option<String>,
    },
}

impl Material {
    fn sentence(&self) -> String {
        match self {
            Material::Current(id) => format!("current KeyMaterialId {id} is the one this bastion's ImportKeyMaterial of this bundle returned"),
            Material::Pending(id) => format!("KeyMaterialId {id}, which this bastion's ImportKeyMaterial of this bundle returned, is PENDING_ROTATION (run `byok-bastion rotate` to make it current)"),
            Material::NoReceipt => "this bastion has no receipt of importing this bundle (import it from this bastion, with the same --state-dir)".into(),
            Material::OtherKey(k) => format!("this bastion's receipt for this bundle names another key ({k})"),
            Material::NotReported => "KMS returned no KeyMaterialId when this bastion imported this bundle".into(),
            Material::NotShown => "DescribeKey reports no CurrentKeyMaterialId for this key".into(),
            Material::Differs { current, imported, rotations } => format!(
                "the key's current KeyMaterialId is {current}, not {imported} which this bastion imported from this bundle{}",
                rotations.as_deref().map(|r| format!(", and the pending material cannot be listed ({r})")).unwrap_or_default()
            ),
        }
    }

    fn ties(&self) -> bool {
        matches!(self, Material::Current(_) | Material::Pending(_))
    }
}

async fn material(
    b: &Bastion,
    key: &str,
    receipt: Option<&Receipt>,
    current: Option<&str>,
) -> Material {
    let Some(r) = receipt else {
        return Material::NoReceipt;
    };
    if r.key_arn != key {
        return Material::OtherKey(r.key_arn.clone());
    }
    let Some(imported) = r.key_material_id.clone() else {
        return Material::NotReported;
    };
    let Some(current) = current else {
        return Material::NotShown;
    };
    if current == imported {
        return Material::Current(imported);
    }
    let rotations = b
        .kms
        .list_key_rotations()
        .key_id(key)
        .include_key_material(IncludeKeyMaterial::AllKeyMaterial)
        .send()
        .await;
    match rotations {
        Ok(out) => {
            if out.rotations().iter().any(|e| {
                e.key_material_id() == Some(imported.as_str())
                    && e.key_material_state() == Some(&KeyMaterialState::PendingRotation)
            }) {
                Material::Pending(imported)
            } else {
                Material::Differs {
                    current: current.to_string(),
                    imported,
                    rotations: None,
                }
            }
        }
        Err(e) => Material::Differs {
            current: current.to_string(),
            imported,
            rotations: Some(kms("ListKeyRotations", e).to_string()),
        },
    }
}

/// What KMS answers for the manifest's check values: GenerateMac (HMAC),
/// GetPublicKey (RSA, EC) or an Encrypt/Decrypt round trip (AES). An error
/// when the answer contradicts the HSM's; otherwise what was shown.
pub async fn kms_check(b: &Bastion, m: &Manifest) -> Result<String, BastionError> {
    match m.key_spec.family() {
        KeyFamily::Hmac => hmac_check(b, m).await,
        KeyFamily::Rsa | KeyFamily::Ec => public_key_check(b, m).await,
        KeyFamily::Aes => round_trip(b, &m.key_id).await,
    }
}

fn not_the_hsm_key(key: &str, mismatch: Mismatch) -> BastionError {
    Refusal::NotTheHsmKey {
        key: key.to_string(),
        mismatch,
    }
    .into()
}

/// GenerateMac of the manifest's message must equal the HSM's HMAC.
async fn hmac_check(b: &Bastion, m: &Manifest) -> Result<String, BastionError> {
    let key = &m.key_id;
    let check = m
        .hmac_check
        .as_ref()
        .ok_or_else(|| not_the_hsm_key(key, Mismatch::NoHmacCheck))?;
    let msg = hex::decode(&check.message_hex)
        .map_err(|_| not_the_hsm_key(key, Mismatch::BadHmacMessage))?;
    let out = b
        .kms
        .generate_mac()
        .key_id(key)
        .mac_algorithm(MacAlgorithmSpec::from(check.mac_algorithm.as_str()))
        .message(Blob::new(msg))
        .send()
        .await
        .map_err(|e| kms("GenerateMac", e))?;
    let got = out
        .mac()
        .map(|m| hex::encode(m.as_ref()))
        .unwrap_or_default();
    if got != check.mac_hex {
        let hsm = check.mac_hex.clone();
        return Err(not_the_hsm_key(key, Mismatch::Mac { kms: got, hsm }));
    }
    Ok(format!(
        "GenerateMac({}) equals the HSM's HMAC {}",
        check.mac_algorithm, check.mac_hex
    ))
}

/// GetPublicKey must equal the HSM's public key.
async fn public_key_check(b: &Bastion, m: &Manifest) -> Result<String, BastionError> {
    let key = &m.key_id;
    let want = m
        .public_key
        .as_deref()
        .ok_or_else(|| not_the_hsm_key(key, Mismatch::NoPublicKey))?;
    let out = b
        .kms
        .get_public_key()
        .key_id(key)
        .send()
        .await
        .map_err(|e| kms("GetPublicKey", e))?;
    let got = out
        .public_key()
        .map(|p| base64::engine::general_purpose::STANDARD.encode(p.as_ref()))
        .unwrap_or_default();
    if got != want {
        return Err(not_the_hsm_key(key, Mismatch::PublicKey));
    }
    Ok("GetPublicKey equals the HSM's public key".to_string())
}

/// An Encrypt/Decrypt round trip (with the round-trip encryption context):
/// shows the key is usable, not which material it holds.
async fn round_trip(b: &Bastion, key: &str) -> Result<String, BastionError> {
    let probe = b"byok-ceremony round trip".to_vec();
    let (ctx_key, ctx_value) = ROUND_TRIP_CONTEXT;
    let enc = b
        .kms
        .encrypt()
        .key_id(key)
        .encryption_context(ctx_key, ctx_value)
        .plaintext(Blob::new(probe.clone()))
        .send()
        .await
        .map_err(|e| kms("Encrypt", e))?;
    let blob = enc
        .ciphertext_blob()
        .cloned()
        .ok_or_else(|| not_the_hsm_key(key, Mismatch::NothingEncrypted))?;
    let dec = b
        .kms
        .decrypt()
        .key_id(key)
        .encryption_context(ctx_key, ctx_value)
        .ciphertext_blob(blob)
        .send()
        .await
        .map_err(|e| kms("Decrypt", e))?;
    if dec.plaintext().map(|p| p.as_ref().to_vec()) != Some(probe) {
        return Err(not_the_hsm_key(key, Mismatch::RoundTrip));
    }
    Ok("Encrypt/Decrypt round trip works".to_string())
}

/// Find out whether the KMS key of the verified bundle holds the HSM's key:
/// an error when KMS's answer contradicts the HSM's, otherwise a [`Proof`]
/// whose verdict says whether KMS's answer ties the key to this bundle.
pub async fn prove(
    b: &Bastion,
    state: &StateDir,
    v: &VerifiedCeremony,
    target: &str,
) -> Result<Proof, BastionError> {
    let name = in_bundle(target, manifest::MANIFEST);
    let bytes = super::import::signed_file(v, &name)?;
    let m: Manifest = serde_json::from_slice(&bytes).map_err(Refusal::NotAManifest)?;
    let receipt = receipt_of_this_bundle(state, v, target)?;
    prove_manifest(b, &m, receipt).await
}

/// [`prove`] for a manifest already read from a verified bundle and this
/// bastion's receipt of importing it (if any): everything that depends on
/// KMS's answers (fuzzed through `fuzzing::kms_answers`).
pub(crate) async fn prove_manifest(
    b: &Bastion,
    m: &Manifest,
    receipt: Option<Receipt>,
) -> Result<Proof, BastionError> {
    let key = m.key_id.clone();
    let method = kms_check(b, m).await?;
    let current = b.describe(&key).await?.current_key_material_id;
    let found = material(b, &key, receipt.as_ref(), current.as_deref()).await;
    let family = m.key_spec.family();
    let (verdict, statement) = match (family, &found) {
        (KeyFamily::Aes, f) if f.ties() => (
            Verdict::Proven,
            format!(
                "KMS holds the material this bastion imported from this signed bundle: {}; {method}",
                f.sentence()
            ),
        ),
        (KeyFamily::Aes, f) => (
            Verdict::UsableNotProven,
            format!(
                "usable, not proven: {method}, which any key material would pass, and {}",
                f.sentence()
            ),
        ),
        (_, f @ (Material::Differs { .. } | Material::OtherKey(_))) => (
            Verdict::UsableNotProven,
            format!("{method}, but {}", f.sentence()),
        ),
        (_, f) if f.ties() => (Verdict::Proven, format!("{method}; {}", f.sentence())),
        (_, _) => (Verdict::Proven, method.clone()),
    };
    Ok(Proof {
        key_arn: key,
        verdict,
        method,
        statement,
        current_key_material_id: current,
        imported_key_material_id: receipt.and_then(|r| r.key_material_id),
    })
}
