//! The Config rule's pure parts: parameters, notifications, the mapping of
//! configuration items to the audit's encryption, and annotations.

use serde_json::{json, Value};

use super::*;
use crate::bastion::audit::Reason;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/data/config-events/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The fixture's invocation, with `edits` (JSON pointer, value) applied to
/// its invokingEvent.
fn invocation(name: &str, edits: &[(&str, Value)]) -> Invocation {
    let event = ConfigEvent::parse(fixture(name)).unwrap();
    let mut inner: Value = serde_json::from_str(&event.invoking_event).unwrap();
    for (pointer, v) in edits {
        *inner.pointer_mut(pointer).unwrap() = v.clone();
    }
    Invocation::parse(&inner.to_string()).unwrap()
}

fn item(name: &str, edits: &[(&str, Value)]) -> Item {
    match invocation(name, edits) {
        Invocation::Change(i) | Invocation::Oversized(i) => i,
        other => panic!("{other:?}"),
    }
}

const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn kms(k: &str) -> Encryption {
    Encryption::Kms {
        key_ref: k.to_string(),
    }
}

#[test]
fn parameters_default_parse_and_refuse_with_what_to_do() {
    assert_eq!(
        RuleParameters::parse(None).unwrap(),
        RuleParameters::default()
    );
    assert_eq!(
        RuleParameters::parse(Some("  ")).unwrap(),
        RuleParameters::default()
    );
    assert_eq!(
        RuleParameters::parse(Some(r#"{"maxAgeDays":"90","requireExternal":"false"}"#)).unwrap(),
        RuleParameters {
            max_age_days: 90,
            require_external: false
        }
    );
    assert_eq!(
        RuleParameters::parse(Some(r#"{"maxAgeDays":30,"requireExternal":true}"#)).unwrap(),
        RuleParameters {
            max_age_days: 30,
            require_external: true
        }
    );
    let err = |raw: &str| RuleParameters::parse(Some(raw)).unwrap_err().to_string();
    assert_eq!(
        err(r#"{"maxAgeDays":"-1"}"#),
        "rule parameter maxAgeDays is \"-1\"; give a whole number of days from 0 to 36500 in the Config rule's InputParameters"
    );
    assert!(err(r#"{"maxAgeDays":"36501"}"#).contains("from 0 to 36500"));
    assert!(err(r#"{"maxAgeDays":"1.5"}"#).contains("whole number"));
    assert_eq!(
        err(r#"{"requireExternal":"yes"}"#),
        "rule parameter requireExternal is \"yes\"; give \"true\" or \"false\" in the Config rule's InputParameters"
    );
    assert_eq!(
        err(r#"{"maxAgeDay":"30"}"#),
        "unknown rule parameter \"maxAgeDay\"; this rule takes maxAgeDays and requireExternal: fix the Config rule's InputParameters"
    );
    assert!(err("[1]").starts_with("the rule's parameters are not a JSON object (got an array)"));
    assert!(err("{").starts_with("the rule's parameters are not a JSON object ("));
}

#[test]
fn every_fixture_parses_as_aws_documents_it() {
    for (name, kind) in [
        ("change-s3-bucket.json", "AWS::S3::Bucket"),
        ("change-dynamodb-table.json", "AWS::DynamoDB::Table"),
        ("change-rds-dbinstance.json", "AWS::RDS::DBInstance"),
        ("change-rds-dbcluster.json", "AWS::RDS::DBCluster"),
        ("change-deleted.json", "AWS::DynamoDB::Table"),
    ] {
        let e = ConfigEvent::parse(fixture(name)).unwrap();
        assert!(e.test_mode(), "{name}");
        assert_eq!(e.account_id.as_deref(), Some("123456789012"));
        let i = item(name, &[]);
        assert_eq!(i.resource_type, kind, "{name}");
        assert_eq!(i.region, "us-east-1");
        assert_eq!(
            crate::kms::import_params::rfc3339(i.captured_at),
            "2026-03-02T10:15:30.123Z"
        );
        assert_eq!(i.deleted(), name == "change-deleted.json", "{name}");
    }
    let Invocation::Oversized(i) = invocation("oversized.json", &[]) else {
        panic!("not oversized")
    };
    assert_eq!(i.name(), "orders-on-byok");
    assert_eq!(i.configuration, Value::Null);
    let Invocation::Scheduled { at, account } = invocation("scheduled.json", &[]) else {
        panic!("not scheduled")
    };
    assert_eq!(account.as_deref(), Some("123456789012"));
    assert_eq!(
        crate::kms::import_params::rfc3339(at),
        "2026-03-02T12:00:00Z"
    );
}

#[test]
fn notifications_that_are_not_configs_are_refused() {
    let err = |s: &str| Invocation::parse(s).unwrap_err().to_string();
    assert!(err(r#"{"messageType":"ConfigurationSnapshotDeliveryCompleted"}"#)
        .starts_with("invokingEvent has messageType \"ConfigurationSnapshotDeliveryCompleted\", which this rule does not evaluate; set the rule's Source.SourceDetails"));
    assert_eq!(
        err(r#"{"messageType":"ConfigurationItemChangeNotification"}"#),
        "the ConfigurationItemChangeNotification lacks configurationItem; this is not a notification AWS Config sends: check what invoked the function"
    );
    assert_eq!(
        err(r#"{"messageType":"ScheduledNotification","notificationCreationTime":"yesterday"}"#),
        "notificationCreationTime is \"yesterday\", not an RFC 3339 time; this is not a notification AWS Config sends"
    );
    assert!(err(r#"{}"#).contains("lacks messageType"));
    assert!(err("not json").starts_with("the event's invokingEvent is not a Config notification"));
    let e = ConfigEvent::parse(json!({"hello": "world"})).unwrap_err();
    assert!(e
        .to_string()
        .starts_with("the Lambda event is not an AWS Config rule event"));
    let d: lambda_runtime::Diagnostic = e.into();
    assert_eq!(d.error_type, "InvalidEvent");
}

#[test]
fn items_map_to_the_audits_encryption() {
    let s3 = |rule: Value| {
        let i = item(
            "change-s3-bucket.json",
            &[(
                "/configurationItem/supplementaryConfiguration/ServerSideEncryptionConfiguration",
                rule,
            )],
        );
        encryption_of(ResourceType::S3Bucket, &i)
    };
    let by_default = |alg: &str, key: Value| json!({"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": alg, "kmsMasterKeyID": key}, "bucketKeyEnabled": true}]});
    assert_eq!(
        encryption_of(ResourceType::S3Bucket, &item("change-s3-bucket.json", &[])),
        kms(KEY)
    );
    assert_eq!(
        s3(by_default("aws:kms", json!("alias/orders-prod"))),
        kms("alias/orders-prod")
    );
    assert_eq!(
        s3(by_default("aws:kms", Value::Null)),
        Encryption::AwsManagedDefault {
            alias: "alias/aws/s3".into()
        }
    );
    assert_eq!(
        s3(by_default("AES256", Value::Null)),
        Encryption::ServiceOwned {
            what: "SSE-S3 (AES256)".into()
        }
    );
    // Config may deliver the configuration as a JSON string.
    assert_eq!(
        s3(Value::String(
            by_default("aws:kms:dsse", json!(KEY)).to_string()
        )),
        kms(KEY)
    );
    assert_eq!(s3(Value::Null), Encryption::None);

    let table = |sse: Value| {
        let i = item(
            "change-dynamodb-table.json",
            &[("/configurationItem/configuration/ssedescription", sse)],
        );
        encryption_of(ResourceType::DynamoDbTable, &i)
    };
    assert_eq!(
        encryption_of(
            ResourceType::DynamoDbTable,
            &item("change-dynamodb-table.json", &[])
        ),
        kms(KEY)
    );
    assert_eq!(
        table(Value::Null),
        Encryption::ServiceOwned {
            what: "the AWS-owned key (DynamoDB's default)".into()
        }
    );
    assert_eq!(
        table(json!({"status": "ENABLED", "sseType": "KMS"})),
        Encryption::AwsManagedDefault {
            alias: "alias/aws/dynamodb".into()
        }
    );
    assert_eq!(
        table(json!({"status": "DISABLED", "sseType": "KMS", "kmsMasterKeyArn": KEY})),
        Encryption::ServiceOwned {
            what: "the AWS-owned key (DynamoDB's default)".into()
        }
    );

    let db = |edits: &[(&str, Value)]| {
        encryption_of(
            ResourceType::RdsInstance,
            &item("change-rds-dbinstance.json", edits),
        )
    };
    assert_eq!(db(&[]), kms(KEY));
    assert_eq!(
        db(&[(
            "/configurationItem/configuration/storageEncrypted",
            json!(false)
        )]),
        Encryption::None
    );
    assert!(matches!(
        db(&[("/configurationItem/configuration/dBClusterIdentifier", json!("orders-cluster"))]),
        Encryption::NotApplicable { why } if why.contains("member of DB cluster orders-cluster")
    ));
    let cluster = item("change-rds-dbcluster.json", &[]);
    assert_eq!(encryption_of(ResourceType::RdsCluster, &cluster), kms(KEY));
    let r = resource_of(ResourceType::RdsCluster, &cluster);
    assert_eq!(r.name, "orders-cluster");
    assert_eq!(
        r.config_id.as_deref(),
        Some("cluster-ABCDEFGHIJKLMNOPQRSTUVWXY2")
    );
}

#[test]
fn annotations_carry_the_reason_and_fit_configs_limit() {
    let f = Finding {
        account: None,
        resource_type: ResourceType::S3Bucket,
        region: "us-east-1".into(),
        resource: "logs".into(),
        arn: None,
        config_id: None,
        verdict: Verdict::NonCompliant,
        reason: Reason::KeyReplaced,
        key_reference: None,
        key_arn: None,
        detail: "x".repeat(300),
        remediation: Reason::KeyReplaced.remediation().into(),
    };
    let e = Evaluation::of_finding(&f, "logs", OffsetDateTime::UNIX_EPOCH);
    assert_eq!(e.compliance, Compliance::NonCompliant);
    assert!(e.annotation.starts_with("KEY_REPLACED: xxx"));
    assert_eq!(e.annotation.chars().count(), MAX_ANNOTATION_CHARS);
    assert!(e.annotation.ends_with('…'));
    assert_eq!(truncate_chars("é".repeat(10).as_str(), 4), "ééé…");
    assert_eq!(truncate_chars("short", 256), "short");
    for (v, c) in [
        (Verdict::Compliant, "COMPLIANT"),
        (Verdict::NonCompliant, "NON_COMPLIANT"),
        (Verdict::NotApplicable, "NOT_APPLICABLE"),
        (Verdict::Unknown, "INSUFFICIENT_DATA"),
    ] {
        assert_eq!(Compliance::of(v).as_str(), c);
    }
    assert_eq!(resource_type("AWS::EC2::Instance"), None);
    assert_eq!(
        resource_type("AWS::RDS::DBCluster"),
        Some(ResourceType::RdsCluster)
    );
}
