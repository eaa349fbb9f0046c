//! `byok-bastion audit`: which S3 buckets, DynamoDB tables and RDS databases
//! are not on compliant keys.
//!
//! Each resource type has its own module that lists the resources of a Region
//! and says how each is encrypted ([`Encryption`]). Every KMS key reference is
//! resolved once per key and Region ([`KeyResolver`]: DescribeKey,
//! ListResourceTags, the material's age, ListAliases) and the verdict is a pure
//! function, [`judge`], of the encryption, the key's facts and the [`Policy`].
//! docs/audit.md lists the reason codes and what is not built yet.

pub mod accounts;
pub mod dynamodb;
pub mod rds;
pub mod s3;
pub mod securityhub;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_sdk_kms::types::{KeyManagerType, KeyState, OriginType};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{Mutex, OnceCell};

use super::client::{check_endpoint, key_id_of, Bastion};
use super::errors::BastionError;
use super::regions::{region_of, Regions};
use super::status;

/// A kind of AWS resource the audit inventories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum ResourceType {
    /// An S3 bucket (its default encryption).
    #[serde(rename = "AWS::S3::Bucket")]
    S3Bucket,
    /// A DynamoDB table.
    #[serde(rename = "AWS::DynamoDB::Table")]
    DynamoDbTable,
    /// An RDS DB instance.
    #[serde(rename = "AWS::RDS::DBInstance")]
    RdsInstance,
    /// An RDS (Aurora, Multi-AZ) DB cluster.
    #[serde(rename = "AWS::RDS::DBCluster")]
    RdsCluster,
}

impl ResourceType {
    /// The CloudFormation / AWS Config name (`AWS::S3::Bucket`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::S3Bucket => "AWS::S3::Bucket",
            ResourceType::DynamoDbTable => "AWS::DynamoDB::Table",
            ResourceType::RdsInstance => "AWS::RDS::DBInstance",
            ResourceType::RdsCluster => "AWS::RDS::DBCluster",
        }
    }
}

/// How a resource says it is encrypted at rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encryption {
    /// Not encrypted at rest.
    None,
    /// Encrypted with a key the service owns or manages without KMS
    /// (SSE-S3, DynamoDB's AWS-owned key); `what` says which.
    ServiceOwned {
        /// For example `SSE-S3 (AES256)`.
        what: String,
    },
    /// Encrypted under the AWS-managed KMS key of the service (`alias/aws/s3`)
    /// without naming it.
    AwsManagedDefault {
        /// The alias of the AWS-managed key.
        alias: String,
    },
    /// Encrypted under a KMS key, as the resource names it (key ID, key ARN,
    /// alias name or alias ARN).
    Kms {
        /// The reference as the resource states it.
        key_ref: String,
    },
    /// The check does not apply to this resource; `why`.
    NotApplicable {
        /// Why.
        why: String,
    },
    /// The resource's encryption could not be read; `why`.
    Unreadable {
        /// Why (the service's error).
        why: String,
    },
}

/// One resource and how it is encrypted.
#[derive(Clone, Debug)]
pub struct Resource {
    /// Its type.
    pub kind: ResourceType,
    /// Its Region.
    pub region: String,
    /// Its name or identifier.
    pub name: String,
    /// Its ARN, where the service reports one.
    pub arn: Option<String>,
    /// The ID AWS Config knows it by where that is not its name (RDS:
    /// `DbiResourceId`, `DbClusterResourceId`).
    pub config_id: Option<String>,
    /// How it is encrypted.
    pub encryption: Encryption,
}

/// What the audit needs to know about a KMS key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyFacts {
    /// The key ARN.
    pub arn: String,
    /// `CUSTOMER` or `AWS`.
    pub manager: String,
    /// `EXTERNAL`, `AWS_KMS`, `AWS_CLOUDHSM`, `EXTERNAL_KEY_STORE`.
    pub origin: String,
    /// The KMS key state (`Enabled`, `Disabled`, `PendingDeletion`…).
    pub state: String,
    /// When the current material became current, if known.
    #[serde(skip)]
    pub material_since: Option<OffsetDateTime>,
    /// `rotation-date` or `key-creation-date`.
    pub age_source: String,
    /// When imported material expires, if it does.
    #[serde(skip)]
    pub valid_to: Option<OffsetDateTime>,
    /// The aliases that point to the key now (in its account and Region).
    pub aliases: Vec<String>,
    /// Why this Region's aliases could not be listed (then "the alias moved
    /// away" is not judged).
    pub aliases_unreadable: Option<String>,
    /// The `byok:replaced-by` tag (set by `move-alias` on the old key).
    pub replaced_by: Option<String>,
    /// The `byok:alias-moved-at` tag: an alias was moved to or from this key.
    pub alias_moved_at: Option<String>,
    /// Why the key's tags could not be read (for example a key in another
    /// account: ListResourceTags only works in the key's own account).
    pub tags_unreadable: Option<String>,
}

/// The audit's policy.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Key material older than this many days is non-compliant.
    pub max_age_days: i64,
    /// Whether keys must hold imported material (`Origin: EXTERNAL`).
    pub require_external: bool,
    /// The time the audit judges at.
    pub now: OffsetDateTime,
}

/// A resource's standing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// Not on a compliant key.
    NonCompliant,
    /// Could not be decided; the detail says why.
    Unknown,
    /// On a compliant key.
    Compliant,
    /// The check does not apply.
    NotApplicable,
}

impl Verdict {
    /// The verdict as printed (`NON_COMPLIANT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NonCompliant => "NON_COMPLIANT",
            Verdict::Unknown => "UNKNOWN",
            Verdict::Compliant => "COMPLIANT",
            Verdict::NotApplicable => "NOT_APPLICABLE",
        }
    }
}

