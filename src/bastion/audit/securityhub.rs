//! `audit --security-hub`: one ASFF finding per resource in the account's
//! Security Hub (BatchImportFindings), in the resource's Region.
//!
//! * `Id` is stable per account, Region, resource and control
//!   ([`finding_id`]), so a re-run updates the finding instead of adding one;
//!   `CreatedAt` of an existing finding is kept, `UpdatedAt` is now.
//! * `Compliance.Status`: FAILED for NON_COMPLIANT, PASSED for COMPLIANT,
//!   NOT_AVAILABLE for UNKNOWN and NOT_APPLICABLE; `Severity.Label` by reason
//!   ([`severity`]); `Remediation.Recommendation.Text` is the reason's
//!   remediation.
//! * A COMPLIANT resource's finding is PASSED and `RecordState: ARCHIVED`; an
//!   earlier finding of ours (GetFindings filtered on [`GENERATOR_ID`], account
//!   and Region) whose resource was not seen this time is ARCHIVED, except for
//!   resource types whose listing failed in that Region.
//! * At most 100 findings per call; throttling is retried by the SDK, and
//!   findings Security Hub reports in `FailedFindings` are sent again (3 more
//!   tries, backing off); those still failing are an error.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_securityhub::types::{
    AwsSecurityFinding, AwsSecurityFindingFilters, Compliance, ComplianceStatus, Partition,
    Recommendation, RecordState, Remediation, Resource, Severity, SeverityLabel, StringFilter,
    StringFilterComparison,
};
use serde::Serialize;

use super::{Finding, Reason, ResourceType, Verdict};

/// The `GeneratorId` of every finding `audit` publishes (and looks for).
pub const GENERATOR_ID: &str = "byok-ceremony/audit/kms-key-compliance";

/// The control name in every finding's `Id`.
pub const CONTROL: &str = "kms-key-compliance";

/// The ASFF schema version.
pub const SCHEMA_VERSION: &str = "2018-10-08";

/// Findings per BatchImportFindings call (Security Hub's limit).
pub const BATCH: usize = 100;

/// Why publishing to Security Hub failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The account of the credentials is not known (STS GetCallerIdentity).
    #[error("cannot tell which account the findings belong to (STS GetCallerIdentity: {0}); check the credentials and the STS endpoint (AWS_ENDPOINT_URL_STS)")]
    NoAccount(String),
    /// A Security Hub call failed.
    #[error("Security Hub {operation} in {region} failed: {explanation}; is Security Hub enabled in this account and Region (EnableSecurityHub), and may the role call securityhub:{operation}?")]
    Call {
        /// The API operation.
        operation: &'static str,
        /// The Region.
        region: String,
        /// The service's error.
        explanation: String,
    },
    /// Some findings were still refused after retries.
    #[error("Security Hub in {region} refused {count} finding(s) after retries (first: {first}); the audit result above is complete, run the audit with --security-hub again to publish them")]
    Rejected {
        /// The Region.
        region: String,
        /// How many.
        count: usize,
        /// The first refusal, `Id: code: message`.
        first: String,
    },
}

/// What publishing did in one account and Region.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PublishSummary {
    /// The account.
    pub account: String,
    /// The Region.
    pub region: String,
    /// The product ARN used (the account's default product).
    pub product_arn: String,
    /// Findings that did not exist before.
    pub created: usize,
    /// Findings that existed and were updated.
    pub updated: usize,
    /// Earlier findings whose resource was not seen, now archived.
    pub archived_vanished: usize,
    /// BatchImportFindings calls made.
    pub calls: usize,
}

/// The account's default product ARN (findings a customer imports itself).
pub fn product_arn(partition: &str, region: &str, account: &str) -> String {
    format!("arn:{partition}:securityhub:{region}:{account}:product/{account}/default")
}

/// The partition of a Region name.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The stable finding `Id` of `f` in `account`: the same resource and
/// control always give the same `Id` (at most 512 characters: long names are
/// replaced by their SHA-256).
pub fn finding_id(account: &str, f: &Finding) -> String {
    let id = format!(
        "byok-ceremony/{account}/{}/{}/{}/{CONTROL}",
        f.region,
        f.resource_type.as_str(),
        f.resource
    );
    if id.len() <= 512 {
        id
    } else {
        use sha2::Digest;
        format!(
            "byok-ceremony/{account}/{}/{}/sha256-{}/{CONTROL}",
            f.region,
            f.resource_type.as_str(),
            hex::encode(sha2::Sha256::digest(f.resource.as_bytes()))
        )
    }
}

