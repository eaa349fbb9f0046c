//! The AWS Config custom rule (`byok-config-rule`, cargo feature
//! `config-rule`): the audit's judge, run by AWS Config through Lambda.
//!
//! AWS Config invokes the function with an event ([`ConfigEvent`]) whose
//! `invokingEvent` is one of:
//! - `ConfigurationItemChangeNotification`: the configuration item of one
//!   bucket, table, DB instance or DB cluster. Its encryption is read from the
//!   item ([`resource_of`]) and judged by [`audit::finding`], the audit's own
//!   path (same [`Policy`], same [`KeyResolver`]).
//! - `OversizedConfigurationItemChangeNotification`: only a summary. The
//!   resource is then described directly with the audit's describe calls
//!   (GetBucketEncryption, DescribeTable, DescribeDBInstances/Clusters), not
//!   fetched with GetResourceConfigHistory: the function then needs only the
//!   read permissions the audit already needs, and judges the resource as it
//!   is now rather than as Config last recorded it.
//! - `ScheduledNotification`: the audit's inventory of the function's
//!   account and Region; every resource is reported.
//!
//! A deleted resource (`ResourceDeleted`, `ResourceDeletedNotRecorded`) or an
//! event that left the rule's scope is NOT_APPLICABLE. Verdicts map to Config's
//! compliance types ([`Compliance`]); the reason code, detail and remediation
//! go into the `Annotation` (at most 256 characters). Evaluations are sent with
//! PutEvaluations, at most 100 per call, with the event's result token;
//! `TESTMODE` as the token sends them with `TestMode` (nothing is recorded),
//! as AWS's own rule kits do.

