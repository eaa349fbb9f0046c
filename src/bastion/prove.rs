//! `byok-bastion verify`: prove KMS now holds the HSM's key, using the check
//! values the HSM computed (from a verified bundle's manifest).

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::MacAlgorithmSpec;
use base64::Engine as _;
use serde::Serialize;

use super::client::Bastion;
use super::errors::{kms, BastionError};
use super::import::{in_bundle, receipt_path, Receipt};
use crate::bundle::manifest::{self, Manifest};
use crate::ceremony::VerifiedCeremony;
use crate::kms::KeyFamily;

/// What was proven.
#[derive(Clone, Debug, Serialize)]
pub struct Proof {
    /// KMS key ARN.
    pub key_arn: String,
    /// How: `GenerateMac equals the HSM's HMAC`, …
    pub method: String,
    /// The KMS key's current material, when KMS reports it.
    pub current_key_material_id: Option<String>,
}

/// Prove that the KMS key of the verified bundle holds the HSM's key.
pub async fn prove(b: &Bastion, v: &VerifiedCeremony, target: &str) -> Result<Proof, BastionError> {
    let name = in_bundle(target, manifest::MANIFEST);
    let bytes = std::fs::read(v.dir().join(&name))
        .map_err(|e| BastionError::Local(format!("cannot read {name}: {e}")))?;
    if !v.covers(&name, &bytes) {
        return Err(BastionError::Refused(
            "manifest.json is not the file the custodians signed".into(),
        ));
    }
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        BastionError::Refused(format!("manifest.json is not a wrap manifest ({e})"))
    })?;
    let key = m.key_id.clone();
    let mismatch = |what: &str| {
        BastionError::Refused(format!("KMS key {key} does NOT hold the HSM's key: {what}"))
    };
    let method = match m.key_spec.family() {
        KeyFamily::Hmac => {
            let check = m
                .hmac_check
                .as_ref()
                .ok_or_else(|| mismatch("the manifest has no HMAC check"))?;
            let msg =
                hex::decode(&check.message_hex).map_err(|_| mismatch("bad HMAC check message"))?;
            let out = b
                .kms
                .generate_mac()
                .key_id(&key)
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
                return Err(mismatch(&format!(
                    "GenerateMac gave {got}, the HSM computed {}",
                    check.mac_hex
                )));
            }
            format!(
                "GenerateMac({}) equals the HSM's HMAC {}",
                check.mac_algorithm, check.mac_hex
            )
        }
        KeyFamily::Rsa | KeyFamily::Ec => {
            let want = m
                .public_key
                .as_deref()
                .ok_or_else(|| mismatch("the manifest has no public key"))?;
            let out = b
                .kms
                .get_public_key()
                .key_id(&key)
                .send()
                .await
                .map_err(|e| kms("GetPublicKey", e))?;
            let got = out
                .public_key()
                .map(|p| base64::engine::general_purpose::STANDARD.encode(p.as_ref()))
                .unwrap_or_default();
            if got != want {
                return Err(mismatch("GetPublicKey differs from the HSM's public key"));
            }
            "GetPublicKey equals the HSM's public key".to_string()
        }
        KeyFamily::Aes => {
            let probe = b"byok-ceremony round trip".to_vec();
            let enc = b
                .kms
                .encrypt()
                .key_id(&key)
                .plaintext(Blob::new(probe.clone()))
                .send()
                .await
                .map_err(|e| kms("Encrypt", e))?;
            let blob = enc
                .ciphertext_blob()
                .cloned()
                .ok_or_else(|| mismatch("Encrypt returned nothing"))?;
            let dec = b
                .kms
                .decrypt()
                .key_id(&key)
                .ciphertext_blob(blob)
                .send()
                .await
                .map_err(|e| kms("Decrypt", e))?;
            if dec.plaintext().map(|p| p.as_ref().to_vec()) != Some(probe) {
                return Err(mismatch("Encrypt/Decrypt round trip failed"));
            }
            let receipt: Option<Receipt> = std::fs::read(receipt_path(v.dir(), target))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            match receipt.and_then(|r| r.key_material_id) {
                Some(id) => {
                    format!("Encrypt/Decrypt round trip works; imported KeyMaterialId {id}")
                }
                None => "Encrypt/Decrypt round trip works with the imported key".to_string(),
            }
        }
    };
    let current = b
        .describe(&key)
        .await
        .ok()
        .and_then(|m| m.current_key_material_id);
    Ok(Proof {
        key_arn: key,
        method,
        current_key_material_id: current,
    })
}
