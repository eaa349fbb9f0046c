//! `byok-bastion repoint`: move the resources that still pin a replaced key
//! (audit reason `KEY_REPLACED`) to the key that replaced it.
//!
//! The audit runs first; for every KEY_REPLACED finding the replacement is
//! taken from this bastion's own record of the alias move (state directory),
//! else from the old key's `byok:replaced-by` tag, followed to its end, and it
//! must itself be judged COMPLIANT by the audit's [`judge`]. Then, per type:
//!
//! * S3: PutBucketEncryption with the same algorithm (`aws:kms` or
//!   `aws:kms:dsse`) and the same `BucketKeyEnabled`, naming the new key's ARN;
//! * DynamoDB: UpdateTable `SSESpecification {Enabled, KMS, new key ARN}`;
//! * RDS: a database cannot change its key in place: the snapshot, copy with
//!   the new key, restore and switch-over commands are printed, never run.
//!
//! Dry run unless `--apply`. Each resource is read again just before it is
//! changed (skipped if it moved since the audit) and after (the change counts
//! only if the service reports the new key).

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_sdk_dynamodb::types::{SseSpecification, SseStatus, SseType};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule,
};
use serde::Serialize;

use super::audit::{
    inventory, judge, sdk_error, AuditOptions, Encryption, Finding, Inventory, KeyResolver, Reason,
    ResourceType, ServiceClients, Verdict,
};
use super::client::key_id_of;
use super::errors::BastionError;
use super::regions::{region_of, Regions};
use super::state::StateDir;

/// Why `repoint` could not run at all (per-resource problems are reported in
/// the [`Change`] instead).
#[derive(Debug, thiserror::Error)]
pub enum RepointError {
    /// Some changes were attempted and failed (exit code 1).
    #[error("{failed} change(s) failed (see the log above: each says why); nothing else was changed for them. Fix the cause and run `byok-bastion repoint --apply` again: changes already made are not repeated")]
    ChangesFailed {
        /// How many.
        failed: usize,
    },
    /// The state directory could not be read.
    #[error("cannot read this bastion's alias-move records: {0}; check --state-dir (the same one `move-alias` used)")]
    State(#[from] super::state::StateError),
}

/// Where the replacement key came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplacementSource {
    /// This bastion's record of `move-alias` (state directory), whose alias
    /// still points to the replacement.
    BastionRecord,
    /// The old key's `byok:replaced-by` tag (written by a `move-alias`,
    /// perhaps of another bastion).
    ReplacedByTag,
}

/// What happened (or would happen) to one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Dry run: this change would be made with `--apply`.
    Planned,
    /// Made, and the service now reports the new key.
    Applied,
    /// Attempted and failed, or made but not reported back.
    Failed,
    /// RDS: the procedure is printed, to be run by people.
    Manual,
    /// Not changed; the detail says why.
    Skipped,
}

/// One resource's change, with before and after.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    /// The resource's account (`--role-arn`), if not the bastion's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The resource type.
    pub resource_type: ResourceType,
    /// The Region.
    pub region: String,
    /// The resource's name.
    pub resource: String,
    /// What happened.
    pub status: Status,
    /// The API call made (or to be made), or `procedure` for RDS.
    pub action: String,
    /// The replaced key's ARN.
    pub old_key: Option<String>,
    /// The replacement key's ARN.
    pub new_key: Option<String>,
    /// Where the replacement came from.
    pub source: Option<ReplacementSource>,
    /// The encryption settings before (as the service reported them just before).
    pub before: Option<serde_json::Value>,
    /// The encryption settings after (as the service reported them after the
    /// change; the intended ones in a dry run).
    pub after: Option<serde_json::Value>,
    /// Why, or what was seen.
    pub detail: String,
    /// RDS: the commands to run, in order (comments start with `#`).
    pub commands: Vec<String>,
}

/// The result of a `repoint` run.
#[derive(Clone, Debug, Serialize)]
pub struct RepointReport {
    /// Whether changes were made (`--apply`) or only shown.
    pub applied: bool,
    /// KEY_REPLACED findings the audit gave.
    pub replaced_findings: usize,
    /// Every change, in the audit's order.
    pub changes: Vec<Change>,
}

/// `byok-bastion repoint`'s arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct RepointArgs {
    /// Regions to audit and repoint (comma-separated or repeated; default: the configured Region).
    #[arg(long = "regions", value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Make the changes (default: only show them).
    #[arg(long)]
    pub apply: bool,
    /// The replacement key must hold material younger than this many days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(0..=36500))]
    pub max_age_days: i64,
    /// Resources described at the same time during the audit.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// With --apply, also make changes whose replacement is known only from the
    /// old key's byok:replaced-by tag (a move-alias by another bastion). Anyone
    /// allowed kms:TagResource on the old key can write that tag: check the
    /// replacement key first.
    #[arg(long)]
    pub trust_tags: bool,
    /// Accept resources (and replacement keys) whose customer key has
    /// KMS-generated material (Origin AWS_KMS), as `audit --allow-kms-generated`.
    #[arg(long)]
    pub allow_kms_generated: bool,
    /// Which accounts.
    #[command(flatten)]
    pub accounts: super::audit::accounts::AccountArgs,
}

