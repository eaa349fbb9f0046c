//! `byok-bastion rotate`: promote imported NEW_KEY_MATERIAL to current with
//! RotateKeyOnDemand, then confirm the key's current material changed to it.

use std::path::Path;

use serde::Serialize;

use super::client::Bastion;
use super::errors::{kms, BastionError};
use super::import::{receipt_path, Receipt};

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

/// Rotate the KMS key that `bundle_dir` was imported into as NEW_KEY_MATERIAL.
pub async fn rotate(
    b: &Bastion,
    bundle_dir: &Path,
    target: &str,
) -> Result<Rotation, BastionError> {
    let path = receipt_path(bundle_dir, target);
    let receipt: Receipt = serde_json::from_slice(&std::fs::read(&path).map_err(|e| {
        BastionError::Local(format!(
            "no import receipt {} ({e}): import the bundle first",
            path.display()
        ))
    })?)
    .map_err(|e| BastionError::Local(format!("{} is not a receipt ({e})", path.display())))?;
    if receipt.import_type != "NEW_KEY_MATERIAL" {
        return Err(BastionError::Local(
            "this bundle was not imported as NEW_KEY_MATERIAL, so there is no pending material to rotate to".into(),
        ));
    }
    let before = current(b, &receipt.key_arn).await?;
    if before.is_some() && before == receipt.key_material_id {
        return Ok(Rotation {
            key_arn: receipt.key_arn,
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
        return Err(BastionError::Refused(format!(
            "RotateKeyOnDemand returned, but the current key material is {after:?} (was {before:?}, imported {:?}); check the key with DescribeKey before using it",
            receipt.key_material_id
        )));
    }
    Ok(Rotation {
        key_arn: receipt.key_arn,
        before,
        after,
    })
}