/// Why a resource got its verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// On a customer key with imported material within the maximum age.
    CompliantKey,
    /// Not encrypted at rest.
    Unencrypted,
    /// SSE-S3, an AWS-owned key, or an AWS-managed key (`alias/aws/*`).
    NotCustomerKey,
    /// A customer key whose material was not imported (`Origin` not `EXTERNAL`).
    NotExternal,
    /// The key's material is older than `--max-age-days`.
    MaterialTooOld,
    /// The key has no usable material (never imported, or it expired).
    MaterialMissing,
    /// The key is disabled, pending deletion or unavailable.
    KeyDisabledOrPendingDeletion,
    /// The key was replaced (`byok:replaced-by`, or the resource pins the
    /// key by ID while the alias moved away).
    KeyReplaced,
    /// The check does not apply to this resource.
    NotApplicable,
    /// The resource's encryption could not be read.
    ResourceUnreadable,
    /// The key could not be described (DescribeKey refused or failed).
    KeyUnreadable,
    /// The key looks compliant but its tags could not be read, so whether it
    /// was replaced is not known.
    TagsUnreadable,
    /// The key's material age is not known.
    MaterialAgeUnknown,
}

impl Reason {
    /// The reason code as printed (`KEY_REPLACED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::CompliantKey => "COMPLIANT_KEY",
            Reason::Unencrypted => "UNENCRYPTED",
            Reason::NotCustomerKey => "NOT_CUSTOMER_KEY",
            Reason::NotExternal => "NOT_EXTERNAL",
            Reason::MaterialTooOld => "MATERIAL_TOO_OLD",
            Reason::MaterialMissing => "MATERIAL_MISSING",
            Reason::KeyDisabledOrPendingDeletion => "KEY_DISABLED_OR_PENDING_DELETION",
            Reason::KeyReplaced => "KEY_REPLACED",
            Reason::NotApplicable => "NOT_APPLICABLE",
            Reason::ResourceUnreadable => "RESOURCE_UNREADABLE",
            Reason::KeyUnreadable => "KEY_UNREADABLE",
            Reason::TagsUnreadable => "TAGS_UNREADABLE",
            Reason::MaterialAgeUnknown => "MATERIAL_AGE_UNKNOWN",
        }
    }

    /// What to do about it, in one sentence.
    pub fn remediation(self) -> &'static str {
        match self {
            Reason::CompliantKey => "Nothing to do.",
            Reason::Unencrypted => "Enable encryption at rest with a customer KMS key holding imported material (an RDS database must be restored from a snapshot copied with the key).",
            Reason::NotCustomerKey => "Switch to a customer KMS key holding imported material (alias/SERVICE-ENV): S3 PutBucketEncryption, DynamoDB UpdateTable SSESpecification, RDS snapshot copy with the key and restore.",
            Reason::NotExternal => "Use a key created with Origin EXTERNAL whose material came from the HSM through a signed ceremony, not a key KMS generated.",
            Reason::MaterialTooOld => "Rotate: run a ceremony for new material (`import --new-key-material` then `rotate`, or `move-alias` for HMAC and asymmetric keys).",
            Reason::MaterialMissing => "Import key material from a signed ceremony (`byok-bastion import`); data under this key cannot be read until then.",
            Reason::KeyDisabledOrPendingDeletion => "Move the resource to the current key of its alias now; cancel the deletion (CancelKeyDeletion) if data still depends on this key.",
            Reason::KeyReplaced => "Point the resource at the key that replaced this one (`byok-bastion repoint --apply` for S3 and DynamoDB; it prints the snapshot-copy-restore procedure for RDS) before the old key is deleted; cancel its deletion (CancelKeyDeletion) while data still depends on it.",
            Reason::NotApplicable => "Nothing to do here; see the detail for where this resource is judged.",
            Reason::ResourceUnreadable => "Grant the audit role read access to this resource's encryption settings (see docs/audit.md) and run the audit again.",
            Reason::KeyUnreadable => "Allow the audit role kms:DescribeKey on this key (in the key's account key policy) and run the audit again.",
            Reason::TagsUnreadable => "Run the audit with a role in the key's account (kms:ListResourceTags) to check whether the key was replaced.",
            Reason::MaterialAgeUnknown => "Check the key's material with `byok-bastion status` in the key's account and Region.",
        }
    }
}

/// A verdict with its reason and detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// The verdict.
    pub verdict: Verdict,
    /// Why, as a code.
    pub reason: Reason,
    /// Why, for people.
    pub detail: String,
}

fn j(verdict: Verdict, reason: Reason, detail: impl Into<String>) -> Judgement {
    Judgement {
        verdict,
        reason,
        detail: detail.into(),
    }
}

/// Whether a key reference names an alias (`alias/x`, `arn:…:alias/x`).
pub fn is_alias_ref(key_ref: &str) -> bool {
    key_ref.starts_with("alias/") || key_ref.contains(":alias/")
}

/// Judge one resource: its encryption, and for a KMS key the key's facts
/// (`Err` with why when the key could not be resolved). Pure.
pub fn judge(
    encryption: &Encryption,
    key: Option<Result<&KeyFacts, &str>>,
    policy: &Policy,
) -> Judgement {
    match judge_steps(encryption, key, policy) {
        Ok(j) | Err(j) => j,
    }
}

/// The judge's steps in order; each `Err` is a verdict reached early.
fn judge_steps(
    encryption: &Encryption,
    key: Option<Result<&KeyFacts, &str>>,
    policy: &Policy,
) -> Result<Judgement, Judgement> {
    let key_ref = customer_key_ref(encryption)?;
    let k = resolved(key_ref, key)?;
    not_aws_managed(k, key_ref)?;
    not_replaced(k, key_ref)?;
    usable(k, policy)?;
    material(k, policy)
}

/// The KMS key a resource names, or the verdict when it names none.
fn customer_key_ref(encryption: &Encryption) -> Result<&str, Judgement> {
    use Reason as R;
    use Verdict as V;
    match encryption {
        Encryption::None => Err(j(V::NonCompliant, R::Unencrypted, "not encrypted at rest")),
        Encryption::ServiceOwned { what } => Err(j(
            V::NonCompliant,
            R::NotCustomerKey,
            format!("encrypted with {what}, not a customer KMS key"),
        )),
        Encryption::AwsManagedDefault { alias } => Err(j(
            V::NonCompliant,
            R::NotCustomerKey,
            format!("encrypted with the AWS-managed key {alias}"),
        )),
        Encryption::NotApplicable { why } => Err(j(V::NotApplicable, R::NotApplicable, why)),
        Encryption::Unreadable { why } => Err(j(V::Unknown, R::ResourceUnreadable, why)),
        Encryption::Kms { key_ref } => Ok(key_ref),
    }
}