/// The replacement of `old` (a key ARN, in `region`): this bastion's record
/// first, else the `byok:replaced-by` tag, followed while the replacement is
/// itself replaced (at most 8 steps). `Err` says why there is none.
pub async fn replacement(
    resolver: &KeyResolver,
    state: &StateDir,
    region: &str,
    old: &str,
) -> Result<(String, ReplacementSource), String> {
    let region = region_of(old).unwrap_or(region).to_string();
    let mut current = old.to_string();
    // The weakest link names the chain: one hop known only from a tag makes
    // the whole replacement tag-sourced.
    let mut source = ReplacementSource::BastionRecord;
    let mut hops = 0;
    let mut seen = BTreeSet::new();
    for _ in 0..8 {
        if !seen.insert(key_id_of(&current).to_string()) {
            return Err(format!(
                "the replacement chain from {old} loops at {current}"
            ));
        }
        let facts = resolver.resolve(&region, &current).await?;
        let recorded = state
            .moves_replacing(key_id_of(&facts.arn))
            .map_err(|e| format!("cannot read the alias-move records: {e}"))?
            .into_iter()
            .filter(|m| m.region == region)
            .max_by(|a, b| a.moved_at.cmp(&b.moved_at));
        let next = match (recorded, &facts.replaced_by) {
            (Some(m), _) => {
                let new = resolver.resolve(&region, &m.new_key).await?;
                if !new.aliases.contains(&m.alias) {
                    return Err(format!(
                        "this bastion moved {} from {} to {}, but the alias no longer points there: check the alias (ListAliases) before repointing",
                        m.alias, facts.arn, new.arn
                    ));
                }
                Some((new.arn, ReplacementSource::BastionRecord))
            }
            (None, Some(tag)) => {
                let owner = super::client::account_of(&facts.arn);
                let new = resolver.resolve_for(owner, &region, tag).await?;
                Some((new.arn, ReplacementSource::ReplacedByTag))
            }
            (None, None) => None,
        };
        match next {
            Some((arn, hop)) => {
                if hop == ReplacementSource::ReplacedByTag {
                    source = ReplacementSource::ReplacedByTag;
                }
                hops += 1;
                current = arn;
            }
            None if hops == 0 => {
                return Err(format!(
                    "no replacement known for {old}: no alias move recorded by this bastion and no byok:replaced-by tag; point the resource at the alias's current key by hand"
                ))
            }
            None => return Ok((current, source)),
        }
    }
    Err(format!(
        "the replacement chain from {old} is longer than 8 keys"
    ))
}

/// Quote `s` for a POSIX shell (resource names come from other accounts).
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// An RDS identifier derived from `base` with `suffix`, within RDS's 63
/// characters (letters, digits, hyphens; no double or trailing hyphen).
fn derived_id(base: &str, suffix: &str) -> String {
    let room = 63usize.saturating_sub(suffix.len() + 1);
    let head: String = base.chars().take(room).collect();
    let head = head.trim_end_matches('-');
    format!("{head}-{suffix}")
}

/// What the procedure needs to know about a DB instance to restore it alike.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceShape {
    /// `--db-instance-class`.
    pub class: Option<String>,
    /// `--db-subnet-group-name`.
    pub subnet_group: Option<String>,
    /// `--vpc-security-group-ids`.
    pub security_groups: Vec<String>,
    /// `--db-parameter-group-name`.
    pub parameter_group: Option<String>,
    /// `--multi-az`.
    pub multi_az: Option<bool>,
}

