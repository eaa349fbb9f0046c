//! `byok-bastion status`: which imported keys are out of rotation policy.
//!
//! Material age comes from `ListKeyRotations` (the current material's
//! rotation date) where KMS provides it, else from the key's creation date
//! (said so in the output). The verdict logic is a pure function, [`judge`].

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_kms::types::{IncludeKeyMaterial, KeyMaterialState, KeyState, OriginType};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::client::Bastion;
use super::errors::{kms, BastionError};
use crate::kms::import_params::rfc3339;

/// A key's standing against the rotation policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// Within policy.
    Ok,
    /// Due within 30 days, or its material expires within 30 days.
    DueSoon,
    /// Material older than the maximum age.
    OutOfPolicy,
    /// No key material imported yet (or it expired).
    PendingImport,
    /// Disabled, pending deletion, or otherwise unusable.
    NotEnabled,
}

impl Verdict {
    /// Whether this verdict needs action now (drives the exit code).
    pub fn needs_action(self) -> bool {
        matches!(
            self,
            Verdict::OutOfPolicy | Verdict::PendingImport | Verdict::NotEnabled
        )
    }
}

/// One key's status.
#[derive(Clone, Debug, Serialize)]
pub struct KeyStatus {
    /// Key ARN.
    pub key_arn: String,
    /// The key's Region.
    pub region: String,
    /// Aliases.
    pub aliases: Vec<String>,
    /// KMS key state.
    pub key_state: String,
    /// Key spec.
    pub key_spec: String,
    /// Current key material ID, if reported.
    pub current_key_material_id: Option<String>,
    /// Age of the current material in days.
    pub material_age_days: Option<i64>,
    /// `rotation-date` (ListKeyRotations) or `key-creation-date`.
    pub age_source: String,
    /// Why ListKeyRotations could not be used (then the age is the key's,
    /// which overstates it for a key rotated with NEW_KEY_MATERIAL, and
    /// pending material is unknown).
    pub rotations_unavailable: Option<String>,
    /// Material expiry, RFC 3339, if it expires.
    pub material_valid_to: Option<String>,
    /// Whether new material is pending rotation (`None`: KMS did not say).
    pub pending_material: Option<bool>,
    /// Days until rotation is due (negative: overdue).
    pub days_until_due: Option<i64>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why.
    pub detail: String,
}

/// Judge one key. `material_since` is when the current material became current.
pub fn judge(
    state: &str,
    material_since: Option<OffsetDateTime>,
    valid_to: Option<OffsetDateTime>,
    now: OffsetDateTime,
    max_age_days: i64,
) -> (Verdict, Option<i64>, String) {
    match state {
        "Enabled" => {}
        "PendingImport" => {
            return (
                Verdict::PendingImport,
                None,
                "no key material imported (or it expired): run a ceremony and import".into(),
            )
        }
        other => return (Verdict::NotEnabled, None, format!("key state is {other}")),
    }
    if let Some(v) = valid_to {
        if v <= now {
            return (
                Verdict::PendingImport,
                None,
                format!("key material expired at {}", rfc3339(v)),
            );
        }
    }
    let Some(since) = material_since else {
        return (Verdict::DueSoon, None, "material age unknown".into());
    };
    let due = since + Duration::days(max_age_days);
    let days_until_due = (due - now).whole_days();
    if due <= now {
        return (
            Verdict::OutOfPolicy,
            Some(days_until_due),
            format!(
                "material is {} days old; policy allows {max_age_days}",
                (now - since).whole_days()
            ),
        );
    }
    if let Some(v) = valid_to {
        if v - now < Duration::days(30) {
            return (
                Verdict::DueSoon,
                Some(days_until_due),
                format!("material expires at {}", rfc3339(v)),
            );
        }
    }
    if days_until_due < 30 {
        return (
            Verdict::DueSoon,
            Some(days_until_due),
            format!("rotation due in {days_until_due} days"),
        );
    }
    (
        Verdict::Ok,
        Some(days_until_due),
        format!("rotation due in {days_until_due} days"),
    )
}

fn to_time(d: &aws_sdk_kms::primitives::DateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(d.secs()).ok()
}

/// Status of `keys`, or of every EXTERNAL key in the account and Region,
/// `jobs` keys at a time, in the order given (or listed).
pub async fn status(
    b: Arc<Bastion>,
    keys: &[String],
    max_age_days: i64,
    jobs: usize,
) -> Result<Vec<KeyStatus>, BastionError> {
    let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, target) in b.aliases().await? {
        aliases.entry(target).or_default().push(name);
    }
    let aliases = Arc::new(aliases);
    let mut ids = keys.to_vec();
    if ids.is_empty() {
        let mut pages = b.kms.list_keys().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| kms("ListKeys", e))?;
            ids.extend(
                page.keys()
                    .iter()
                    .filter_map(|k| k.key_arn().map(String::from)),
            );
        }
    }
    let now = OffsetDateTime::now_utc();
    let named = !keys.is_empty();
    let results = super::batch::map_bounded(
        ids,
        jobs,
        |id| {
            let (b, aliases) = (b.clone(), aliases.clone());
            async move { key_status(&b, &id, &aliases, named, max_age_days, now).await }
        },
        |_, _| {},
        |id| Err(BastionError::TaskPanicked(id.to_string())),
        // A status report is read-only: nothing to stop between keys.
        &super::batch::StopFlag::new(),
        |id| Err(BastionError::NotRead(id.to_string())),
    )
    .await;
    let mut out = Vec::new();
    for r in results {
        if let Some(k) = r? {
            out.push(k);
        }
    }
    Ok(out)
}