use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_sdk_config::types::{ComplianceType, Evaluation as SdkEvaluation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::audit::{
    self, dynamodb, rds, s3, AuditOptions, Encryption, Finding, KeyResolver, Policy, Resource,
    ResourceType, ServiceClients, Verdict,
};
use super::batch::StopFlag;
use super::errors::BastionError;
use super::regions::Regions;

/// Config's limit on an evaluation's `Annotation`.
pub const MAX_ANNOTATION_CHARS: usize = 256;
/// Config's limit on evaluations per PutEvaluations call.
pub const MAX_EVALUATIONS_PER_CALL: usize = 100;
/// The result token that asks for `TestMode` (nothing is recorded).
pub const TEST_MODE_TOKEN: &str = "TESTMODE";
/// The default maximum material age, as `byok-bastion audit --max-age-days`.
pub const DEFAULT_MAX_AGE_DAYS: i64 = 365;

/// Why an AWS Config event could not be evaluated or reported.
#[derive(Debug, thiserror::Error)]
pub enum ConfigRuleError {
    /// The Lambda event is not shaped like an AWS Config rule event.
    #[error("the Lambda event is not an AWS Config rule event ({0}); invoke this function only from an AWS Config custom rule (see deploy/config-rule.yaml)")]
    NotAConfigEvent(#[source] serde_json::Error),
    /// `invokingEvent` is not a JSON document of a known shape.
    #[error("the event's invokingEvent is not a Config notification ({0}); invoke this function only from an AWS Config custom rule")]
    InvokingEvent(#[source] serde_json::Error),
    /// A message type this rule does not evaluate.
    #[error("invokingEvent has messageType {0:?}, which this rule does not evaluate; set the rule's Source.SourceDetails to ConfigurationItemChangeNotification, OversizedConfigurationItemChangeNotification and ScheduledNotification (deploy/config-rule.yaml does)")]
    UnsupportedMessage(String),
    /// A required member of the notification is missing.
    #[error("the {message} lacks {field}; this is not a notification AWS Config sends: check what invoked the function")]
    MissingField {
        /// The message type.
        message: &'static str,
        /// The missing member.
        field: &'static str,
    },
    /// A time that is not RFC 3339.
    #[error(
        "{field} is {value:?}, not an RFC 3339 time; this is not a notification AWS Config sends"
    )]
    BadTime {
        /// The member.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// `ruleParameters` is not a JSON object.
    #[error("the rule's parameters are not a JSON object ({0}); set the Config rule's InputParameters to an object such as {{\"maxAgeDays\": \"365\", \"requireExternal\": \"true\"}}")]
    ParametersNotObject(String),
    /// A parameter this rule does not take (a typo would otherwise be ignored).
    #[error("unknown rule parameter {0:?}; this rule takes maxAgeDays and requireExternal: fix the Config rule's InputParameters")]
    UnknownParameter(String),
    /// `maxAgeDays` is not a whole number of days in range.
    #[error("rule parameter maxAgeDays is {0}; give a whole number of days from 0 to 36500 in the Config rule's InputParameters")]
    MaxAgeDays(String),
    /// `requireExternal` is not a boolean.
    #[error("rule parameter requireExternal is {0}; give \"true\" or \"false\" in the Config rule's InputParameters")]
    RequireExternal(String),
    /// The audit's clients or inventory failed.
    #[error(transparent)]
    Audit(#[from] BastionError),
    /// PutEvaluations itself failed.
    #[error("PutEvaluations failed: {0}; check that the function's role allows config:PutEvaluations and that the result token is this invocation's")]
    PutEvaluations(String),
    /// AWS Config refused some evaluations.
    #[error("AWS Config refused {failed} of {sent} evaluation(s) (first: {first}); check the resource types and IDs in the function's log")]
    Refused {
        /// How many were refused.
        failed: usize,
        /// How many were sent.
        sent: usize,
        /// The first refused resource.
        first: String,
    },
    /// An evaluation the SDK could not build (a missing required member).
    #[error("could not build an evaluation for {resource}: {why}; report this as a bug")]
    Build {
        /// The resource.
        resource: String,
        /// The SDK's message.
        why: String,
    },
    /// A periodic run could not list some resources; the others were reported.
    #[error("{count} listing(s) failed in the periodic run, first: {first}; the other resources were reported: grant the function's role the listing permissions in deploy/config-rule.yaml")]
    ListingFailed {
        /// How many listings failed.
        count: usize,
        /// The first failure.
        first: String,
    },
}

impl From<ConfigRuleError> for lambda_runtime::Diagnostic {
    fn from(e: ConfigRuleError) -> Self {
        let kind = match &e {
            ConfigRuleError::NotAConfigEvent(_)
            | ConfigRuleError::InvokingEvent(_)
            | ConfigRuleError::UnsupportedMessage(_)
            | ConfigRuleError::MissingField { .. }
            | ConfigRuleError::BadTime { .. } => "InvalidEvent",
            ConfigRuleError::ParametersNotObject(_)
            | ConfigRuleError::UnknownParameter(_)
            | ConfigRuleError::MaxAgeDays(_)
            | ConfigRuleError::RequireExternal(_) => "InvalidRuleParameters",
            ConfigRuleError::Audit(_) | ConfigRuleError::ListingFailed { .. } => "AuditFailed",
            ConfigRuleError::PutEvaluations(_)
            | ConfigRuleError::Refused { .. }
            | ConfigRuleError::Build { .. } => "PutEvaluationsFailed",
        };
        lambda_runtime::Diagnostic {
            error_type: kind.to_string(),
            error_message: e.to_string(),
        }
    }
}

/// The event AWS Config sends a custom rule's Lambda function.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigEvent {
    /// The notification, as a JSON string.
    pub invoking_event: String,
    /// The rule's `InputParameters`, as a JSON string.
    #[serde(default)]
    pub rule_parameters: Option<String>,
    /// The token PutEvaluations must carry.
    pub result_token: String,
    /// Whether the resource left the rule's scope.
    #[serde(default)]
    pub event_left_scope: bool,
    /// The account the rule runs in.
    #[serde(default)]
    pub account_id: Option<String>,
    /// The rule's name.
    #[serde(default)]
    pub config_rule_name: Option<String>,
}

impl ConfigEvent {
    /// The event from the Lambda payload.
    pub fn parse(payload: Value) -> Result<Self, ConfigRuleError> {
        serde_json::from_value(payload).map_err(ConfigRuleError::NotAConfigEvent)
    }

    /// Whether PutEvaluations is to run in `TestMode`.
    pub fn test_mode(&self) -> bool {
        self.result_token == TEST_MODE_TOKEN
    }
}

/// The rule's parameters: the audit's [`Policy`] knobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleParameters {
    /// `maxAgeDays`: key material older than this is NON_COMPLIANT (default 365).
    pub max_age_days: i64,
    /// `requireExternal`: only imported (EXTERNAL) material is compliant (default true).
    pub require_external: bool,
}

impl Default for RuleParameters {
    fn default() -> Self {
        RuleParameters {
            max_age_days: DEFAULT_MAX_AGE_DAYS,
            require_external: true,
        }
    }
}

impl RuleParameters {
    /// Parse `ruleParameters` (absent or empty: the defaults). Config passes
    /// `InputParameters` values as strings; JSON numbers and booleans are
    /// accepted too.
    pub fn parse(raw: Option<&str>) -> Result<Self, ConfigRuleError> {
        let mut p = RuleParameters::default();
        let raw = raw.map(str::trim).unwrap_or("");
        if raw.is_empty() {
            return Ok(p);
        }
        let v: Value = serde_json::from_str(raw)
            .map_err(|e| ConfigRuleError::ParametersNotObject(e.to_string()))?;
        let Value::Object(map) = v else {
            return Err(ConfigRuleError::ParametersNotObject(format!(
                "got {}",
                kind_of(&v)
            )));
        };
        for (k, v) in &map {
            match k.as_str() {
                "maxAgeDays" => {
                    let n = match v {
                        Value::String(s) => s.trim().parse::<i64>().ok(),
                        Value::Number(n) => n.as_i64(),
                        _ => None,
                    };
                    p.max_age_days = n
                        .filter(|n| (0..=36500).contains(n))
                        .ok_or_else(|| ConfigRuleError::MaxAgeDays(v.to_string()))?;
                }
                "requireExternal" => {
                    p.require_external = match v {
                        Value::Bool(b) => *b,
                        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => true,
                        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => false,
                        _ => return Err(ConfigRuleError::RequireExternal(v.to_string())),
                    }
                }
                other => return Err(ConfigRuleError::UnknownParameter(other.to_string())),
            }
        }
        Ok(p)
    }

    /// The audit's policy under these parameters, judged at `now`.
    pub fn policy(&self, now: OffsetDateTime) -> Policy {
        Policy {
            max_age_days: self.max_age_days,
            require_external: self.require_external,
            now,
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A configuration item (or, for an oversized one, its summary).
#[derive(Clone, Debug)]
pub struct Item {
    /// `AWS::S3::Bucket`, …
    pub resource_type: String,
    /// The ID Config knows the resource by (evaluations name it).
    pub resource_id: String,
    /// The resource's name, if the item has one.
    pub resource_name: Option<String>,
    /// The resource's ARN.
    pub arn: Option<String>,
    /// Its Region.
    pub region: String,
    /// Its account.
    pub account: Option<String>,
    /// `OK`, `ResourceDiscovered`, `ResourceDeleted`, …
    pub status: String,
    /// When Config captured it (the evaluation's ordering timestamp).
    pub captured_at: OffsetDateTime,
    /// `configuration` (empty for a summary).
    pub configuration: Value,
    /// `supplementaryConfiguration` (empty for a summary).
    pub supplementary: Value,
}

impl Item {
    /// Whether Config says the resource is gone.
    pub fn deleted(&self) -> bool {
        matches!(
            self.status.as_str(),
            "ResourceDeleted" | "ResourceDeletedNotRecorded"
        )
    }

    /// The name the services know it by (resourceName, else resourceId).
    pub fn name(&self) -> &str {
        self.resource_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.resource_id)
    }
}

/// What AWS Config asks the rule to evaluate.
#[derive(Clone, Debug)]
pub enum Invocation {
    /// One resource's configuration item.
    Change(Item),
    /// One resource's oversized item: only the summary.
    Oversized(Item),
    /// A periodic run over the account and Region.
    Scheduled {
        /// `notificationCreationTime`.
        at: OffsetDateTime,
        /// `awsAccountId`.
        account: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNotification {
    message_type: Option<String>,
    configuration_item: Option<RawItem>,
    configuration_item_summary: Option<RawItem>,
    notification_creation_time: Option<String>,
    aws_account_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawItem {
    resource_type: Option<String>,
    resource_id: Option<String>,
    resource_name: Option<String>,
    #[serde(rename = "ARN")]
    arn: Option<String>,
    aws_region: Option<String>,
    aws_account_id: Option<String>,
    configuration_item_status: Option<String>,
    configuration_item_capture_time: Option<String>,
    #[serde(default)]
    configuration: Value,
    #[serde(default)]
    supplementary_configuration: Value,
}

fn time_of(field: &'static str, value: &str) -> Result<OffsetDateTime, ConfigRuleError> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|_| ConfigRuleError::BadTime {
        field,
        value: value.chars().take(64).collect(),
    })
}

impl RawItem {
    fn into_item(self, message: &'static str) -> Result<Item, ConfigRuleError> {
        let need = |v: Option<String>, field| {
            v.filter(|s| !s.is_empty())
                .ok_or(ConfigRuleError::MissingField { message, field })
        };
        let captured = need(
            self.configuration_item_capture_time,
            "configurationItemCaptureTime",
        )?;
        Ok(Item {
            resource_type: need(self.resource_type, "resourceType")?,
            resource_id: need(self.resource_id, "resourceId")?,
            resource_name: self.resource_name,
            arn: self.arn,
            region: need(self.aws_region, "awsRegion")?,
            account: self.aws_account_id,
            status: need(self.configuration_item_status, "configurationItemStatus")?,
            captured_at: time_of("configurationItemCaptureTime", &captured)?,
            configuration: self.configuration,
            supplementary: self.supplementary_configuration,
        })
    }
}

impl Invocation {
    /// Parse `invokingEvent`.
    pub fn parse(invoking_event: &str) -> Result<Self, ConfigRuleError> {
        let raw: RawNotification =
            serde_json::from_str(invoking_event).map_err(ConfigRuleError::InvokingEvent)?;
        match raw.message_type.as_deref() {
            Some("ConfigurationItemChangeNotification") => {
                const M: &str = "ConfigurationItemChangeNotification";
                let item = raw
                    .configuration_item
                    .ok_or(ConfigRuleError::MissingField {
                        message: M,
                        field: "configurationItem",
                    })?;
                Ok(Invocation::Change(item.into_item(M)?))
            }
            Some("OversizedConfigurationItemChangeNotification") => {
                const M: &str = "OversizedConfigurationItemChangeNotification";
                let item = raw
                    .configuration_item_summary
                    .ok_or(ConfigRuleError::MissingField {
                        message: M,
                        field: "configurationItemSummary",
                    })?;
                Ok(Invocation::Oversized(item.into_item(M)?))
            }
            Some("ScheduledNotification") => {
                let at = raw
                    .notification_creation_time
                    .ok_or(ConfigRuleError::MissingField {
                        message: "ScheduledNotification",
                        field: "notificationCreationTime",
                    })?;
                Ok(Invocation::Scheduled {
                    at: time_of("notificationCreationTime", &at)?,
                    account: raw.aws_account_id,
                })
            }
            Some(other) => Err(ConfigRuleError::UnsupportedMessage(other.to_string())),
            None => Err(ConfigRuleError::MissingField {
                message: "invokingEvent",
                field: "messageType",
            }),
        }
    }
}

/// The resource type an item names, if the audit judges that type.
pub fn resource_type(name: &str) -> Option<ResourceType> {
    [
        ResourceType::S3Bucket,
        ResourceType::DynamoDbTable,
        ResourceType::RdsInstance,
        ResourceType::RdsCluster,
    ]
    .into_iter()
    .find(|t| t.as_str() == name)
}

/// `v[name]`, ignoring ASCII case (Config's item members are camelCase
/// renderings of the services' names: `dBInstanceIdentifier`, `ssedescription`).
fn member<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// A member that may be a JSON document encoded as a string (Config
/// stringifies some supplementary configuration).
fn document(v: Option<&Value>) -> Option<Value> {
    match v? {
        Value::String(s) => serde_json::from_str(s).ok(),
        Value::Null => None,
        other => Some(other.clone()),
    }
}

fn text<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    member(v, name)?.as_str()
}

fn flag(v: &Value, name: &str) -> Option<bool> {
    match member(v, name)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The encryption a configuration item states, read the way the audit reads
/// the service: S3 `supplementaryConfiguration.ServerSideEncryptionConfiguration`,
/// DynamoDB `configuration.ssedescription`, RDS `configuration.storageEncrypted`
/// and `kmsKeyId` (an instance in a cluster is judged on the cluster).
pub fn encryption_of(kind: ResourceType, item: &Item) -> Encryption {
    let c = &item.configuration;
    match kind {
        ResourceType::S3Bucket => {
            let conf = document(member(
                &item.supplementary,
                "ServerSideEncryptionConfiguration",
            ));
            let by_default = conf
                .as_ref()
                .and_then(|c| member(c, "rules"))
                .and_then(Value::as_array)
                .and_then(|r| r.first())
                .and_then(|r| member(r, "applyServerSideEncryptionByDefault"));
            match by_default {
                None => Encryption::None,
                Some(d) => match text(d, "sseAlgorithm") {
                    Some(alg) => s3::default_encryption(alg, text(d, "kmsMasterKeyID")),
                    None => Encryption::Unreadable {
                        why: "the configuration item's default encryption rule has no sseAlgorithm"
                            .into(),
                    },
                },
            }
        }
        ResourceType::DynamoDbTable => {
            let sse = member(c, "ssedescription").filter(|v| v.is_object());
            dynamodb::table_encryption(
                sse.and_then(|s| text(s, "sseType")),
                sse.and_then(|s| text(s, "status")),
                sse.and_then(|s| text(s, "kmsMasterKeyArn")),
            )
        }
        ResourceType::RdsInstance => rds::instance_encryption(
            text(c, "dBClusterIdentifier"),
            flag(c, "storageEncrypted"),
            text(c, "kmsKeyId"),
        ),
        ResourceType::RdsCluster => {
            rds::encryption(flag(c, "storageEncrypted"), text(c, "kmsKeyId"))
        }
    }
}

/// The audit's [`Resource`] for a configuration item of a judged type.
pub fn resource_of(kind: ResourceType, item: &Item) -> Resource {
    Resource {
        kind,
        region: item.region.clone(),
        name: item.name().to_string(),
        arn: item.arn.clone(),
        config_id: Some(item.resource_id.clone()),
        encryption: encryption_of(kind, item),
    }
}

/// Config's compliance types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compliance {
    /// COMPLIANT.
    Compliant,
    /// NON_COMPLIANT.
    NonCompliant,
    /// NOT_APPLICABLE.
    NotApplicable,
    /// INSUFFICIENT_DATA (the audit's UNKNOWN).
    InsufficientData,
}

impl Compliance {
    /// The audit's verdict as Config's compliance type.
    pub fn of(v: Verdict) -> Self {
        match v {
            Verdict::Compliant => Compliance::Compliant,
            Verdict::NonCompliant => Compliance::NonCompliant,
            Verdict::NotApplicable => Compliance::NotApplicable,
            Verdict::Unknown => Compliance::InsufficientData,
        }
    }

    /// `COMPLIANT`, `NON_COMPLIANT`, `NOT_APPLICABLE`, `INSUFFICIENT_DATA`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compliance::Compliant => "COMPLIANT",
            Compliance::NonCompliant => "NON_COMPLIANT",
            Compliance::NotApplicable => "NOT_APPLICABLE",
            Compliance::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

/// One evaluation to report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// `AWS::S3::Bucket`, …
    pub resource_type: String,
    /// Config's resource ID.
    pub resource_id: String,
    /// The compliance type.
    pub compliance: Compliance,
    /// `REASON: detail. remediation`, at most [`MAX_ANNOTATION_CHARS`].
    pub annotation: String,
    /// The item's capture time (periodic runs: the notification's time).
    #[serde(serialize_with = "rfc3339")]
    pub ordering_timestamp: OffsetDateTime,
}

fn rfc3339<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::kms::import_params::rfc3339(*t))
}

/// `text` cut to at most `max` characters, ending in `…` when cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The annotation of a finding: its reason code, detail and remediation.
pub fn annotation(f: &Finding) -> String {
    truncate_chars(
        &format!("{}: {}. {}", f.reason.as_str(), f.detail, f.remediation),
        MAX_ANNOTATION_CHARS,
    )
}

impl Evaluation {
    /// The evaluation of an audit finding for the resource Config knows as
    /// `resource_id`.
    pub fn of_finding(f: &Finding, resource_id: &str, at: OffsetDateTime) -> Self {
        Evaluation {
            resource_type: f.resource_type.as_str().to_string(),
            resource_id: resource_id.to_string(),
            compliance: Compliance::of(f.verdict),
            annotation: annotation(f),
            ordering_timestamp: at,
        }
    }

    /// NOT_APPLICABLE for an item, with why.
    pub fn not_applicable(item: &Item, why: &str) -> Self {
        Evaluation {
            resource_type: item.resource_type.clone(),
            resource_id: item.resource_id.clone(),
            compliance: Compliance::NotApplicable,
            annotation: truncate_chars(why, MAX_ANNOTATION_CHARS),
            ordering_timestamp: item.captured_at,
        }
    }

    pub(crate) fn to_sdk(&self) -> Result<SdkEvaluation, ConfigRuleError> {
        SdkEvaluation::builder()
            .compliance_resource_type(&self.resource_type)
            .compliance_resource_id(&self.resource_id)
            .compliance_type(ComplianceType::from(self.compliance.as_str()))
            .annotation(&self.annotation)
            .ordering_timestamp(aws_sdk_config::primitives::DateTime::from_millis(
                (self.ordering_timestamp.unix_timestamp_nanos() / 1_000_000) as i64,
            ))
            .build()
            .map_err(|e| ConfigRuleError::Build {
                resource: self.resource_id.clone(),
                why: e.to_string(),
            })
    }
}

/// What one invocation did (the function's response, also logged).
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The message type evaluated.
    pub message_type: &'static str,
    /// Whether PutEvaluations ran in TestMode.
    pub test_mode: bool,
    /// PutEvaluations calls made.
    pub put_calls: usize,
    /// Every evaluation sent.
    pub evaluations: Vec<Evaluation>,
}