/// The commands that move DB instance `id` (in `region`) to `new_key`:
/// snapshot, copy with the new key, restore alike, switch over by renaming.
/// `stamp` (`YYYYMMDD`) names the snapshots. Never run by the bastion.
pub fn instance_procedure(
    region: &str,
    id: &str,
    new_key: &str,
    shape: &InstanceShape,
    stamp: &str,
) -> Vec<String> {
    let q = sh_quote;
    let r = q(region);
    let snap = derived_id(id, &format!("byok-{stamp}"));
    let copy = derived_id(id, &format!("byok-{stamp}-rekeyed"));
    let new_id = derived_id(id, "rekeyed");
    let old_id = derived_id(id, "old");
    let mut restore = format!(
        "aws rds restore-db-instance-from-db-snapshot --region {r} --db-instance-identifier {} --db-snapshot-identifier {}",
        q(&new_id),
        q(&copy)
    );
    if let Some(c) = &shape.class {
        restore.push_str(&format!(" --db-instance-class {}", q(c)));
    }
    if let Some(g) = &shape.subnet_group {
        restore.push_str(&format!(" --db-subnet-group-name {}", q(g)));
    }
    if !shape.security_groups.is_empty() {
        restore.push_str(" --vpc-security-group-ids");
        for g in &shape.security_groups {
            restore.push_str(&format!(" {}", q(g)));
        }
    }
    if let Some(p) = &shape.parameter_group {
        restore.push_str(&format!(" --db-parameter-group-name {}", q(p)));
    }
    match shape.multi_az {
        Some(true) => restore.push_str(" --multi-az"),
        Some(false) => restore.push_str(" --no-multi-az"),
        None => {}
    }
    vec![
        format!("# 1. Stop writes to {id} (data written after the snapshot is not copied)."),
        format!(
            "aws rds create-db-snapshot --region {r} --db-instance-identifier {} --db-snapshot-identifier {}",
            q(id),
            q(&snap)
        ),
        format!("aws rds wait db-snapshot-available --region {r} --db-snapshot-identifier {}", q(&snap)),
        "# 2. Copy the snapshot, re-encrypting it under the new key.".into(),
        format!(
            "aws rds copy-db-snapshot --region {r} --source-db-snapshot-identifier {} --target-db-snapshot-identifier {} --kms-key-id {} --copy-tags",
            q(&snap),
            q(&copy),
            q(new_key)
        ),
        format!("aws rds wait db-snapshot-available --region {r} --db-snapshot-identifier {}", q(&copy)),
        "# 3. Restore a new instance from the copy (same class, network and parameters).".into(),
        restore,
        format!("aws rds wait db-instance-available --region {r} --db-instance-identifier {}", q(&new_id)),
        "# 4. Switch over: rename the old instance away and the new one into its name (clients keep the endpoint name).".into(),
        format!(
            "aws rds modify-db-instance --region {r} --db-instance-identifier {} --new-db-instance-identifier {} --apply-immediately",
            q(id),
            q(&old_id)
        ),
        format!("aws rds wait db-instance-available --region {r} --db-instance-identifier {}", q(&old_id)),
        format!(
            "aws rds modify-db-instance --region {r} --db-instance-identifier {} --new-db-instance-identifier {} --apply-immediately",
            q(&new_id),
            q(id)
        ),
        format!("aws rds wait db-instance-available --region {r} --db-instance-identifier {}", q(id)),
        format!("# 5. Check: `byok-bastion audit --regions {region}` shows {id} COMPLIANT; then delete {old_id} (its data is under the old key)."),
    ]
}

/// The commands that move DB cluster `id` to `new_key`: cluster snapshot,
/// copy with the new key, restore (engine `engine`), recreate the writer
/// `members` (identifier, class), switch over by renaming.
pub fn cluster_procedure(
    region: &str,
    id: &str,
    new_key: &str,
    engine: &str,
    members: &[(String, String)],
    stamp: &str,
) -> Vec<String> {
    let q = sh_quote;
    let r = q(region);
    let snap = derived_id(id, &format!("byok-{stamp}"));
    let copy = derived_id(id, &format!("byok-{stamp}-rekeyed"));
    let new_id = derived_id(id, "rekeyed");
    let old_id = derived_id(id, "old");
    let mut out = vec![
        format!("# 1. Stop writes to cluster {id} (data written after the snapshot is not copied)."),
        format!(
            "aws rds create-db-cluster-snapshot --region {r} --db-cluster-identifier {} --db-cluster-snapshot-identifier {}",
            q(id),
            q(&snap)
        ),
        format!("aws rds wait db-cluster-snapshot-available --region {r} --db-cluster-snapshot-identifier {}", q(&snap)),
        "# 2. Copy the cluster snapshot, re-encrypting it under the new key.".into(),
        format!(
            "aws rds copy-db-cluster-snapshot --region {r} --source-db-cluster-snapshot-identifier {} --target-db-cluster-snapshot-identifier {} --kms-key-id {} --copy-tags",
            q(&snap),
            q(&copy),
            q(new_key)
        ),
        format!("aws rds wait db-cluster-snapshot-available --region {r} --db-cluster-snapshot-identifier {}", q(&copy)),
        "# 3. Restore a new cluster from the copy, and its instances.".into(),
        format!(
            "aws rds restore-db-cluster-from-snapshot --region {r} --db-cluster-identifier {} --snapshot-identifier {} --engine {} --kms-key-id {}",
            q(&new_id),
            q(&copy),
            q(engine),
            q(new_key)
        ),
    ];
    for (member, class) in members {
        out.push(format!(
            "aws rds create-db-instance --region {r} --db-cluster-identifier {} --db-instance-identifier {} --db-instance-class {} --engine {}",
            q(&new_id),
            q(&derived_id(member, "rekeyed")),
            q(class),
            q(engine)
        ));
    }
    out.extend([
        format!("aws rds wait db-cluster-available --region {r} --db-cluster-identifier {}", q(&new_id)),
        "# 4. Switch over: rename the old cluster away and the new one into its name.".into(),
        format!(
            "aws rds modify-db-cluster --region {r} --db-cluster-identifier {} --new-db-cluster-identifier {} --apply-immediately",
            q(id),
            q(&old_id)
        ),
        format!(
            "aws rds modify-db-cluster --region {r} --db-cluster-identifier {} --new-db-cluster-identifier {} --apply-immediately",
            q(&new_id),
            q(id)
        ),
        format!("# 5. Check: `byok-bastion audit --regions {region}` shows {id} COMPLIANT; then delete {old_id} and its instances (their data is under the old key)."),
    ]);
    out
}

