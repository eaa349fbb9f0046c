//! `byok-bastion rotate`: promote imported NEW_KEY_MATERIAL to current with
//! RotateKeyOnDemand, then confirm the key's current material changed to it.
//!
//! Only for a verified ceremony, and only the key that the signed manifest
//! names and that this bastion's own receipt (in its state directory)
//! recorded importing NEW_KEY_MATERIAL into: nothing on the media chooses the
//! key to rotate.

use serde::Serialize;

use super::client::Bastion;
use super::errors::{kms, BastionError, Refusal};
use super::import::receipt_of_this_bundle;
use super::state::{Receipt, StateDir};
use crate::ceremony::VerifiedCeremony;

/// What a rotation did.
#[derive(Clone, Debug, Serialize)]
pub struct Rotation {
    /// KMS key ARN.
    pub key_arn: String,
    /// Current material before.
    pub before: Option<String>,
    /// Current material after.
    pub after: Option<String>,
}

async fn current(b: &Bastion, key: &str) -> Result<Option<String>, BastionError> {
    Ok(b.describe(key).await?.current_key_material_id)
}

/// The receipt that allows rotating bundle `target` of the verified ceremony:
/// this bastion's own, for the key the signed manifest names, of a
/// NEW_KEY_MATERIAL import. `Ok(None)`: not imported by this bastion yet.
pub fn rotation_receipt(
    state: &StateDir,
    v: &VerifiedCeremony,
    target: &str,
) -> Result<Option<Receipt>, BastionError> {
    let (key, _) = super::batch::bundle_key(v, target)?;
    let Some(receipt) = receipt_of_this_bundle(state, v, target)? else {
        return Ok(None);
    };
    if receipt.key_arn != key {
        return Err(Refusal::ReceiptOtherKey {
            receipt_key: receipt.key_arn,
            manifest_key: key,
        }
        .into());
    }
    Ok(Some(receipt))
}

/// Rotate the KMS key that bundle `target` of the verified ceremony was
/// imported into as NEW_KEY_MATERIAL (by this bastion, per `receipt`).
pub async fn rotate(b: &Bastion, receipt: &Receipt) -> Result<Rotation, BastionError> {
    if receipt.import_type != "NEW_KEY_MATERIAL" {
        return Err(BastionError::NotNewMaterial(receipt.key_arn.clone()));
    }
    let before = current(b, &receipt.key_arn).await?;
    if before.is_some() && before == receipt.key_material_id {
        return Ok(Rotation {
            key_arn: receipt.key_arn.clone(),
            before: before.clone(),
            after: before,
        });
    }
    b.kms
        .rotate_key_on_demand()
        .key_id(&receipt.key_arn)
        .send()
        .await
        .map_err(|e| kms("RotateKeyOnDemand", e))?;
    let after = current(b, &receipt.key_arn).await?;
    let confirmed = match (&receipt.key_material_id, &after) {
        (Some(imported), Some(now)) => imported == now,
        (None, Some(now)) => Some(now) != before.as_ref(),
        _ => false,
    };
    if !confirmed {
        return Err(Refusal::RotationNotConfirmed {
            after,
            before,
            imported: receipt.key_material_id.clone(),
        }
        .into());
    }
    Ok(Rotation {
        key_arn: receipt.key_arn.clone(),
        before,
        after,
    })
}