/// The key's facts, or UNKNOWN when it could not be described.
fn resolved<'a>(
    key_ref: &str,
    key: Option<Result<&'a KeyFacts, &str>>,
) -> Result<&'a KeyFacts, Judgement> {
    match key {
        None => Err(j(
            Verdict::Unknown,
            Reason::KeyUnreadable,
            format!("key {key_ref} was not resolved"),
        )),
        Some(Err(why)) => Err(j(
            Verdict::Unknown,
            Reason::KeyUnreadable,
            format!("cannot describe key {key_ref}: {why}"),
        )),
        Some(Ok(k)) => Ok(k),
    }
}

fn not_aws_managed(k: &KeyFacts, key_ref: &str) -> Result<(), Judgement> {
    if k.manager == "AWS" || key_ref.contains("alias/aws/") {
        return Err(j(
            Verdict::NonCompliant,
            Reason::NotCustomerKey,
            format!("{} is an AWS-managed key", k.arn),
        ));
    }
    Ok(())
}

/// A replaced key is KEY_REPLACED whatever its state: after `retire` it is
/// disabled or pending deletion, and the fix is the same (repoint).
fn not_replaced(k: &KeyFacts, key_ref: &str) -> Result<(), Judgement> {
    let state_note = match k.state.as_str() {
        "Enabled" => String::new(),
        other => format!("; it is {other}"),
    };
    if let Some(new) = &k.replaced_by {
        return Err(j(
            Verdict::NonCompliant,
            Reason::KeyReplaced,
            format!(
                "{} was replaced by {new} (tag byok:replaced-by){state_note}",
                k.arn
            ),
        ));
    }
    if !is_alias_ref(key_ref) && k.aliases.is_empty() && k.aliases_unreadable.is_none() {
        if let Some(at) = &k.alias_moved_at {
            return Err(j(
                Verdict::NonCompliant,
                Reason::KeyReplaced,
                format!(
                    "the resource pins {} by ID, and no alias points to it since an alias moved at {at}{state_note}",
                    k.arn
                ),
            ));
        }
    }
    Ok(())
}

/// Enabled, with material, and EXTERNAL where the policy requires it.
fn usable(k: &KeyFacts, policy: &Policy) -> Result<(), Judgement> {
    match k.state.as_str() {
        "Enabled" => {}
        "PendingImport" => {
            return Err(j(
                Verdict::NonCompliant,
                Reason::MaterialMissing,
                format!("{} has no key material (PendingImport)", k.arn),
            ))
        }
        other => {
            return Err(j(
                Verdict::NonCompliant,
                Reason::KeyDisabledOrPendingDeletion,
                format!("{} is {other}", k.arn),
            ))
        }
    }
    if policy.require_external && k.origin != "EXTERNAL" {
        return Err(j(
            Verdict::NonCompliant,
            Reason::NotExternal,
            format!("{} has Origin {}, not EXTERNAL", k.arn, k.origin),
        ));
    }
    Ok(())
}

/// The material's age under the policy (the same rule as `status`).
fn material(k: &KeyFacts, policy: &Policy) -> Result<Judgement, Judgement> {
    use Reason as R;
    use Verdict as V;
    let (v, _, detail) = status::judge(
        &k.state,
        k.material_since,
        k.valid_to,
        policy.now,
        policy.max_age_days,
    );
    let since = match (v, k.material_since) {
        (status::Verdict::OutOfPolicy, _) => {
            return Err(j(
                V::NonCompliant,
                R::MaterialTooOld,
                format!("{}: {detail} (age from {})", k.arn, k.age_source),
            ))
        }
        (status::Verdict::PendingImport, _) => {
            return Err(j(
                V::NonCompliant,
                R::MaterialMissing,
                format!("{}: {detail}", k.arn),
            ))
        }
        (status::Verdict::NotEnabled, _) => {
            return Err(j(
                V::NonCompliant,
                R::KeyDisabledOrPendingDeletion,
                format!("{}: {detail}", k.arn),
            ))
        }
        (_, None) => {
            return Err(j(
                V::Unknown,
                R::MaterialAgeUnknown,
                format!("{}: material age unknown", k.arn),
            ))
        }
        (_, Some(since)) => since,
    };
    if let Some(why) = &k.tags_unreadable {
        return Err(j(
            V::Unknown,
            R::TagsUnreadable,
            format!(
                "{} is EXTERNAL and in policy, but whether it was replaced is unknown: {why}",
                k.arn
            ),
        ));
    }
    Ok(j(
        V::Compliant,
        R::CompliantKey,
        format!(
            "{} (EXTERNAL), material {} days old; {detail}",
            k.arn,
            (policy.now - since).whole_days()
        ),
    ))
}

/// An AWS SDK error for people: the error code and message, or, when no
/// answer came, what to check. Every service the audit reads uses it.
pub(crate) fn explain_sdk<E: aws_sdk_kms::error::ProvideErrorMetadata + std::fmt::Debug>(
    e: &E,
) -> String {
    match e.code() {
        Some(c) => format!("{c}: {}", e.message().unwrap_or("")),
        None => format!(
            "no response ({}); check the endpoint, network and credentials",
            format!("{e:?}").chars().take(200).collect::<String>()
        ),
    }
}

/// [`explain_sdk`] prefixed with the service and operation (`S3 ListBuckets: …`).
pub(crate) fn sdk_error<E: aws_sdk_kms::error::ProvideErrorMetadata + std::fmt::Debug>(
    service: &str,
    op: &str,
    e: &E,
) -> String {
    format!("{service} {op}: {}", explain_sdk(e))
}