fn change(f: &Finding, status: Status, action: &str, detail: impl Into<String>) -> Change {
    Change {
        account: f.account.clone(),
        resource_type: f.resource_type,
        region: f.region.clone(),
        resource: f.resource.clone(),
        status,
        action: action.into(),
        old_key: f.key_arn.clone(),
        new_key: None,
        source: None,
        before: None,
        after: None,
        detail: detail.into(),
        commands: Vec::new(),
    }
}

/// The bucket's default-encryption rule as the audit reads it.
struct BucketRule {
    algorithm: ServerSideEncryption,
    key: Option<String>,
    bucket_key: Option<bool>,
}

impl BucketRule {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "SSEAlgorithm": self.algorithm.as_str(),
            "KMSMasterKeyID": self.key,
            "BucketKeyEnabled": self.bucket_key,
        })
    }
}

async fn bucket_rule(c: &ServiceClients, bucket: &str) -> Result<Option<BucketRule>, String> {
    match c.s3.get_bucket_encryption().bucket(bucket).send().await {
        Ok(r) => Ok(r
            .server_side_encryption_configuration()
            .and_then(|conf| conf.rules().first())
            .and_then(|rule| {
                rule.apply_server_side_encryption_by_default()
                    .map(|d| BucketRule {
                        algorithm: d.sse_algorithm().clone(),
                        key: d.kms_master_key_id().map(String::from),
                        bucket_key: rule.bucket_key_enabled(),
                    })
            })),
        Err(e) if e.code() == Some("ServerSideEncryptionConfigurationNotFoundError") => Ok(None),
        Err(e) => Err(sdk_error("S3", "GetBucketEncryption", &e)),
    }
}

async fn repoint_bucket(c: &ServiceClients, f: &Finding, new_key: &str, apply: bool) -> Change {
    let mut ch = change(f, Status::Skipped, "PutBucketEncryption", "");
    ch.new_key = Some(new_key.to_string());
    let rule = match bucket_rule(c, &f.resource).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            ch.detail = "the bucket has no default encryption any more: it changed since the audit; run repoint again".into();
            return ch;
        }
        Err(e) => {
            ch.status = Status::Failed;
            ch.detail = e;
            return ch;
        }
    };
    ch.before = Some(rule.json());
    if rule.key.as_deref() != f.key_reference.as_deref() {
        ch.detail = format!(
            "the bucket's key changed since the audit ({} now): run repoint again",
            rule.key.as_deref().unwrap_or("none")
        );
        return ch;
    }
    let wanted = BucketRule {
        algorithm: rule.algorithm.clone(),
        key: Some(new_key.to_string()),
        bucket_key: rule.bucket_key,
    };
    if !apply {
        ch.status = Status::Planned;
        ch.after = Some(wanted.json());
        ch.detail = format!(
            "would set the default encryption to {} with {new_key} (BucketKeyEnabled {} kept)",
            wanted.algorithm.as_str(),
            rule.bucket_key
                .map_or("unset".to_string(), |b| b.to_string())
        );
        return ch;
    }
    let conf = match s3_configuration(&wanted, new_key, rule.bucket_key) {
        Ok(c) => c,
        Err(e) => {
            ch.status = Status::Failed;
            ch.detail = e;
            return ch;
        }
    };
    if let Err(e) =
        c.s3.put_bucket_encryption()
            .bucket(&f.resource)
            .server_side_encryption_configuration(conf)
            .send()
            .await
    {
        ch.status = Status::Failed;
        ch.detail = format!(
            "{}; the bucket keeps its old key",
            sdk_error("S3", "PutBucketEncryption", &e)
        );
        return ch;
    }
    confirm_bucket(c, &f.resource, new_key, rule.bucket_key, &mut ch).await;
    ch
}

/// The default-encryption configuration `wanted` asks for, bucket key kept.
fn s3_configuration(
    wanted: &BucketRule,
    new_key: &str,
    bucket_key: Option<bool>,
) -> Result<ServerSideEncryptionConfiguration, String> {
    let by_default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(wanted.algorithm.clone())
        .kms_master_key_id(new_key)
        .build()
        .map_err(|e| format!("internal: cannot build the S3 rule: {e}"))?;
    ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(by_default)
                .set_bucket_key_enabled(bucket_key)
                .build(),
        )
        .build()
        .map_err(|e| format!("internal: cannot build the S3 configuration: {e}"))
}

