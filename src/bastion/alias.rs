//! Alias-based rotation, for keys that cannot take new material (HMAC and
//! asymmetric keys have exactly one): the new key is imported and *proven*
//! first, only then the alias moves; the old key is retired later, after a
//! grace period.

use aws_sdk_kms::types::Tag;
use serde::Serialize;

use super::client::{key_id_of, Bastion};
use super::errors::{kms, BastionError, Refusal};
use super::prove::{prove, Proof, Verdict};
use super::state::{AliasMoveRecord, StateDir};
use crate::ceremony::VerifiedCeremony;
use crate::kms::import_params::rfc3339;

/// What moving an alias did.
#[derive(Clone, Debug, Serialize)]
pub struct AliasMove {
    /// The alias.
    pub alias: String,
    /// The key it pointed to before, if it existed.
    pub previous_key: Option<String>,
    /// The key it points to now.
    pub key: String,
    /// The proof that made the move allowed.
    pub proof: Proof,
}

fn tag(k: &str, v: &str) -> Result<Tag, BastionError> {
    Tag::builder()
        .tag_key(k)
        .tag_value(v)
        .build()
        .map_err(|_| BastionError::Internal("a KMS tag without key or value"))
}

async fn alias_target(b: &Bastion, alias: &str) -> Result<Option<String>, BastionError> {
    Ok(b.aliases()
        .await?
        .into_iter()
        .find(|(name, _)| name == alias)
        .map(|(_, target)| target))
}

/// Point `alias` at the verified bundle's KMS key, only after proving KMS
/// holds the HSM's key (verdict [`Verdict::Proven`]), tag both keys with the
/// ceremony and the date, and record the move in the state directory (which
/// `retire` requires).
pub async fn move_alias(
    b: &Bastion,
    state: &StateDir,
    v: &VerifiedCeremony,
    target: &str,
    alias: &str,
) -> Result<AliasMove, BastionError> {
    if !alias.starts_with("alias/") || alias.starts_with("alias/aws/") {
        return Err(super::errors::UsageError::BadAlias(alias.to_string()).into());
    }
    // Refuse to move an alias to a key that is not proven to hold the HSM's key.
    let proof = prove(b, state, v, target)
        .await
        .map_err(|e| Refusal::AliasProofFailed(Box::new(e)))?;
    if proof.verdict != Verdict::Proven {
        return Err(Refusal::AliasNotProven(proof.statement).into());
    }
    let new_key = proof.key_arn.clone();
    let new_id = key_id_of(&new_key).to_string();
    let previous = alias_target(b, alias).await?;
    let now = rfc3339(time::OffsetDateTime::now_utc());
    if previous.as_deref() == Some(new_id.as_str()) {
        return Ok(AliasMove {
            alias: alias.into(),
            previous_key: previous,
            key: new_key,
            proof,
        });
    }
    point_alias(b, alias, &new_id, previous.is_some()).await?;
    tag_both(
        b,
        v.ceremony_id(),
        &new_key,
        &new_id,
        previous.as_deref(),
        &now,
    )
    .await?;
    state.record_alias_move(&AliasMoveRecord {
        alias: alias.into(),
        region: b.region.clone(),
        previous_key: previous.clone(),
        new_key: new_key.clone(),
        proof: proof.statement.clone(),
        moved_at: now.clone(),
    })?;
    Ok(AliasMove {
        alias: alias.into(),
        previous_key: previous,
        key: new_key,
        proof,
    })
}

/// Point `alias` at the key: UpdateAlias if it exists, else CreateAlias.
async fn point_alias(
    b: &Bastion,
    alias: &str,
    key_id: &str,
    exists: bool,
) -> Result<(), BastionError> {
    if exists {
        b.kms
            .update_alias()
            .alias_name(alias)
            .target_key_id(key_id)
            .send()
            .await
            .map_err(|e| kms("UpdateAlias", e))?;
    } else {
        b.kms
            .create_alias()
            .alias_name(alias)
            .target_key_id(key_id)
            .send()
            .await
            .map_err(|e| kms("CreateAlias", e))?;
    }
    Ok(())
}

/// Tag the new key with its ceremony and the move, and the old key (if
/// any) with what replaced it: what `audit` reads.
async fn tag_both(
    b: &Bastion,
    ceremony_id: &str,
    new_key: &str,
    new_id: &str,
    previous: Option<&str>,
    now: &str,
) -> Result<(), BastionError> {
    let mut new_tags = b
        .kms
        .tag_resource()
        .key_id(new_key)
        .tags(tag("byok:ceremony", ceremony_id)?)
        .tags(tag("byok:alias-moved-at", now)?);
    if let Some(old) = previous {
        new_tags = new_tags.tags(tag("byok:replaces", old)?);
        b.kms
            .tag_resource()
            .key_id(old)
            .tags(tag("byok:replaced-by", new_id)?)
            .tags(tag("byok:alias-moved-at", now)?)
            .send()
            .await
            .map_err(|e| kms("TagResource", e))?;
    }
    new_tags.send().await.map_err(|e| kms("TagResource", e))?;
    Ok(())
}

/// What retiring did.
#[derive(Clone, Debug, Serialize)]
pub struct Retirement {
    /// The key.
    pub key: String,
    /// When KMS will delete it.
    pub deletion_date: Option<String>,
}

/// Disable `key` and schedule its deletion after `grace_days` (7 to 30),
/// refusing while any alias still points to it, and unless this bastion
/// recorded moving an alias from it to a proven key that the alias still
/// points to.
pub async fn retire(
    b: &Bastion,
    state: &StateDir,
    key: &str,
    grace_days: i32,
) -> Result<Retirement, BastionError> {
    if !(7..=30).contains(&grace_days) {
        return Err(super::errors::UsageError::GraceDays(grace_days).into());
    }
    let id = b.describe(key).await?.key_id;
    let aliases = b.aliases().await?;
    if let Some((alias, _)) = aliases.iter().find(|(_, target)| *target == id) {
        return Err(Refusal::AliasStillPoints {
            alias: alias.clone(),
            key: key.to_string(),
        }
        .into());
    }
    let moves = state.moves_replacing(&id)?;
    let replaced = moves.iter().find(|m| {
        aliases
            .iter()
            .any(|(a, t)| *a == m.alias && t == key_id_of(&m.new_key))
    });
    if replaced.is_none() {
        return Err(Refusal::NeverMoved {
            key: key.to_string(),
            state: state.path().to_path_buf(),
            moved_elsewhere: !moves.is_empty(),
        }
        .into());
    }
    b.kms
        .disable_key()
        .key_id(key)
        .send()
        .await
        .map_err(|e| kms("DisableKey", e))?;
    let out = b
        .kms
        .schedule_key_deletion()
        .key_id(key)
        .pending_window_in_days(grace_days)
        .send()
        .await
        .map_err(|e| kms("ScheduleKeyDeletion", e))?;
    Ok(Retirement {
        key: key.into(),
        deletion_date: out
            .deletion_date()
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok())
            .map(rfc3339),
    })
}