/// One resource's result.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// The resource's account, when the audit assumed a role there
    /// (`--role-arn`); absent for the bastion's own credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `AWS::S3::Bucket`, `AWS::DynamoDB::Table`, `AWS::RDS::DBInstance`, `AWS::RDS::DBCluster`.
    pub resource_type: ResourceType,
    /// The Region.
    pub region: String,
    /// The resource's name or identifier (`*` when a whole listing failed).
    pub resource: String,
    /// The resource's ARN, if reported.
    pub arn: Option<String>,
    /// The ID AWS Config knows the resource by where that is not its name
    /// (RDS resource IDs); not printed.
    #[serde(skip)]
    pub config_id: Option<String>,
    /// The verdict.
    pub verdict: Verdict,
    /// The reason code.
    pub reason: Reason,
    /// The key as the resource names it.
    pub key_reference: Option<String>,
    /// The key's ARN, once resolved.
    pub key_arn: Option<String>,
    /// Why, for people.
    pub detail: String,
    /// What to do.
    pub remediation: String,
}

/// Counts per verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Resources judged (and listings that failed).
    pub total: usize,
    /// COMPLIANT.
    pub compliant: usize,
    /// NON_COMPLIANT.
    pub non_compliant: usize,
    /// NOT_APPLICABLE.
    pub not_applicable: usize,
    /// UNKNOWN.
    pub unknown: usize,
}

impl Summary {
    /// Count `findings`.
    pub fn of(findings: &[Finding]) -> Self {
        let mut s = Summary {
            total: findings.len(),
            ..Summary::default()
        };
        for f in findings {
            match f.verdict {
                Verdict::Compliant => s.compliant += 1,
                Verdict::NonCompliant => s.non_compliant += 1,
                Verdict::NotApplicable => s.not_applicable += 1,
                Verdict::Unknown => s.unknown += 1,
            }
        }
        s
    }

    /// `3 NON_COMPLIANT, 1 UNKNOWN, 2 COMPLIANT, 1 NOT_APPLICABLE (of 7 resources)`.
    pub fn line(&self) -> String {
        format!(
            "{} NON_COMPLIANT, {} UNKNOWN, {} COMPLIANT, {} NOT_APPLICABLE (of {} resources)",
            self.non_compliant, self.unknown, self.compliant, self.not_applicable, self.total
        )
    }
}

/// The whole audit.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// When the audit judged, RFC 3339.
    pub generated_at: String,
    /// The Regions audited.
    pub regions: Vec<String>,
    /// The accounts audited through `--role-arn` (empty: the bastion's own).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    /// The maximum material age in days.
    pub max_age_days: i64,
    /// Counts per verdict.
    pub summary: Summary,
    /// DescribeKey calls made (one per key and Region: the cache's effect).
    pub kms_describe_calls: usize,
    /// Every resource, sorted by verdict, type, Region and name.
    pub findings: Vec<Finding>,
    /// What `--security-hub` published, per account and Region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_hub: Option<Vec<securityhub::PublishSummary>>,
}

type Facts = Result<KeyFacts, String>;
/// A key's facts, resolved once, by (account whose credentials read it,
/// Region, reference).
type KeyCache = HashMap<(String, String, String), Arc<OnceCell<Facts>>>;
/// Alias names by target key ID, or why ListAliases failed.
type AliasMap = Result<BTreeMap<String, Vec<String>>, String>;
/// Each Region's aliases, listed once, by (account whose credentials read
/// them, Region).
type AliasCache = HashMap<(String, String), Arc<OnceCell<AliasMap>>>;

/// Resolves key references to [`KeyFacts`], once per reference and Region
/// (DescribeKey, ListResourceTags, ListKeyRotations), and lists each
/// Region's aliases once.
pub struct KeyResolver {
    regions: Arc<Regions>,
    accounts: BTreeMap<String, Arc<Regions>>,
    keys: Mutex<KeyCache>,
    aliases: Mutex<AliasCache>,
    describe_calls: AtomicUsize,
}

impl KeyResolver {
    /// A resolver using the KMS clients of `regions`.
    pub fn new(regions: Arc<Regions>) -> Self {
        Self::with_accounts(regions, BTreeMap::new())
    }

    /// A resolver that reads keys of the `accounts` with those accounts'
    /// clients (assumed roles), and every other key with `regions` (the
    /// bastion's own credentials).
    pub fn with_accounts(regions: Arc<Regions>, accounts: BTreeMap<String, Arc<Regions>>) -> Self {
        KeyResolver {
            regions,
            accounts,
            keys: Mutex::new(HashMap::new()),
            aliases: Mutex::new(HashMap::new()),
            describe_calls: AtomicUsize::new(0),
        }
    }

    /// DescribeKey calls made so far.
    pub fn describe_calls(&self) -> usize {
        self.describe_calls.load(Ordering::Relaxed)
    }

    /// The facts of the key `key_ref` names, for a resource in `region` (a
    /// key or alias ARN's own Region wins).
    pub async fn resolve(&self, region: &str, key_ref: &str) -> Facts {
        self.resolve_for(None, region, key_ref).await
    }

    /// [`KeyResolver::resolve`] for a resource of `account`: a key ARN is
    /// read in its own account's credentials when the audit has them, a key
    /// ID or alias name in the resource's account's; else the bastion's own.
    pub async fn resolve_for(&self, account: Option<&str>, region: &str, key_ref: &str) -> Facts {
        let region = region_of(key_ref).unwrap_or(region).to_string();
        let owner = if key_ref.starts_with("arn:") {
            super::client::account_of(key_ref)
        } else {
            account
        };
        let (label, regions) = match owner.and_then(|a| self.accounts.get(a).map(|r| (a, r))) {
            Some((a, r)) => (a.to_string(), r.clone()),
            None => (String::new(), self.regions.clone()),
        };
        let cell = self
            .keys
            .lock()
            .await
            .entry((label.clone(), region.clone(), key_ref.to_string()))
            .or_default()
            .clone();
        cell.get_or_init(|| self.fetch(regions, label, region, key_ref.to_string()))
            .await
            .clone()
    }