/// Read the bucket's default encryption back: applied only if it reports
/// the new key and the bucket-key setting it had.
async fn confirm_bucket(
    c: &ServiceClients,
    bucket: &str,
    new_key: &str,
    bucket_key: Option<bool>,
    ch: &mut Change,
) {
    match bucket_rule(c, bucket).await {
        Ok(Some(after)) => {
            ch.after = Some(after.json());
            if after.key.as_deref() == Some(new_key) && after.bucket_key == bucket_key {
                ch.status = Status::Applied;
                ch.detail = format!("default encryption now {new_key}");
            } else {
                ch.status = Status::Failed;
                ch.detail = "PutBucketEncryption succeeded but the bucket does not report the new key: check it by hand".into();
            }
        }
        Ok(None) => {
            ch.status = Status::Failed;
            ch.detail = "PutBucketEncryption succeeded but the bucket reports no default encryption: check it by hand".into();
        }
        Err(e) => {
            ch.status = Status::Failed;
            ch.detail = format!("changed, but reading it back failed: {e}");
        }
    }
}

/// `(SSEType, KMSMasterKeyArn, status)` of a table.
async fn table_sse(c: &ServiceClients, table: &str) -> Result<serde_json::Value, String> {
    let r = c
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| sdk_error("DynamoDB", "DescribeTable", &e))?;
    let sse = r.table().and_then(|t| t.sse_description());
    Ok(serde_json::json!({
        "SSEType": sse.and_then(|s| s.sse_type()).map(SseType::as_str),
        "KMSMasterKeyArn": sse.and_then(|s| s.kms_master_key_arn()),
        "Status": sse.and_then(|s| s.status()).map(SseStatus::as_str),
    }))
}

async fn repoint_table(c: &ServiceClients, f: &Finding, new_key: &str, apply: bool) -> Change {
    let mut ch = change(f, Status::Skipped, "UpdateTable SSESpecification", "");
    ch.new_key = Some(new_key.to_string());
    let before = match table_sse(c, &f.resource).await {
        Ok(b) => b,
        Err(e) => {
            ch.status = Status::Failed;
            ch.detail = e;
            return ch;
        }
    };
    ch.before = Some(before.clone());
    if before["KMSMasterKeyArn"].as_str() != f.key_reference.as_deref() {
        ch.detail = format!(
            "the table's key changed since the audit ({} now): run repoint again",
            before["KMSMasterKeyArn"].as_str().unwrap_or("none")
        );
        return ch;
    }
    let wanted = serde_json::json!({"SSEType": "KMS", "KMSMasterKeyArn": new_key});
    if !apply {
        ch.status = Status::Planned;
        ch.after = Some(wanted);
        ch.detail = format!("would move the table to {new_key}");
        return ch;
    }
    let spec = SseSpecification::builder()
        .enabled(true)
        .sse_type(SseType::Kms)
        .kms_master_key_id(new_key)
        .build();
    if let Err(e) = c
        .dynamodb
        .update_table()
        .table_name(&f.resource)
        .sse_specification(spec)
        .send()
        .await
    {
        ch.status = Status::Failed;
        ch.detail = format!(
            "{}; the table keeps its old key",
            sdk_error("DynamoDB", "UpdateTable", &e)
        );
        return ch;
    }
    match table_sse(c, &f.resource).await {
        Ok(after) => {
            let now = after["KMSMasterKeyArn"].as_str().unwrap_or("");
            ch.status = if now == new_key || key_id_of(now) == key_id_of(new_key) {
                ch.detail = format!("table now on {new_key}");
                Status::Applied
            } else {
                ch.detail = format!("UpdateTable succeeded but the table reports {now:?}: check it by hand (a change may still be UPDATING)");
                Status::Failed
            };
            ch.after = Some(after);
        }
        Err(e) => {
            ch.status = Status::Failed;
            ch.detail = format!("changed, but reading it back failed: {e}");
        }
    }
    ch
}