/// Severity by reason: what happens to the data if nothing is done.
pub fn severity(f: &Finding) -> SeverityLabel {
    match (f.verdict, f.reason) {
        (Verdict::NonCompliant, Reason::KeyDisabledOrPendingDeletion) => SeverityLabel::Critical,
        (
            Verdict::NonCompliant,
            Reason::Unencrypted | Reason::KeyReplaced | Reason::MaterialMissing,
        ) => SeverityLabel::High,
        (Verdict::NonCompliant, _) => SeverityLabel::Medium,
        (Verdict::Unknown, _) => SeverityLabel::Low,
        _ => SeverityLabel::Informational,
    }
}

/// The compliance status for a verdict.
pub fn compliance(v: Verdict) -> ComplianceStatus {
    match v {
        Verdict::Compliant => ComplianceStatus::Passed,
        Verdict::NonCompliant => ComplianceStatus::Failed,
        Verdict::Unknown | Verdict::NotApplicable => ComplianceStatus::NotAvailable,
    }
}

/// The ASFF resource type.
fn asff_type(t: ResourceType) -> &'static str {
    match t {
        ResourceType::S3Bucket => "AwsS3Bucket",
        ResourceType::DynamoDbTable => "AwsDynamoDbTable",
        ResourceType::RdsInstance => "AwsRdsDbInstance",
        ResourceType::RdsCluster => "AwsRdsDbCluster",
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// The ASFF finding for `f` (`created_at`: the existing finding's, else now).
pub fn to_asff(
    f: &Finding,
    account: &str,
    product_arn: &str,
    created_at: &str,
    updated_at: &str,
) -> AwsSecurityFinding {
    let partition = partition_of(&f.region);
    let resource_id = f.arn.clone().unwrap_or_else(|| f.resource.clone());
    let title = match f.verdict {
        Verdict::Compliant => format!("{} is on a compliant KMS key", f.resource),
        Verdict::NonCompliant => format!(
            "{} is not on a compliant KMS key ({})",
            f.resource,
            f.reason.as_str()
        ),
        Verdict::Unknown => format!(
            "{}: KMS key compliance unknown ({})",
            f.resource,
            f.reason.as_str()
        ),
        Verdict::NotApplicable => format!("{}: KMS key check not applicable", f.resource),
    };
    let mut b = AwsSecurityFinding::builder()
        .schema_version(SCHEMA_VERSION)
        .id(finding_id(account, f))
        .product_arn(product_arn)
        .product_name("byok-ceremony audit")
        .company_name("byok-ceremony")
        .generator_id(GENERATOR_ID)
        .aws_account_id(account)
        .region(&f.region)
        .types("Software and Configuration Checks/Industry and Regulatory Standards")
        .created_at(created_at)
        .updated_at(updated_at)
        .severity(Severity::builder().label(severity(f)).build())
        .title(cut(&title, 256))
        .description(cut(&f.detail, 1024))
        .remediation(
            Remediation::builder()
                .recommendation(
                    Recommendation::builder()
                        .text(cut(&f.remediation, 512))
                        .build(),
                )
                .build(),
        )
        .resources(
            Resource::builder()
                .r#type(asff_type(f.resource_type))
                .id(resource_id)
                .partition(Partition::from(partition))
                .region(&f.region)
                .build(),
        )
        .compliance(Compliance::builder().status(compliance(f.verdict)).build())
        .record_state(if f.verdict == Verdict::Compliant {
            RecordState::Archived
        } else {
            RecordState::Active
        })
        .product_fields("byok/Verdict", f.verdict.as_str())
        .product_fields("byok/Reason", f.reason.as_str())
        .product_fields("byok/ResourceType", f.resource_type.as_str());
    if let Some(k) = &f.key_arn {
        b = b.product_fields("byok/KeyArn", k);
    }
    if let Some(k) = &f.key_reference {
        b = b.product_fields("byok/KeyReference", k);
    }
    b.build()
}

/// An earlier finding of ours whose resource is gone: the same finding,
/// ARCHIVED, compliance NOT_AVAILABLE, updated now.
pub fn vanished(old: &AwsSecurityFinding, updated_at: &str) -> AwsSecurityFinding {
    let mut f = old.clone();
    f.updated_at = Some(updated_at.to_string());
    f.record_state = Some(RecordState::Archived);
    f.compliance = Some(
        Compliance::builder()
            .status(ComplianceStatus::NotAvailable)
            .build(),
    );
    f.description = Some("The resource was not found by the latest byok-ceremony audit (deleted, or no longer in scope).".into());
    f
}

/// An ASFF timestamp: RFC 3339, UTC, milliseconds (later runs must carry a
/// later `UpdatedAt` for Security Hub to take the update).
pub fn timestamp(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t
        .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Our earlier findings in this account and Region, by `Id` (filtered here
/// too: an aggregation Region returns other Regions' findings, and emulators
/// may ignore filters).
async fn existing(
    hub: &aws_sdk_securityhub::Client,
    account: &str,
    region: &str,
) -> Result<BTreeMap<String, AwsSecurityFinding>, HubError> {
    let eq = |v: &str| {
        StringFilter::builder()
            .value(v)
            .comparison(StringFilterComparison::Equals)
            .build()
    };
    let filters = AwsSecurityFindingFilters::builder()
        .generator_id(eq(GENERATOR_ID))
        .aws_account_id(eq(account))
        .region(eq(region))
        .build();
    let mut out = BTreeMap::new();
    let mut pages = hub
        .get_findings()
        .filters(filters)
        .max_results(100)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| HubError::Call {
            operation: "GetFindings",
            region: region.to_string(),
            explanation: super::explain_sdk(&e),
        })?;
        for f in page.findings() {
            if f.generator_id() == Some(GENERATOR_ID)
                && f.aws_account_id() == Some(account)
                && f.region().is_none_or(|r| r == region)
            {
                if let Some(id) = f.id() {
                    out.insert(id.to_string(), f.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Send `findings` in batches of [`BATCH`], sending refused ones again up to
/// 3 times, waiting `backoff`, then twice, four times as long. Returns the
/// calls made.
async fn import(
    hub: &aws_sdk_securityhub::Client,
    region: &str,
    findings: Vec<AwsSecurityFinding>,
    backoff: Duration,
) -> Result<usize, HubError> {
    let mut calls = 0;
    let mut pending = findings;
    let mut last_errors: Vec<String> = Vec::new();
    for attempt in 0..4u32 {
        if pending.is_empty() {
            return Ok(calls);
        }
        if attempt > 0 {
            tokio::time::sleep(backoff * (1 << (attempt - 1))).await;
        }
        let mut refused = Vec::new();
        last_errors.clear();
        for chunk in pending.chunks(BATCH) {
            calls += 1;
            let out = hub
                .batch_import_findings()
                .set_findings(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| HubError::Call {
                    operation: "BatchImportFindings",
                    region: region.to_string(),
                    explanation: super::explain_sdk(&e),
                })?;
            let failed: BTreeSet<&str> = out
                .failed_findings()
                .iter()
                .filter_map(|e| e.id())
                .collect();
            for e in out.failed_findings() {
                last_errors.push(format!(
                    "{}: {}: {}",
                    e.id().unwrap_or("?"),
                    e.error_code().unwrap_or("?"),
                    e.error_message().unwrap_or("")
                ));
            }
            refused.extend(
                chunk
                    .iter()
                    .filter(|f| f.id().is_some_and(|id| failed.contains(id)))
                    .cloned(),
            );
        }
        pending = refused;
    }
    if pending.is_empty() {
        Ok(calls)
    } else {
        Err(HubError::Rejected {
            region: region.to_string(),
            count: pending.len(),
            first: last_errors.first().cloned().unwrap_or_default(),
        })
    }
}

/// Publish the findings of one account and Region (`findings` all of that
/// Region) and archive our earlier findings of resources not seen now.
pub async fn publish(
    hub: &aws_sdk_securityhub::Client,
    account: &str,
    region: &str,
    findings: &[&Finding],
) -> Result<PublishSummary, HubError> {
    let product = product_arn(partition_of(region), region, account);
    let before = existing(hub, account, region).await?;
    let now = timestamp(time::OffsetDateTime::now_utc());
    let mut summary = PublishSummary {
        account: account.to_string(),
        region: region.to_string(),
        product_arn: product.clone(),
        ..PublishSummary::default()
    };
    let mut seen = BTreeSet::new();
    // A listing that failed ("*") says nothing about which resources vanished.
    let unlisted: BTreeSet<&str> = findings
        .iter()
        .filter(|f| f.resource == "*")
        .map(|f| f.resource_type.as_str())
        .collect();
    let mut batch = Vec::new();
    for f in findings {
        let id = finding_id(account, f);
        let created = match before.get(&id).and_then(|e| e.created_at()) {
            Some(c) => {
                summary.updated += 1;
                c.to_string()
            }
            None => {
                summary.created += 1;
                now.clone()
            }
        };
        batch.push(to_asff(f, account, &product, &created, &now));
        seen.insert(id);
    }
    for (id, old) in &before {
        let kind = old
            .product_fields()
            .and_then(|p| p.get("byok/ResourceType"))
            .map(String::as_str)
            .unwrap_or("");
        if seen.contains(id)
            || unlisted.contains(kind)
            || old.record_state() == Some(&RecordState::Archived)
        {
            continue;
        }
        summary.archived_vanished += 1;
        batch.push(vanished(old, &now));
    }
    summary.calls = import(hub, region, batch, Duration::from_secs(1)).await?;
    Ok(summary)
}

/// The account of the credentials `sts` uses.
pub async fn caller_account(sts: &aws_sdk_sts::Client) -> Result<String, HubError> {
    let out = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| HubError::NoAccount(super::explain_sdk(&e)))?;
    out.account()
        .map(String::from)
        .ok_or_else(|| HubError::NoAccount("no Account in the answer".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::{Arc, Mutex};

    /// A loopback HTTP server answering BatchImportFindings: it refuses the
    /// findings whose Id `refuse(id, seen_before)` says, and records the Ids
    /// of each call.
    fn fake_hub(
        refuse: impl Fn(&str, bool) -> bool + Send + 'static,
    ) -> (String, Arc<Mutex<Vec<Vec<String>>>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
        let seen_calls = calls.clone();
        std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let ids: Vec<String> = req["Findings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["Id"].as_str().unwrap().to_string())
                    .collect();
                let failed: Vec<serde_json::Value> = ids
                    .iter()
                    .filter(|id| refuse(id, seen.contains(*id)))
                    .map(|id| serde_json::json!({"Id": id, "ErrorCode": "InvalidInput", "ErrorMessage": "try again"}))
                    .collect();
                seen.extend(ids.iter().cloned());
                let answer = serde_json::json!({
                    "FailedCount": failed.len(),
                    "SuccessCount": ids.len() - failed.len(),
                    "FailedFindings": failed,
                })
                .to_string();
                seen_calls.lock().unwrap().push(ids);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        (url, calls)
    }

    fn client(url: &str) -> aws_sdk_securityhub::Client {
        let conf = aws_sdk_securityhub::Config::builder()
            .behavior_version(aws_sdk_securityhub::config::BehaviorVersion::latest())
            .region(aws_sdk_securityhub::config::Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(aws_sdk_securityhub::config::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            ))
            .build();
        aws_sdk_securityhub::Client::from_conf(conf)
    }

    fn many(n: usize) -> Vec<AwsSecurityFinding> {
        (0..n)
            .map(|i| {
                let mut f = to_asff(
                    &finding(&format!("t{i}"), Verdict::NonCompliant, Reason::Unencrypted),
                    "111122223333",
                    "p",
                    "t",
                    "t",
                );
                f.id = Some(format!("f-{i}"));
                f
            })
            .collect()
    }

    #[tokio::test]
    async fn batches_of_100_and_refused_findings_are_sent_again() {
        // f-7 is refused the first time only.
        let (url, calls) = fake_hub(|id, seen| id == "f-7" && !seen);
        let n = import(
            &client(&url),
            "us-east-1",
            many(250),
            Duration::from_millis(1),
        )
        .await
        .unwrap();
        let calls = calls.lock().unwrap().clone();
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![100, 100, 50, 1]
        );
        assert_eq!(calls[3], vec!["f-7".to_string()]);
        assert_eq!(n, 4);
    }

    #[tokio::test]
    async fn findings_refused_every_time_are_an_error() {
        let (url, calls) = fake_hub(|id, _| id == "f-1");
        let e = import(
            &client(&url),
            "eu-west-1",
            many(3),
            Duration::from_millis(1),
        )
        .await
        .unwrap_err();
        match e {
            HubError::Rejected {
                region,
                count,
                first,
            } => {
                assert_eq!((region.as_str(), count), ("eu-west-1", 1));
                assert!(first.starts_with("f-1: InvalidInput"), "{first}");
            }
            other => panic!("{other}"),
        }
        // The first call and three more tries of the refused finding.
        assert_eq!(
            calls
                .lock()
                .unwrap()
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            vec![3, 1, 1, 1]
        );
    }

    fn finding(name: &str, verdict: Verdict, reason: Reason) -> Finding {
        Finding {
            account: None,
            resource_type: ResourceType::DynamoDbTable,
            region: "eu-west-1".into(),
            resource: name.into(),
            arn: Some(format!(
                "arn:aws:dynamodb:eu-west-1:111122223333:table/{name}"
            )),
            config_id: None,
            verdict,
            reason,
            key_reference: Some("arn:aws:kms:eu-west-1:999900001111:key/k1".into()),
            key_arn: Some("arn:aws:kms:eu-west-1:999900001111:key/k1".into()),
            detail: "detail".into(),
            remediation: reason.remediation().into(),
        }
    }

    #[test]
    fn ids_are_stable_per_resource_and_control() {
        let a = finding("orders", Verdict::NonCompliant, Reason::KeyReplaced);
        let b = finding("orders", Verdict::Compliant, Reason::CompliantKey);
        let c = finding("sessions", Verdict::NonCompliant, Reason::KeyReplaced);
        assert_eq!(
            finding_id("111122223333", &a),
            finding_id("111122223333", &b)
        );
        assert_ne!(
            finding_id("111122223333", &a),
            finding_id("111122223333", &c)
        );
        assert_ne!(
            finding_id("111122223333", &a),
            finding_id("444455556666", &a)
        );
        assert_eq!(
            finding_id("111122223333", &a),
            "byok-ceremony/111122223333/eu-west-1/AWS::DynamoDB::Table/orders/kms-key-compliance"
        );
        let long = finding(&"x".repeat(600), Verdict::Compliant, Reason::CompliantKey);
        let id = finding_id("111122223333", &long);
        assert!(id.len() <= 512 && id.contains("sha256-"), "{id}");
    }

    #[test]
    fn asff_carries_status_severity_remediation_and_product() {
        let p = product_arn("aws", "eu-west-1", "111122223333");
        assert_eq!(
            p,
            "arn:aws:securityhub:eu-west-1:111122223333:product/111122223333/default"
        );
        let f = finding("orders", Verdict::NonCompliant, Reason::KeyReplaced);
        let a = to_asff(
            &f,
            "111122223333",
            &p,
            "2026-01-01T00:00:00Z",
            "2026-02-01T00:00:00Z",
        );
        assert_eq!(
            a.compliance().and_then(|c| c.status()),
            Some(&ComplianceStatus::Failed)
        );
        assert_eq!(
            a.severity().and_then(|s| s.label()),
            Some(&SeverityLabel::High)
        );
        assert_eq!(a.record_state(), Some(&RecordState::Active));
        assert_eq!(a.product_arn(), Some(p.as_str()));
        assert_eq!(a.generator_id(), Some(GENERATOR_ID));
        assert_eq!(a.created_at(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(
            a.remediation()
                .and_then(|r| r.recommendation())
                .and_then(|r| r.text()),
            Some(Reason::KeyReplaced.remediation())
        );
        assert_eq!(a.resources()[0].r#type(), Some("AwsDynamoDbTable"));
        assert_eq!(a.product_fields().unwrap()["byok/Reason"], "KEY_REPLACED");
        let ok = to_asff(
            &finding("orders", Verdict::Compliant, Reason::CompliantKey),
            "111122223333",
            &p,
            "t",
            "t",
        );
        assert_eq!(
            ok.compliance().and_then(|c| c.status()),
            Some(&ComplianceStatus::Passed)
        );
        assert_eq!(ok.record_state(), Some(&RecordState::Archived));
        assert_eq!(
            ok.severity().and_then(|s| s.label()),
            Some(&SeverityLabel::Informational)
        );
        let gone = vanished(&a, "2026-03-01T00:00:00Z");
        assert_eq!(gone.record_state(), Some(&RecordState::Archived));
        assert_eq!(gone.id(), a.id());
        assert_eq!(gone.created_at(), a.created_at());
    }

    #[test]
    fn timestamps_are_utc_milliseconds() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_123_456_789)
            .unwrap()
            .to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(timestamp(t), "2027-01-15T08:00:00.123Z");
    }

    #[test]
    fn severity_follows_the_reason() {
        use Reason as R;
        for (v, r, want) in [
            (
                Verdict::NonCompliant,
                R::KeyDisabledOrPendingDeletion,
                SeverityLabel::Critical,
            ),
            (Verdict::NonCompliant, R::Unencrypted, SeverityLabel::High),
            (Verdict::NonCompliant, R::KeyReplaced, SeverityLabel::High),
            (
                Verdict::NonCompliant,
                R::MaterialTooOld,
                SeverityLabel::Medium,
            ),
            (
                Verdict::NonCompliant,
                R::NotCustomerKey,
                SeverityLabel::Medium,
            ),
            (Verdict::Unknown, R::KeyUnreadable, SeverityLabel::Low),
            (
                Verdict::NotApplicable,
                R::NotApplicable,
                SeverityLabel::Informational,
            ),
        ] {
            assert_eq!(severity(&finding("t", v, r)), want, "{r:?}");
        }
        assert_eq!(partition_of("cn-north-1"), "aws-cn");
        assert_eq!(partition_of("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition_of("eu-west-1"), "aws");
    }
}