    async fn region_aliases(
        &self,
        label: &str,
        b: &Bastion,
    ) -> Result<BTreeMap<String, Vec<String>>, String> {
        let cell = self
            .aliases
            .lock()
            .await
            .entry((label.to_string(), b.region.clone()))
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (name, target) in b.aliases().await.map_err(|e| e.to_string())? {
                by_key.entry(target).or_default().push(name);
            }
            Ok(by_key)
        })
        .await
        .clone()
    }

    async fn fetch(
        &self,
        regions: Arc<Regions>,
        label: String,
        region: String,
        key_ref: String,
    ) -> Facts {
        let b = regions.region(&region).await.map_err(|e| e.to_string())?;
        self.describe_calls.fetch_add(1, Ordering::Relaxed);
        let m = b.describe(&key_ref).await.map_err(|e| e.to_string())?;
        let arn = m.arn().unwrap_or(m.key_id()).to_string();
        let manager = m
            .key_manager()
            .map(KeyManagerType::as_str)
            .unwrap_or("CUSTOMER")
            .to_string();
        let mut facts = KeyFacts {
            arn: arn.clone(),
            manager,
            origin: m
                .origin()
                .map(OriginType::as_str)
                .unwrap_or("UNKNOWN")
                .to_string(),
            state: m
                .key_state()
                .map(KeyState::as_str)
                .unwrap_or("Unknown")
                .to_string(),
            material_since: None,
            age_source: String::new(),
            valid_to: m
                .valid_to()
                .and_then(|d| OffsetDateTime::from_unix_timestamp(d.secs()).ok()),
            aliases: Vec::new(),
            aliases_unreadable: None,
            replaced_by: None,
            alias_moved_at: None,
            tags_unreadable: None,
        };
        if facts.manager == "AWS" {
            return Ok(facts);
        }
        let age = status::material_age(&b, &arn, m.creation_date()).await;
        facts.material_since = age.since;
        facts.age_source = age.source.to_string();
        // ListAliases lists this account's aliases: a key in another account
        // has none here, and its tags are unreadable (TAGS_UNREADABLE), so
        // the "alias moved away" rule never fires on a guess.
        match self.region_aliases(&label, &b).await {
            Ok(aliases) => {
                facts.aliases = aliases.get(key_id_of(&arn)).cloned().unwrap_or_default()
            }
            Err(e) => facts.aliases_unreadable = Some(e),
        }
        match list_tags(&b, &arn).await {
            Ok(tags) => {
                facts.replaced_by = tags.get("byok:replaced-by").cloned();
                facts.alias_moved_at = tags.get("byok:alias-moved-at").cloned();
            }
            Err(e) => facts.tags_unreadable = Some(e),
        }
        Ok(facts)
    }
}

async fn list_tags(b: &Bastion, key: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut marker: Option<String> = None;
    loop {
        let r = b
            .kms
            .list_resource_tags()
            .key_id(key)
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| super::errors::kms("ListResourceTags", e).to_string())?;
        for t in r.tags() {
            out.insert(t.tag_key().to_string(), t.tag_value().to_string());
        }
        match (r.truncated(), r.next_marker()) {
            (true, Some(m)) if Some(m) != marker.as_deref() => marker = Some(m.to_string()),
            _ => return Ok(out),
        }
    }
}

/// The S3, DynamoDB and RDS clients of one Region.
pub struct ServiceClients {
    /// The Region.
    pub region: String,
    /// The account, when the audit assumed a role there.
    pub account: Option<String>,
    /// S3 (path-style addressing when the endpoint is overridden).
    pub s3: aws_sdk_s3::Client,
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// RDS.
    pub rds: aws_sdk_rds::Client,
    /// Security Hub (`--security-hub`).
    pub securityhub: aws_sdk_securityhub::Client,
    /// STS (the account of the credentials).
    pub sts: aws_sdk_sts::Client,
}

/// The finding for a resource that could not be judged (a panicked task, or
/// one never started because the audit was interrupted).
fn unjudged(account: &Option<String>, p: &Pending, why: &str) -> Finding {
    let (kind, region, name) = match p {
        Pending::Done(r) => (r.kind, r.region.clone(), r.name.clone()),
        Pending::S3Bucket { name, region } => {
            (ResourceType::S3Bucket, region.clone(), name.clone())
        }
        Pending::DynamoDbTable { name, region } => {
            (ResourceType::DynamoDbTable, region.clone(), name.clone())
        }
    };
    Finding {
        account: account.clone(),
        resource_type: kind,
        region,
        resource: name,
        arn: None,
        config_id: None,
        verdict: Verdict::Unknown,
        reason: Reason::ResourceUnreadable,
        key_reference: None,
        key_arn: None,
        detail: why.into(),
        remediation: Reason::ResourceUnreadable.remediation().into(),
    }
}

/// The endpoint override for `service` (`AWS_ENDPOINT_URL_S3`, else
/// `AWS_ENDPOINT_URL`), checked like KMS's: HTTPS, or HTTP on loopback.
pub(crate) fn endpoint_override(service: &str) -> Result<Option<String>, BastionError> {
    let url = std::env::var(format!("AWS_ENDPOINT_URL_{service}"))
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .ok()
        .filter(|s| !s.is_empty());
    if let Some(u) = &url {
        check_endpoint(u).map_err(|problem| BastionError::ServiceEndpoint {
            service: service.to_string(),
            url: u.clone(),
            problem,
        })?;
    }
    Ok(url)
}

impl ServiceClients {
    /// Connect in `region` with `profile`, the same timeouts and retries as
    /// the KMS client. Prints overridden endpoints on stderr.
    pub async fn connect(region: &str, profile: Option<&str>) -> Result<Self, BastionError> {
        Self::connect_as(region, profile, None, None).await
    }