/// The clients the rule uses: KMS per Region (the audit's [`Regions`]) and
/// AWS Config for PutEvaluations. Built once per Lambda execution environment.
pub struct ConfigRule {
    regions: Arc<Regions>,
    config: aws_sdk_config::Client,
    jobs: usize,
}

impl ConfigRule {
    /// Clients from the standard chain (Lambda: the function's role and
    /// `AWS_REGION`). Overridden endpoints (`AWS_ENDPOINT_URL_*`, loopback
    /// HTTP or HTTPS only) are checked and printed, as the bastion does.
    pub async fn from_env() -> Result<Self, ConfigRuleError> {
        if let Some(u) = audit::endpoint_override("CONFIG_SERVICE")? {
            eprintln!("AWS Config endpoint: {u} (overridden)");
        }
        let conf = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(6))
            .load()
            .await;
        let regions = Regions::new(
            conf.region().map(|r| r.to_string()),
            None,
            Box::new(|b: &super::Bastion| {
                eprintln!(
                    "KMS endpoint: {} ({}) (Region {})",
                    b.endpoint.url, b.endpoint.source, b.region
                );
            }),
        );
        Ok(ConfigRule {
            regions: Arc::new(regions),
            config: aws_sdk_config::Client::new(&conf),
            jobs: 8,
        })
    }

    /// Evaluate the event and report the evaluations with PutEvaluations.
    pub async fn handle(&self, payload: Value) -> Result<Outcome, ConfigRuleError> {
        let event = ConfigEvent::parse(payload)?;
        let params = RuleParameters::parse(event.rule_parameters.as_deref())?;
        let invocation = Invocation::parse(&event.invoking_event)?;
        let (message_type, evaluations, listing_failed) =
            self.evaluate(&event, &invocation, &params).await?;
        let put_calls = self
            .put_evaluations(&event.result_token, &evaluations)
            .await?;
        let outcome = Outcome {
            message_type,
            test_mode: event.test_mode(),
            put_calls,
            evaluations,
        };
        eprintln!(
            "{}: {} evaluation(s) in {} PutEvaluations call(s){}",
            outcome.message_type,
            outcome.evaluations.len(),
            outcome.put_calls,
            if outcome.test_mode { " (TestMode)" } else { "" }
        );
        match listing_failed.first() {
            Some(first) => Err(ConfigRuleError::ListingFailed {
                count: listing_failed.len(),
                first: first.clone(),
            }),
            None => Ok(outcome),
        }
    }

    /// The evaluations of one invocation, and the listings a periodic run could not make.
    async fn evaluate(
        &self,
        event: &ConfigEvent,
        invocation: &Invocation,
        params: &RuleParameters,
    ) -> Result<(&'static str, Vec<Evaluation>, Vec<String>), ConfigRuleError> {
        let policy = params.policy(OffsetDateTime::now_utc());
        Ok(match invocation {
            Invocation::Change(item) => (
                "ConfigurationItemChangeNotification",
                vec![self.evaluate_item(event, item, &policy, false).await?],
                Vec::new(),
            ),
            Invocation::Oversized(item) => (
                "OversizedConfigurationItemChangeNotification",
                vec![self.evaluate_item(event, item, &policy, true).await?],
                Vec::new(),
            ),
            Invocation::Scheduled { at, .. } => {
                let (evaluations, failed) = self.evaluate_all(params, *at).await?;
                ("ScheduledNotification", evaluations, failed)
            }
        })
    }

    /// One item: NOT_APPLICABLE when deleted, out of scope or of a type the
    /// audit does not judge; otherwise the audit's finding.
    async fn evaluate_item(
        &self,
        event: &ConfigEvent,
        item: &Item,
        policy: &Policy,
        oversized: bool,
    ) -> Result<Evaluation, ConfigRuleError> {
        if item.deleted() {
            return Ok(Evaluation::not_applicable(
                item,
                &format!("NOT_APPLICABLE: the resource was deleted ({})", item.status),
            ));
        }
        if event.event_left_scope {
            return Ok(Evaluation::not_applicable(
                item,
                "NOT_APPLICABLE: the resource left the rule's scope",
            ));
        }
        let Some(kind) = resource_type(&item.resource_type) else {
            return Ok(Evaluation::not_applicable(
                item,
                &format!(
                    "NOT_APPLICABLE: {} is not a type this rule judges (S3 buckets, DynamoDB tables, RDS DB instances and clusters)",
                    item.resource_type
                ),
            ));
        };
        let resource = if oversized {
            self.describe(kind, item).await?
        } else {
            resource_of(kind, item)
        };
        let resolver = KeyResolver::new(self.regions.clone());
        let f = audit::finding(None, &resource, &resolver, policy).await;
        Ok(Evaluation::of_finding(
            &f,
            &item.resource_id,
            item.captured_at,
        ))
    }

    /// An oversized item's resource, described with the audit's calls.
    async fn describe(&self, kind: ResourceType, item: &Item) -> Result<Resource, ConfigRuleError> {
        let c = ServiceClients::connect(&item.region, None).await?;
        let mut r = match kind {
            ResourceType::S3Bucket => s3::describe(&c, item.name()).await,
            ResourceType::DynamoDbTable => dynamodb::describe(&c, item.name()).await,
            ResourceType::RdsInstance | ResourceType::RdsCluster => {
                rds::describe(&c, kind, item.name()).await
            }
        };
        r.config_id = Some(item.resource_id.clone());
        Ok(r)
    }

    /// The periodic run: the audit's inventory of the default Region.
    async fn evaluate_all(
        &self,
        params: &RuleParameters,
        at: OffsetDateTime,
    ) -> Result<(Vec<Evaluation>, Vec<String>), ConfigRuleError> {
        let opts = AuditOptions {
            regions: Vec::new(),
            max_age_days: params.max_age_days,
            jobs: self.jobs,
            require_external: params.require_external,
            accounts: audit::accounts::AccountArgs::default(),
        };
        let inv =
            audit::inventory_until(self.regions.clone(), None, &opts, &StopFlag::new()).await?;
        let mut evaluations = Vec::new();
        let mut failed = Vec::new();
        for f in &inv.report.findings {
            if f.resource == "*" {
                failed.push(f.detail.clone());
                continue;
            }
            let id = f.config_id.as_deref().unwrap_or(&f.resource);
            evaluations.push(Evaluation::of_finding(f, id, at));
        }
        Ok((evaluations, failed))
    }

    /// PutEvaluations, [`MAX_EVALUATIONS_PER_CALL`] at a time; returns the
    /// number of calls.
    async fn put_evaluations(
        &self,
        result_token: &str,
        evaluations: &[Evaluation],
    ) -> Result<usize, ConfigRuleError> {
        let test_mode = result_token == TEST_MODE_TOKEN;
        let mut calls = 0;
        for chunk in evaluations.chunks(MAX_EVALUATIONS_PER_CALL) {
            let batch = chunk
                .iter()
                .map(Evaluation::to_sdk)
                .collect::<Result<Vec<_>, _>>()?;
            let r = self
                .config
                .put_evaluations()
                .result_token(result_token)
                .set_evaluations(Some(batch))
                .test_mode(test_mode)
                .send()
                .await
                .map_err(|e| ConfigRuleError::PutEvaluations(audit::explain_sdk(&e)))?;
            calls += 1;
            let refused = r.failed_evaluations();
            if let Some(first) = refused.first() {
                return Err(ConfigRuleError::Refused {
                    failed: refused.len(),
                    sent: chunk.len(),
                    first: format!(
                        "{} {}",
                        first.compliance_resource_type(),
                        first.compliance_resource_id()
                    ),
                });
            }
        }
        Ok(calls)
    }
}

#[cfg(test)]
mod tests;