async fn rds_procedure(c: &ServiceClients, f: &Finding, new_key: &str, stamp: &str) -> Change {
    let mut ch = change(f, Status::Manual, "procedure", "");
    ch.new_key = Some(new_key.to_string());
    ch.before = Some(serde_json::json!({"KmsKeyId": f.key_reference}));
    ch.after = Some(serde_json::json!({"KmsKeyId": new_key}));
    let valid = |id: &str| {
        !id.is_empty()
            && id.len() <= 63
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !valid(&f.resource) {
        ch.status = Status::Skipped;
        ch.detail = format!(
            "{:?} is not an RDS identifier (letters, digits, hyphens): no commands printed",
            f.resource
        );
        return ch;
    }
    match f.resource_type {
        ResourceType::RdsInstance => {
            let shape = instance_shape(c, &f.resource).await.unwrap_or_else(|e| {
                ch.detail = format!(
                    "{e} (the restore command below lacks the instance's class and network: add them)"
                );
                InstanceShape::default()
            });
            ch.commands = instance_procedure(&f.region, &f.resource, new_key, &shape, stamp);
        }
        _ => {
            let (engine, members) = cluster_shape(c, &f.resource).await.unwrap_or_else(|e| {
                ch.detail = format!("{e} (fill in ENGINE and the instances)");
                ("ENGINE".into(), Vec::new())
            });
            ch.commands =
                cluster_procedure(&f.region, &f.resource, new_key, &engine, &members, stamp);
        }
    }
    if ch.detail.is_empty() {
        ch.detail = "RDS cannot change a database's key in place: run the procedure below in a maintenance window (never run by byok-bastion)".into();
    }
    ch
}

/// What the restore command needs of a DB instance (class, network, parameter group).
async fn instance_shape(c: &ServiceClients, id: &str) -> Result<InstanceShape, String> {
    let r = c
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .map_err(|e| sdk_error("RDS", "DescribeDBInstances", &e))?;
    Ok(r.db_instances()
        .first()
        .map(|d| InstanceShape {
            class: d.db_instance_class().map(String::from),
            subnet_group: d
                .db_subnet_group()
                .and_then(|g| g.db_subnet_group_name())
                .map(String::from),
            security_groups: d
                .vpc_security_groups()
                .iter()
                .filter_map(|g| g.vpc_security_group_id().map(String::from))
                .collect(),
            parameter_group: d
                .db_parameter_groups()
                .first()
                .and_then(|p| p.db_parameter_group_name())
                .filter(|p| !p.starts_with("default."))
                .map(String::from),
            multi_az: d.multi_az(),
        })
        .unwrap_or_default())
}

/// A DB cluster's engine and its member instances with their classes.
async fn cluster_shape(
    c: &ServiceClients,
    id: &str,
) -> Result<(String, Vec<(String, String)>), String> {
    let r = c
        .rds
        .describe_db_clusters()
        .db_cluster_identifier(id)
        .send()
        .await
        .map_err(|e| sdk_error("RDS", "DescribeDBClusters", &e))?;
    let d = r.db_clusters().first();
    let engine = d.and_then(|d| d.engine()).unwrap_or("ENGINE").to_string();
    let mut members = Vec::new();
    for m in d.map(|d| d.db_cluster_members()).unwrap_or_default() {
        let Some(id) = m.db_instance_identifier() else {
            continue;
        };
        let class = instance_shape(c, id)
            .await
            .ok()
            .and_then(|s| s.class)
            .unwrap_or_else(|| "CLASS".into());
        members.push((id.to_string(), class));
    }
    Ok((engine, members))
}

/// Plan (and with `apply`, make) the changes for the KEY_REPLACED findings of
/// an audit; with `apply`, replacements known only from a tag are made only if
/// `trust_tags`.
pub async fn repoint_inventory(
    inv: &Inventory,
    state: &StateDir,
    apply: bool,
    trust_tags: bool,
) -> RepointReport {
    let stamp = {
        let d = inv.policy.now.date();
        format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
    };
    let replaced: Vec<&Finding> = inv
        .report
        .findings
        .iter()
        .filter(|f| f.reason == Reason::KeyReplaced)
        .collect();
    let mut changes = Vec::new();
    for f in &replaced {
        changes.push(repoint_one(inv, state, f, apply, trust_tags, &stamp).await);
    }
    RepointReport {
        applied: apply,
        replaced_findings: replaced.len(),
        changes,
    }
}

/// The change for one KEY_REPLACED finding: its replacement found and
/// checked, then planned, applied, or (RDS) the procedure printed.
async fn repoint_one(
    inv: &Inventory,
    state: &StateDir,
    f: &Finding,
    apply: bool,
    trust_tags: bool,
    stamp: &str,
) -> Change {
    let action = match f.resource_type {
        ResourceType::S3Bucket => "PutBucketEncryption",
        ResourceType::DynamoDbTable => "UpdateTable SSESpecification",
        ResourceType::RdsInstance | ResourceType::RdsCluster => "procedure",
    };
    let Some(old) = f.key_arn.as_deref() else {
        return change(
            f,
            Status::Skipped,
            action,
            "the audit did not resolve the key",
        );
    };
    let (new_key, source) = match replacement(&inv.resolver, state, &f.region, old).await {
        Ok(r) => r,
        Err(why) => return change(f, Status::Skipped, action, why),
    };
    if let Some(why) = refusal(inv, f, &new_key, source, apply && !trust_tags).await {
        let mut ch = change(f, Status::Skipped, action, why);
        ch.new_key = Some(new_key);
        ch.source = Some(source);
        return ch;
    }
    let client_key = (f.account.clone().unwrap_or_default(), f.region.clone());
    let Some(c) = inv.clients.get(&client_key) else {
        return change(f, Status::Skipped, action, "no client for this Region");
    };
    let mut ch = match f.resource_type {
        ResourceType::S3Bucket => repoint_bucket(c, f, &new_key, apply).await,
        ResourceType::DynamoDbTable => repoint_table(c, f, &new_key, apply).await,
        ResourceType::RdsInstance | ResourceType::RdsCluster => {
            rds_procedure(c, f, &new_key, stamp).await
        }
    };
    ch.source = Some(source);
    ch
}

/// Why the replacement must not be used: it is not compliant itself (the
/// same judge as any resource's key), or, when `tags_not_trusted`, it is
/// known only from a tag.
async fn refusal(
    inv: &Inventory,
    f: &Finding,
    new_key: &str,
    source: ReplacementSource,
    tags_not_trusted: bool,
) -> Option<String> {
    let target_region = region_of(new_key).unwrap_or(&f.region).to_string();
    let facts = inv
        .resolver
        .resolve_for(f.account.as_deref(), &target_region, new_key)
        .await;
    let verdict = judge(
        &Encryption::Kms {
            key_ref: new_key.to_string(),
        },
        Some(facts.as_ref().map_err(String::as_str)),
        &inv.policy,
    );
    if verdict.verdict != Verdict::Compliant {
        return Some(format!(
            "the replacement {new_key} is not compliant itself ({}: {}): fix it first",
            verdict.reason.as_str(),
            verdict.detail
        ));
    }
    if tags_not_trusted && source == ReplacementSource::ReplacedByTag {
        return Some(format!(
            "the replacement {new_key} is known only from the byok:replaced-by tag, which anyone allowed kms:TagResource on the old key can write; this bastion has no record of the alias move. Check the key, then run with --trust-tags (or move the alias from this bastion)"
        ));
    }
    None
}

/// Audit, then repoint (see the module documentation).
pub async fn repoint(
    regions: Arc<Regions>,
    profile: Option<&str>,
    state: &StateDir,
    args: &RepointArgs,
) -> Result<RepointReport, BastionError> {
    let inv = inventory(
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
    Ok(repoint_inventory(&inv, state, args.apply, args.trust_tags).await)
}

/// One line per change (and the RDS commands), for people.
pub fn render(r: &RepointReport) -> String {
    let mut out = String::new();
    for c in &r.changes {
        out.push_str(&format!(
            "{:<8} {} {} {}: {}\n",
            match c.status {
                Status::Planned => "PLANNED",
                Status::Applied => "APPLIED",
                Status::Failed => "FAILED",
                Status::Manual => "MANUAL",
                Status::Skipped => "SKIPPED",
            },
            c.resource_type.as_str(),
            c.region,
            match &c.account {
                Some(a) => format!("{a}/{}", c.resource),
                None => c.resource.clone(),
            },
            c.detail
        ));
        if let (Some(old), Some(new)) = (&c.old_key, &c.new_key) {
            out.push_str(&format!("         {old} -> {new}\n"));
        }
        if let Some(b) = &c.before {
            out.push_str(&format!("         before: {b}\n"));
        }
        if let Some(a) = &c.after {
            out.push_str(&format!("         after:  {a}\n"));
        }
        for cmd in &c.commands {
            out.push_str(&format!("    {cmd}\n"));
        }
    }
    let count = |s: Status| r.changes.iter().filter(|c| c.status == s).count();
    out.push_str(&format!(
        "{} KEY_REPLACED resource(s): {} applied, {} planned, {} manual (RDS), {} skipped, {} failed{}\n",
        r.replaced_findings,
        count(Status::Applied),
        count(Status::Planned),
        count(Status::Manual),
        count(Status::Skipped),
        count(Status::Failed),
        if r.applied { "" } else { " (dry run: add --apply to make the changes)" }
    ));
    out
}

/// Run `byok-bastion repoint`: print the changes (`json`: the report as
/// JSON); [`RepointError::ChangesFailed`] when an applied change failed.
pub async fn main(
    args: &RepointArgs,
    regions: Arc<Regions>,
    profile: Option<&str>,
    state: &StateDir,
    json: bool,
) -> Result<(), BastionError> {
    let report = repoint(regions, profile, state, args).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        eprint!(
            "{}",
            render(&report)
                .lines()
                .last()
                .map(|l| format!("{l}\n"))
                .unwrap_or_default()
        );
    } else {
        print!("{}", render(&report));
    }
    match report
        .changes
        .iter()
        .filter(|c| c.status == Status::Failed)
        .count()
    {
        0 => Ok(()),
        failed => Err(RepointError::ChangesFailed { failed }.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_names_the_account_and_logs_before_and_after() {
        let change = |account: Option<&str>, status| Change {
            account: account.map(String::from),
            resource_type: ResourceType::DynamoDbTable,
            region: "eu-west-1".into(),
            resource: "orders".into(),
            status,
            action: "UpdateTable SSESpecification".into(),
            old_key: Some("k1".into()),
            new_key: Some("k2".into()),
            source: Some(ReplacementSource::BastionRecord),
            before: Some(serde_json::json!({"KMSMasterKeyArn": "k1"})),
            after: Some(serde_json::json!({"KMSMasterKeyArn": "k2"})),
            detail: "table now on k2".into(),
            commands: Vec::new(),
        };
        let r = RepointReport {
            applied: true,
            replaced_findings: 2,
            changes: vec![
                change(Some("111122223333"), Status::Applied),
                change(None, Status::Failed),
            ],
        };
        let text = render(&r);
        assert!(
            text.contains(
                "APPLIED  AWS::DynamoDB::Table eu-west-1 111122223333/orders: table now on k2"
            ),
            "{text}"
        );
        assert!(
            text.contains("FAILED   AWS::DynamoDB::Table eu-west-1 orders:"),
            "{text}"
        );
        assert!(text.contains("         k1 -> k2\n"), "{text}");
        assert!(
            text.contains("before: {\"KMSMasterKeyArn\":\"k1\"}"),
            "{text}"
        );
        assert!(
            text.contains("after:  {\"KMSMasterKeyArn\":\"k2\"}"),
            "{text}"
        );
        assert!(
            text.trim_end().ends_with(
                "2 KEY_REPLACED resource(s): 1 applied, 0 planned, 0 manual (RDS), 0 skipped, 1 failed"
            ),
            "{text}"
        );
    }

    #[test]
    fn shell_quoting_defuses_names() {
        assert_eq!(sh_quote("orders-db"), "orders-db");
        assert_eq!(
            sh_quote("arn:aws:kms:us-east-1:111122223333:key/k2"),
            "arn:aws:kms:us-east-1:111122223333:key/k2"
        );
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("x';rm -rf /;'"), "'x'\\'';rm -rf /;'\\'''");
        assert_eq!(sh_quote("$(id)"), "'$(id)'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn derived_identifiers_fit_rds_limits() {
        assert_eq!(derived_id("orders-db", "rekeyed"), "orders-db-rekeyed");
        let long = "a".repeat(63);
        let d = derived_id(&long, "byok-20261202-rekeyed");
        assert_eq!(d.len(), 63);
        assert!(d.ends_with("-byok-20261202-rekeyed"));
        assert_eq!(derived_id("x---", "old"), "x-old");
    }

    #[test]
    fn instance_procedure_fills_in_every_command() {
        let shape = InstanceShape {
            class: Some("db.t3.micro".into()),
            subnet_group: Some("private".into()),
            security_groups: vec!["sg-1".into(), "sg-2".into()],
            parameter_group: None,
            multi_az: Some(false),
        };
        let k = "arn:aws:kms:eu-west-1:111122223333:key/k2";
        let p = instance_procedure("eu-west-1", "orders-db", k, &shape, "20261202");
        let cmds: Vec<&String> = p.iter().filter(|l| !l.starts_with('#')).collect();
        assert!(cmds
            .iter()
            .all(|c| c.starts_with("aws rds ") && c.contains("--region eu-west-1")));
        assert!(p.iter().any(|c| c == &format!(
            "aws rds copy-db-snapshot --region eu-west-1 --source-db-snapshot-identifier orders-db-byok-20261202 --target-db-snapshot-identifier orders-db-byok-20261202-rekeyed --kms-key-id {k} --copy-tags"
        )), "{p:#?}");
        assert!(p.iter().any(|c| c
            == "aws rds restore-db-instance-from-db-snapshot --region eu-west-1 --db-instance-identifier orders-db-rekeyed --db-snapshot-identifier orders-db-byok-20261202-rekeyed --db-instance-class db.t3.micro --db-subnet-group-name private --vpc-security-group-ids sg-1 sg-2 --no-multi-az"), "{p:#?}");
        // The switch-over renames the new instance into the old name last.
        let last_rename = p
            .iter()
            .rposition(|c| c.contains("--new-db-instance-identifier orders-db "))
            .unwrap();
        let first_rename = p
            .iter()
            .position(|c| c.contains("--new-db-instance-identifier orders-db-old"))
            .unwrap();
        assert!(first_rename < last_rename);
    }

    #[test]
    fn cluster_procedure_restores_with_the_new_key_and_members() {
        let k = "arn:aws:kms:us-east-1:111122223333:key/k2";
        let p = cluster_procedure(
            "us-east-1",
            "orders",
            k,
            "aurora-postgresql",
            &[("orders-1".into(), "db.r6g.large".into())],
            "20261202",
        );
        assert!(p
            .iter()
            .any(|c| c.starts_with("aws rds copy-db-cluster-snapshot ")
                && c.contains(&format!("--kms-key-id {k}"))));
        assert!(p.iter().any(
            |c| c.starts_with("aws rds restore-db-cluster-from-snapshot ")
                && c.contains("--engine aurora-postgresql")
        ));
        assert!(p.iter().any(|c| c.contains(
            "--db-instance-identifier orders-1-rekeyed --db-instance-class db.r6g.large"
        )));
    }
}