    /// [`ServiceClients::connect`] with an assumed role's `credentials` in `account`.
    pub async fn connect_as(
        region: &str,
        profile: Option<&str>,
        credentials: Option<aws_sdk_kms::config::Credentials>,
        account: Option<String>,
    ) -> Result<Self, BastionError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(10))
                    .operation_attempt_timeout(std::time::Duration::from_secs(30))
                    .operation_timeout(std::time::Duration::from_secs(120))
                    .build(),
            )
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(6));
        if let Some(p) = profile {
            loader = loader.profile_name(p);
        }
        if let Some(c) = credentials {
            loader = loader.credentials_provider(c);
        }
        let conf = loader.load().await;
        let s3_endpoint = endpoint_override("S3")?;
        for (name, url) in [
            ("S3", &s3_endpoint),
            ("DynamoDB", &endpoint_override("DYNAMODB")?),
            ("RDS", &endpoint_override("RDS")?),
            ("Security Hub", &endpoint_override("SECURITYHUB")?),
            ("STS", &endpoint_override("STS")?),
        ] {
            if let (Some(u), None) = (url, &account) {
                eprintln!("{name} endpoint: {u} (overridden; Region {region})");
            }
        }
        let s3_conf = aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(s3_endpoint.is_some())
            .build();
        Ok(ServiceClients {
            region: region.to_string(),
            account,
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            dynamodb: aws_sdk_dynamodb::Client::new(&conf),
            rds: aws_sdk_rds::Client::new(&conf),
            securityhub: aws_sdk_securityhub::Client::new(&conf),
            sts: aws_sdk_sts::Client::new(&conf),
        })
    }
}

/// A resource to describe: listing gives these, describing gives [`Resource`].
#[derive(Clone, Debug)]
pub enum Pending {
    /// Already described (the listing said it all).
    Done(Resource),
    /// An S3 bucket in a Region whose default encryption is still to be read.
    S3Bucket {
        /// The bucket.
        name: String,
        /// Its Region.
        region: String,
    },
    /// A DynamoDB table still to be described.
    DynamoDbTable {
        /// The table.
        name: String,
        /// Its Region.
        region: String,
    },
}

/// A listing that failed: one UNKNOWN resource standing for all of its kind.
pub fn listing_failed(kind: ResourceType, region: &str, what: &str, why: String) -> Resource {
    Resource {
        kind,
        region: region.to_string(),
        name: "*".into(),
        arn: None,
        config_id: None,
        encryption: Encryption::Unreadable {
            why: format!("cannot list {what} in {region}: {why}"),
        },
    }
}

/// What `audit` is asked to do.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// Regions to audit (empty: the configured Region).
    pub regions: Vec<String>,
    /// The policy's maximum material age.
    pub max_age_days: i64,
    /// Resources described at the same time.
    pub jobs: usize,
    /// Whether keys must be EXTERNAL.
    pub require_external: bool,
    /// Which accounts (default: the bastion's own).
    pub accounts: accounts::AccountArgs,
}

impl AuditOptions {
    /// The options `audit` and `repoint` take from their command lines.
    pub fn of(
        regions: &[String],
        max_age_days: i64,
        jobs: u16,
        allow_kms_generated: bool,
        accounts: &accounts::AccountArgs,
    ) -> Self {
        AuditOptions {
            regions: regions.to_vec(),
            max_age_days,
            jobs: usize::from(jobs),
            require_external: !allow_kms_generated,
            accounts: accounts.clone(),
        }
    }
}

/// An audit with what it used: the per-Region clients and the key cache, so
/// that `repoint` can act on the findings without listing or resolving again.
pub struct Inventory {
    /// The report.
    pub report: Report,
    /// The service clients, by (account, Region); the account is `""` for
    /// the bastion's own credentials.
    pub clients: BTreeMap<(String, String), Arc<ServiceClients>>,
    /// The key cache the findings were judged with.
    pub resolver: Arc<KeyResolver>,
    /// The policy they were judged under.
    pub policy: Policy,
}

/// Inventory and judge every resource in the Regions of `opts`.
pub async fn audit(
    regions: Arc<Regions>,
    profile: Option<&str>,
    opts: &AuditOptions,
) -> Result<Report, BastionError> {
    Ok(inventory(regions, profile, opts).await?.report)
}

/// [`audit`], keeping the clients and the key cache. The first SIGINT or
/// SIGTERM stops starting new work.
pub async fn inventory(
    regions: Arc<Regions>,
    profile: Option<&str>,
    opts: &AuditOptions,
) -> Result<Inventory, BastionError> {
    let stop = super::batch::StopFlag::on_signals()?;
    inventory_until(regions, profile, opts, &stop).await
}