/// One key's status; `None` for a key that is not EXTERNAL when listing all
/// (an error when the key was `named`).
async fn key_status(
    b: &Bastion,
    id: &str,
    aliases: &BTreeMap<String, Vec<String>>,
    named: bool,
    max_age_days: i64,
    now: OffsetDateTime,
) -> Result<Option<KeyStatus>, BastionError> {
    let m = b.describe(id).await?;
    let m = &m;
    if m.origin() != Some(&OriginType::External) {
        if named {
            return Err(super::errors::KeyProblem::NotExternal(id.to_string()).into());
        }
        return Ok(None);
    }
    let state = m
        .key_state()
        .map(KeyState::as_str)
        .unwrap_or("Unknown")
        .to_string();
    let valid_to = m.valid_to().and_then(to_time);
    // Prefer the current material's rotation date, where KMS reports rotations.
    let (mut since, mut source, mut pending) = (None, "key-creation-date".to_string(), None);
    let mut rotations_unavailable = None;
    match b
        .kms
        .list_key_rotations()
        .key_id(m.key_id())
        .include_key_material(IncludeKeyMaterial::AllKeyMaterial)
        .send()
        .await
    {
        Err(e) => rotations_unavailable = Some(kms("ListKeyRotations", e).to_string()),
        Ok(r) => {
            let rotations = r.rotations();
            pending = Some(
                rotations
                    .iter()
                    .any(|e| e.key_material_state() == Some(&KeyMaterialState::PendingRotation)),
            );
            if let Some(cur) = rotations
                .iter()
                .find(|e| e.key_material_state() == Some(&KeyMaterialState::Current))
            {
                if let Some(t) = cur.rotation_date().and_then(to_time) {
                    since = Some(t);
                    source = "rotation-date".into();
                }
            }
        }
    }
    if since.is_none() {
        since = m.creation_date().and_then(to_time);
    }
    let (verdict, days_until_due, mut detail) = judge(&state, since, valid_to, now, max_age_days);
    if rotations_unavailable.is_some() {
        detail +=
            " (age counted from key creation: ListKeyRotations is unavailable; --json says why)";
    }
    Ok(Some(KeyStatus {
        key_arn: m.arn().unwrap_or(m.key_id()).to_string(),
        region: b.region.clone(),
        aliases: aliases.get(m.key_id()).cloned().unwrap_or_default(),
        key_state: state,
        key_spec: m
            .key_spec()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        current_key_material_id: m.current_key_material_id().map(String::from),
        material_age_days: since.map(|s| (now - s).whole_days()),
        age_source: source,
        rotations_unavailable,
        material_valid_to: valid_to.map(rfc3339),
        pending_material: pending,
        days_until_due,
        verdict,
        detail,
    }))
}

/// When a key's current material became current, as [`key_status`] finds it:
/// the current material's rotation date from `ListKeyRotations` where KMS
/// provides it, else `created` (the key's creation date).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaterialAge {
    /// When the current material became current, if known.
    pub since: Option<OffsetDateTime>,
    /// `rotation-date` or `key-creation-date`.
    pub source: &'static str,
    /// Why `ListKeyRotations` could not be used, if it could not.
    pub rotations_unavailable: Option<String>,
}

/// The current material's age source for `key_id` (see [`MaterialAge`]);
/// used by `byok-bastion audit` with [`judge`].
pub async fn material_age(
    b: &Bastion,
    key_id: &str,
    created: Option<&aws_sdk_kms::primitives::DateTime>,
) -> MaterialAge {
    let fallback = |why: Option<String>| MaterialAge {
        since: created.and_then(to_time),
        source: "key-creation-date",
        rotations_unavailable: why,
    };
    match b
        .kms
        .list_key_rotations()
        .key_id(key_id)
        .include_key_material(IncludeKeyMaterial::AllKeyMaterial)
        .send()
        .await
    {
        Err(e) => fallback(Some(kms("ListKeyRotations", e).to_string())),
        Ok(r) => match r
            .rotations()
            .iter()
            .find(|e| e.key_material_state() == Some(&KeyMaterialState::Current))
            .and_then(|cur| cur.rotation_date().and_then(to_time))
        {
            Some(t) => MaterialAge {
                since: Some(t),
                source: "rotation-date",
                rotations_unavailable: None,
            },
            None => fallback(None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let days = |n: i64| now - Duration::days(n);
        assert_eq!(
            judge("Enabled", Some(days(10)), None, now, 365).0,
            Verdict::Ok
        );
        let (v, due, detail) = judge("Enabled", Some(days(400)), None, now, 365);
        assert_eq!(v, Verdict::OutOfPolicy);
        assert_eq!(due, Some(-35));
        assert!(detail.contains("400 days old"), "{detail}");
        assert_eq!(
            judge("Enabled", Some(days(350)), None, now, 365).0,
            Verdict::DueSoon
        );
        assert_eq!(
            judge(
                "Enabled",
                Some(days(1)),
                Some(now + Duration::days(5)),
                now,
                365
            )
            .0,
            Verdict::DueSoon
        );
        assert_eq!(
            judge(
                "Enabled",
                Some(days(1)),
                Some(now - Duration::days(1)),
                now,
                365
            )
            .0,
            Verdict::PendingImport
        );
        assert_eq!(
            judge("PendingImport", None, None, now, 365).0,
            Verdict::PendingImport
        );
        assert_eq!(
            judge("Disabled", Some(days(1)), None, now, 365).0,
            Verdict::NotEnabled
        );
        assert_eq!(
            judge("Enabled", Some(now), None, now, 0).0,
            Verdict::OutOfPolicy
        );
        assert!(Verdict::OutOfPolicy.needs_action() && !Verdict::DueSoon.needs_action());
    }
}