/// [`inventory`] that stops starting new work when `stop` is set (a
/// long-lived process, such as the AWS Config rule's Lambda function, owns
/// its signals).
pub(crate) async fn inventory_until(
    regions: Arc<Regions>,
    profile: Option<&str>,
    opts: &AuditOptions,
    stop: &super::batch::StopFlag,
) -> Result<Inventory, BastionError> {
    let names = audit_regions(&regions, opts).await?;
    let scopes = accounts::scopes(regions.clone(), profile, &names[0], &opts.accounts).await?;
    let listed = list_all(&scopes, &names, profile, opts.jobs, stop).await?;
    let policy = Policy {
        max_age_days: opts.max_age_days,
        require_external: opts.require_external,
        now: OffsetDateTime::now_utc(),
    };
    let resolver = Arc::new(KeyResolver::with_accounts(regions, listed.assumed));
    let clients = Arc::new(listed.clients);
    let mut findings = judge_all(
        listed.pending,
        clients.clone(),
        resolver.clone(),
        policy,
        opts.jobs,
        stop,
    )
    .await;
    findings.sort_by(|a, b| {
        let key = |f: &Finding| {
            (
                f.verdict,
                f.resource_type,
                f.account.clone(),
                f.region.clone(),
                f.resource.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(Inventory {
        report: Report {
            generated_at: crate::kms::import_params::rfc3339(policy.now),
            regions: names,
            accounts: scopes.iter().filter_map(|s| s.account.clone()).collect(),
            max_age_days: opts.max_age_days,
            summary: Summary::of(&findings),
            kms_describe_calls: resolver.describe_calls(),
            findings,
            security_hub: None,
        },
        clients: Arc::try_unwrap(clients).unwrap_or_else(|c| (*c).clone()),
        resolver,
        policy,
    })
}

/// The Regions to audit (sorted, deduplicated; default: the configured
/// one), each checked and its KMS client connected.
async fn audit_regions(
    regions: &Regions,
    opts: &AuditOptions,
) -> Result<Vec<String>, BastionError> {
    let mut names = opts.regions.clone();
    if names.is_empty() {
        names.push(regions.default_region().await?.region.clone());
    }
    names.sort();
    names.dedup();
    for r in &names {
        // Validates the name, connects KMS (and prints its endpoint).
        regions.region(r).await?;
    }
    Ok(names)
}

/// What listing every account and Region found.
struct Listed {
    /// Service clients by (account label, Region).
    clients: BTreeMap<(String, String), Arc<ServiceClients>>,
    /// KMS clients of assumed accounts.
    assumed: BTreeMap<String, Arc<Regions>>,
    /// Resources to describe and judge, with their account.
    pending: Vec<(Option<String>, Pending)>,
}

/// List every account's buckets, tables and databases in every Region; an
/// account whose role could not be assumed gets UNKNOWN listings.
async fn list_all(
    scopes: &[accounts::Scope],
    names: &[String],
    profile: Option<&str>,
    jobs: usize,
    stop: &super::batch::StopFlag,
) -> Result<Listed, BastionError> {
    let mut listed = Listed {
        clients: BTreeMap::new(),
        assumed: BTreeMap::new(),
        pending: Vec::new(),
    };
    for scope in scopes {
        let label = scope.account.clone().unwrap_or_default();
        let tag = |p: Pending| (scope.account.clone(), p);
        if let Some(why) = &scope.failed {
            for r in names {
                for (kind, what) in [
                    (ResourceType::S3Bucket, "buckets"),
                    (ResourceType::DynamoDbTable, "tables"),
                    (ResourceType::RdsInstance, "DB instances"),
                    (ResourceType::RdsCluster, "DB clusters"),
                ] {
                    let failed = listing_failed(kind, r, what, why.clone());
                    listed.pending.push(tag(Pending::Done(failed)));
                }
            }
            continue;
        }
        if let Some(a) = &scope.account {
            listed.assumed.insert(a.clone(), scope.kms.clone());
        }
        let mut clients = BTreeMap::new();
        for r in names {
            let creds = scope.credentials.clone();
            let c = ServiceClients::connect_as(r, profile, creds, scope.account.clone()).await?;
            let c = Arc::new(c);
            listed.clients.insert((label.clone(), r.clone()), c.clone());
            clients.insert(r.clone(), c);
        }
        let clients = Arc::new(clients);
        listed
            .pending
            .extend(s3::list(&clients, jobs, stop).await.into_iter().map(tag));
        for c in clients.values() {
            listed
                .pending
                .extend(dynamodb::list(c).await.into_iter().map(tag));
            listed
                .pending
                .extend(rds::list(c).await.into_iter().map(tag));
        }
        if listed.pending.len() >= 50 {
            let through = scope
                .account
                .as_deref()
                .map(|a| format!(" (through account {a})"))
                .unwrap_or_default();
            eprintln!("{} resource(s) listed{through}", listed.pending.len());
        }
    }
    Ok(listed)
}

/// Describe and judge every listed resource, `jobs` at a time.
async fn judge_all(
    pending: Vec<(Option<String>, Pending)>,
    clients: Arc<BTreeMap<(String, String), Arc<ServiceClients>>>,
    resolver: Arc<KeyResolver>,
    policy: Policy,
    jobs: usize,
    stop: &super::batch::StopFlag,
) -> Vec<Finding> {
    let total = pending.len();
    super::batch::map_bounded(
        pending,
        jobs,
        |(account, p)| {
            let (clients, resolver) = (clients.clone(), resolver.clone());
            async move {
                let label = account.clone().unwrap_or_default();
                let r = describe(&clients, label, p).await;
                finding(account, &r, &resolver, &policy).await
            }
        },
        |done, _| {
            if total >= 50 && done % 50 == 0 {
                eprintln!("[{done}/{total}] resources judged");
            }
        },
        |(a, p)| unjudged(a, p, "internal error: the task panicked"),
        stop,
        |(a, p)| {
            unjudged(
                a,
                p,
                "not judged: interrupted before its turn; run the audit again",
            )
        },
    )
    .await
}

/// Describe one listed resource with its account's client for its Region.
async fn describe(
    clients: &BTreeMap<(String, String), Arc<ServiceClients>>,
    label: String,
    p: Pending,
) -> Resource {
    match p {
        Pending::Done(r) => r,
        Pending::S3Bucket { name, region } => match clients.get(&(label, region.clone())) {
            Some(c) => s3::describe(c, &name).await,
            None => s3::outside(&name, &region),
        },
        Pending::DynamoDbTable { name, region } => match clients.get(&(label, region.clone())) {
            Some(c) => dynamodb::describe(c, &name).await,
            None => listing_failed(
                ResourceType::DynamoDbTable,
                &region,
                "tables",
                "no client".into(),
            ),
        },
    }
}

/// Judge one described resource: resolve the key it names through
/// `resolver` (cached per key and Region) and apply [`judge`] under `policy`.
/// The one path from a [`Resource`] to a [`Finding`], shared by `audit` and
/// the AWS Config rule.
pub async fn finding(
    account: Option<String>,
    r: &Resource,
    resolver: &KeyResolver,
    policy: &Policy,
) -> Finding {
    let (facts, key_reference) = match &r.encryption {
        Encryption::Kms { key_ref } => (
            Some(
                resolver
                    .resolve_for(account.as_deref(), &r.region, key_ref)
                    .await,
            ),
            Some(key_ref.clone()),
        ),
        Encryption::AwsManagedDefault { alias } => (None, Some(alias.clone())),
        _ => (None, None),
    };
    let judged = judge(
        &r.encryption,
        facts.as_ref().map(|f| f.as_ref().map_err(String::as_str)),
        policy,
    );
    Finding {
        account,
        resource_type: r.kind,
        region: r.region.clone(),
        resource: r.name.clone(),
        arn: r.arn.clone(),
        config_id: r.config_id.clone(),
        verdict: judged.verdict,
        reason: judged.reason,
        key_reference,
        key_arn: facts.and_then(|f| f.ok()).map(|k| k.arn),
        detail: judged.detail,
        remediation: judged.reason.remediation().into(),
    }
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A table grouped by verdict, then the summary line.
    Table,
    /// The [`Report`] as JSON.
    Json,
    /// One CSV row per finding, with a header ([`CSV_HEADER`]).
    Csv,
}

/// The CSV header.
pub const CSV_HEADER: &str =
    "resource_type,region,resource,arn,verdict,reason,key_reference,key_arn,detail,remediation,account";

/// A CSV field: quoted, quotes doubled, and a leading `= + - @` defused
/// (names and messages come from other accounts' resources).
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The report as text in `format`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_default(),
        Format::Csv => {
            let mut out = String::from(CSV_HEADER);
            out.push('\n');
            for f in &report.findings {
                let row = [
                    f.resource_type.as_str(),
                    &f.region,
                    &f.resource,
                    f.arn.as_deref().unwrap_or(""),
                    f.verdict.as_str(),
                    f.reason.as_str(),
                    f.key_reference.as_deref().unwrap_or(""),
                    f.key_arn.as_deref().unwrap_or(""),
                    &f.detail,
                    &f.remediation,
                    f.account.as_deref().unwrap_or(""),
                ]
                .map(csv_field)
                .join(",");
                out.push_str(&row);
                out.push('\n');
            }
            out
        }
        Format::Table => {
            let mut out = String::new();
            let mut current = None;
            for f in &report.findings {
                if current != Some(f.verdict) {
                    current = Some(f.verdict);
                    let n = report
                        .findings
                        .iter()
                        .filter(|g| g.verdict == f.verdict)
                        .count();
                    out.push_str(&format!("\n{} ({n})\n", f.verdict.as_str()));
                    out.push_str(&format!(
                        "  {:<22} {:<14} {:<32} {:<34} KEY\n",
                        "TYPE", "REGION", "RESOURCE", "REASON"
                    ));
                }
                out.push_str(&format!(
                    "  {:<22} {:<14} {:<32} {:<34} {}\n      {}\n      -> {}\n",
                    f.resource_type.as_str(),
                    f.region,
                    match &f.account {
                        Some(a) => format!("{a}/{}", f.resource),
                        None => f.resource.clone(),
                    },
                    f.reason.as_str(),
                    f.key_arn
                        .as_deref()
                        .or(f.key_reference.as_deref())
                        .unwrap_or("-"),
                    f.detail,
                    f.remediation
                ));
            }
            out.push_str(&format!("\n{}\n", report.summary.line()));
            out
        }
    }
}

/// `byok-bastion audit`'s arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct AuditArgs {
    /// Regions to audit (comma-separated or repeated; default: the configured Region).
    #[arg(long = "regions", value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Key material older than this many days is NON_COMPLIANT.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(0..=36500))]
    pub max_age_days: i64,
    /// Print CSV on stdout (one row per resource, with a header).
    #[arg(long)]
    pub csv: bool,
    /// Resources described at the same time.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Publish one ASFF finding per resource to Security Hub (in its account
    /// and Region), and archive earlier ones of resources no longer seen.
    #[arg(long)]
    pub security_hub: bool,
    /// Accept customer keys whose material KMS generated (Origin AWS_KMS):
    /// by default only imported (EXTERNAL) material is compliant.
    #[arg(long)]
    pub allow_kms_generated: bool,
    /// Which accounts.
    #[command(flatten)]
    pub accounts: accounts::AccountArgs,
}

/// Publish `inv`'s findings to Security Hub, Region by Region, in the account
/// of the credentials.
pub async fn publish(inv: &Inventory) -> Result<Vec<securityhub::PublishSummary>, BastionError> {
    let mut out = Vec::new();
    for ((_, region), c) in inv.clients.iter() {
        let account = match &c.account {
            Some(a) => a.clone(),
            None => securityhub::caller_account(&c.sts).await?,
        };
        let mine: Vec<&Finding> = inv
            .report
            .findings
            .iter()
            .filter(|f| &f.region == region && f.account == c.account)
            .collect();
        out.push(securityhub::publish(&c.securityhub, &account, region, &mine).await?);
    }
    Ok(out)
}

/// Run `byok-bastion audit` and print the report (`json`: the global
/// `--json`); [`BastionError::NonCompliant`] (exit code 3) when any resource
/// is NON_COMPLIANT.
pub async fn main(
    args: &AuditArgs,
    regions: Arc<Regions>,
    profile: Option<&str>,
    json: bool,
) -> Result<(), BastionError> {
    let format = match (json, args.csv) {
        (true, true) => return Err(super::errors::UsageError::JsonAndCsv.into()),
        (true, false) => Format::Json,
        (false, true) => Format::Csv,
        (false, false) => Format::Table,
    };
    let mut inv = inventory(
        regions,
        profile,
        &AuditOptions::of(
            &args.regions,
            args.max_age_days,
            args.jobs,
            args.allow_kms_generated,
            &args.accounts,
        ),
    )
    .await?;
    // A Security Hub failure is reported after the audit's own output.
    let mut hub_error = None;
    if args.security_hub {
        match publish(&inv).await {
            Ok(published) => {
                for p in &published {
                    eprintln!(
                        "Security Hub {} {}: {} created, {} updated, {} archived (resource gone), in {} call(s)",
                        p.account, p.region, p.created, p.updated, p.archived_vanished, p.calls
                    );
                }
                inv.report.security_hub = Some(published);
            }
            Err(e) => hub_error = Some(e),
        }
    }
    let report = inv.report;
    print!("{}", render(&report, format));
    if format == Format::Json {
        println!();
    }
    if format != Format::Table {
        eprintln!("{}", report.summary.line());
    }
    if let Some(e) = hub_error {
        return Err(e);
    }
    match report.summary.non_compliant {
        0 => Ok(()),
        n => Err(BastionError::NonCompliant(n)),
    }
}

#[cfg(test)]
mod tests;
