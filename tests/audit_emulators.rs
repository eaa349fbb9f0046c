//! `byok-bastion audit` against real peers on loopback: LocalStack (KMS, S3)
//! and moto's server (DynamoDB, RDS). The compliant key went through a real
//! ceremony: prepare → byok-airgap wrap on SoftHSM2 → a custodian signs →
//! import. Every resource gets the expected verdict and reason; JSON and CSV
//! parse; exit code 3.
#![cfg(feature = "bastion")]

mod common;
#[path = "common/peers.rs"]
mod peers;

use common::*;
use peers::*;

/// The resources: S3 in LocalStack, DynamoDB and RDS in moto.
const ESTATE: &str = r#"
import sys, boto3
external, generated, foreign = sys.argv[1:4]
s3 = boto3.client("s3")
def bucket(name, rule):
    s3.create_bucket(Bucket=name)
    if rule:
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule, "BucketKeyEnabled": True}]})
bucket("orders-on-byok", {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": external})
bucket("logs-sse-s3", {"SSEAlgorithm": "AES256"})
bucket("tmp-on-generated-key", {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": generated})
ddb = boto3.client("dynamodb")
schema = dict(AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
ddb.create_table(TableName="orders", SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": external}, **schema)
ddb.create_table(TableName="sessions-default", **schema)
rds = boto3.client("rds")
db = dict(DBInstanceClass="db.t3.micro", Engine="postgres", MasterUsername="u", MasterUserPassword="passwordpassword", AllocatedStorage=20)
rds.create_db_instance(DBInstanceIdentifier="orders-db", StorageEncrypted=True, KmsKeyId=external, **db)
rds.create_db_instance(DBInstanceIdentifier="legacy-db", **db)
rds.create_db_instance(DBInstanceIdentifier="partner-db", StorageEncrypted=True, KmsKeyId=foreign, **db)
"#;

#[test]
fn audit_judges_buckets_tables_and_databases() {
    let p = Peers::start();
    let external = imported_key(&p);
    let generated = p.python(
        "import boto3; print(boto3.client('kms').create_key()['KeyMetadata']['Arn'])",
        &[],
    );
    // A key in an account LocalStack does not hold: DescribeKey cannot answer.
    let foreign = "arn:aws:kms:us-east-1:999988887777:key/0c1d2e3f-0000-4000-8000-000000000001";
    p.python(ESTATE, &[&external, &generated, foreign]);

    let o = p.bastion().args(["audit", "--json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("NON_COMPLIANT") && stderr(&o).contains("of 8 resources"),
        "{}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)));
    let verdicts: Vec<(String, String, String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["resource_type"].as_str().unwrap().to_string(),
                f["resource"].as_str().unwrap().to_string(),
                f["verdict"].as_str().unwrap().to_string(),
                f["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expect = |t: &str, r: &str, verdict: &str, reason: &str| {
        assert!(
            verdicts.contains(&(t.into(), r.into(), verdict.into(), reason.into())),
            "{t} {r}: want {verdict} {reason}; got {verdicts:#?}"
        );
    };
    expect(
        "AWS::S3::Bucket",
        "orders-on-byok",
        "COMPLIANT",
        "COMPLIANT_KEY",
    );
    expect(
        "AWS::S3::Bucket",
        "logs-sse-s3",
        "NON_COMPLIANT",
        "NOT_CUSTOMER_KEY",
    );
    expect(
        "AWS::S3::Bucket",
        "tmp-on-generated-key",
        "NON_COMPLIANT",
        "NOT_EXTERNAL",
    );
    expect(
        "AWS::DynamoDB::Table",
        "orders",
        "COMPLIANT",
        "COMPLIANT_KEY",
    );
    expect(
        "AWS::DynamoDB::Table",
        "sessions-default",
        "NON_COMPLIANT",
        "NOT_CUSTOMER_KEY",
    );
    expect(
        "AWS::RDS::DBInstance",
        "orders-db",
        "COMPLIANT",
        "COMPLIANT_KEY",
    );
    expect(
        "AWS::RDS::DBInstance",
        "legacy-db",
        "NON_COMPLIANT",
        "UNENCRYPTED",
    );
    expect(
        "AWS::RDS::DBInstance",
        "partner-db",
        "UNKNOWN",
        "KEY_UNREADABLE",
    );
    assert_eq!(verdicts.len(), 8, "{verdicts:#?}");
    // --allow-kms-generated: the bucket on the KMS-generated key is no longer
    // NOT_EXTERNAL; nothing else changes verdict.
    let o = p
        .bastion()
        .args(["audit", "--json", "--allow-kms-generated"])
        .output()
        .unwrap();
    let relaxed: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stderr(&o)));
    for f in relaxed["findings"].as_array().unwrap() {
        let key = (
            f["resource_type"].as_str().unwrap().to_string(),
            f["resource"].as_str().unwrap().to_string(),
        );
        if key.1 == "tmp-on-generated-key" {
            assert_ne!(f["reason"], "NOT_EXTERNAL", "{f}");
        } else {
            assert!(
                verdicts.iter().any(|v| (v.0.clone(), v.1.clone()) == key
                    && f["verdict"] == v.2.as_str()
                    && f["reason"] == v.3.as_str()),
                "{f}"
            );
        }
    }
    // The JSON shape: summary counts, and per finding the key and what to do.
    assert_eq!(
        v["summary"],
        serde_json::json!({"total": 8, "compliant": 3, "non_compliant": 4, "not_applicable": 0, "unknown": 1})
    );
    assert_eq!(v["regions"], serde_json::json!(["us-east-1"]));
    assert_eq!(v["max_age_days"], 365);
    for f in v["findings"].as_array().unwrap() {
        assert!(
            f["remediation"].as_str().is_some_and(|r| r.ends_with('.')),
            "{f}"
        );
        assert!(f["detail"].as_str().is_some_and(|d| !d.is_empty()), "{f}");
        if f["verdict"] == "COMPLIANT" {
            assert_eq!(f["key_arn"], external.as_str(), "{f}");
            assert_eq!(f["key_reference"], external.as_str(), "{f}");
        }
    }
    // Grouped by verdict: NON_COMPLIANT first.
    assert_eq!(v["findings"][0]["verdict"], "NON_COMPLIANT");
    // Three distinct keys for five KMS references: one DescribeKey each.
    assert_eq!(v["kms_describe_calls"], 3, "{}", v["kms_describe_calls"]);

    // CSV: the header, one row per resource, exit code 3 again.
    let o = p
        .bastion()
        .args(["audit", "--csv", "--jobs", "1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let csv = String::from_utf8_lossy(&o.stdout);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("resource_type,region,resource,arn,verdict,reason,key_reference,key_arn,detail,remediation,account")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 8, "{csv}");
    assert!(
        rows.iter().any(
            |r| r.starts_with("\"AWS::RDS::DBInstance\",\"us-east-1\",\"legacy-db\",")
                && r.contains("\"NON_COMPLIANT\",\"UNENCRYPTED\"")
        ),
        "{csv}"
    );

    // The table, grouped, with the summary line; material 0 days allowed: every
    // key-backed resource on the imported key is now too old.
    let o = p
        .bastion()
        .args(["audit", "--max-age-days", "0", "--regions", "us-east-1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("NON_COMPLIANT (7)"), "{table}");
    assert!(table.contains("MATERIAL_TOO_OLD"), "{table}");
    assert!(!table.contains("\nCOMPLIANT ("), "{table}");
    assert!(
        table.trim_end().ends_with(
            "7 NON_COMPLIANT, 1 UNKNOWN, 0 COMPLIANT, 0 NOT_APPLICABLE (of 8 resources)"
        ),
        "{table}"
    );

    // --json and --csv together is refused.
    let o = p
        .bastion()
        .args(["audit", "--json", "--csv"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("choose one output format"),
        "{}",
        stderr(&o)
    );
}

/// Once the custodians' key is disabled, everything on it says so.
#[test]
fn disabled_key_and_unencrypted_bucket_only_estate_exits_zero_when_clean() {
    let p = Peers::start();
    let external = imported_key(&p);
    p.python(
        r#"
import sys, boto3
s3 = boto3.client("s3")
s3.create_bucket(Bucket="only-bucket")
s3.put_bucket_encryption(Bucket="only-bucket", ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": sys.argv[1]}}]})
"#,
        &[&external],
    );
    // Clean estate: exit 0, summary on stderr with --json.
    let o = ok(
        p.bastion().args(["audit", "--json"]).output().unwrap(),
        "audit",
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["summary"]["compliant"], 1, "{v}");
    assert_eq!(v["summary"]["total"], 1, "{v}");
    p.python(
        "import sys, boto3; boto3.client('kms').disable_key(KeyId=sys.argv[1])",
        &[&external],
    );
    let o = p.bastion().args(["audit", "--json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["findings"][0]["reason"], "KEY_DISABLED_OR_PENDING_DELETION",
        "{v}"
    );
}

/// After `move-alias` to a new key, resources that pin the old key by ID are
/// KEY_REPLACED; a bucket that names the alias follows it and stays compliant.
#[test]
fn pinned_old_key_is_replaced_after_alias_rotation() {
    let p = Peers::start();
    let move_alias = |k: &Imported| {
        ok(
            run(p.bastion().args([
                "move-alias",
                k.dir.to_str().unwrap(),
                "--alias",
                "alias/orders-prod",
                "--policy",
                k.policy.to_str().unwrap(),
            ])),
            "move-alias",
        )
    };
    let old = ceremony(&p);
    move_alias(&old);
    p.python(
        r#"
import sys, boto3
s3 = boto3.client("s3")
for name, key in (("pinned-by-id", sys.argv[1]), ("by-alias", "alias/orders-prod")):
    s3.create_bucket(Bucket=name)
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}]})
boto3.client("dynamodb").create_table(TableName="orders", SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": sys.argv[1]},
    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
"#,
        &[&old.arn],
    );
    let audit = || {
        let o = p.bastion().args(["audit", "--json"]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stderr(&o)));
        let by_name = |n: &str| -> serde_json::Value {
            v["findings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["resource"] == n)
                .cloned()
                .unwrap_or_else(|| panic!("{n} missing: {v}"))
        };
        (
            o.status.code(),
            ["pinned-by-id", "by-alias", "orders"].map(by_name),
        )
    };
    let (code, [pinned, alias, table]) = audit();
    assert_eq!(code, Some(0), "{pinned} {alias} {table}");
    for f in [&pinned, &alias, &table] {
        assert_eq!(f["verdict"], "COMPLIANT", "{f}");
    }

    let new = ceremony(&p);
    move_alias(&new);
    let (code, [pinned, alias, table]) = audit();
    assert_eq!(code, Some(3));
    for f in [&pinned, &table] {
        assert_eq!(
            (f["verdict"].as_str(), f["reason"].as_str()),
            (Some("NON_COMPLIANT"), Some("KEY_REPLACED")),
            "{f}"
        );
        assert_eq!(f["key_arn"], old.arn.as_str(), "{f}");
        assert!(
            f["detail"].as_str().unwrap().contains("byok:replaced-by"),
            "{f}"
        );
    }
    assert_eq!(alias["verdict"], "COMPLIANT", "{alias}");
    assert_eq!(alias["key_arn"], new.arn.as_str(), "{alias}");
}

/// The issue's rotation scenario end to end: a bucket, a table and an RDS
/// instance pin the old key by ARN; the alias moves to a new key and the old
/// key is retired. The audit says KEY_REPLACED for all three; `repoint`
/// without `--apply` changes nothing (the resources are read back); with
/// `--apply` it moves the bucket (keeping its bucket key) and the table to the
/// new key, logging before and after, and prints the RDS procedure; the next
/// audit finds the bucket and the table COMPLIANT on the new key.
#[test]
fn repoint_moves_pinned_resources_off_a_retired_key() {
    let p = Peers::start();
    let move_alias = |k: &Imported| {
        ok(
            run(p.bastion().args([
                "move-alias",
                k.dir.to_str().unwrap(),
                "--alias",
                "alias/orders-prod",
                "--policy",
                k.policy.to_str().unwrap(),
            ])),
            "move-alias",
        )
    };
    let old = ceremony(&p);
    move_alias(&old);
    p.python(
        r#"
import sys, boto3
old = sys.argv[1]
s3 = boto3.client("s3")
s3.create_bucket(Bucket="orders-pinned")
s3.put_bucket_encryption(Bucket="orders-pinned", ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": old}, "BucketKeyEnabled": True}]})
boto3.client("dynamodb").create_table(TableName="orders", SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": old},
    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
boto3.client("rds").create_db_instance(DBInstanceIdentifier="orders-db", StorageEncrypted=True, KmsKeyId=old, DBInstanceClass="db.t3.micro",
    Engine="postgres", MasterUsername="u", MasterUserPassword="passwordpassword", AllocatedStorage=20)
"#,
        &[&old.arn],
    );
    let new = ceremony(&p);
    move_alias(&new);
    ok(
        run(p
            .bastion()
            .args(["retire", "--key", &old.arn, "--grace-days", "7"])),
        "retire",
    );

    let audit = |want_code: i32| -> serde_json::Value {
        let o = p.bastion().args(["audit", "--json"]).output().unwrap();
        assert_eq!(o.status.code(), Some(want_code), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stderr(&o)))
    };
    let finding = |v: &serde_json::Value, name: &str| -> serde_json::Value {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["resource"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing: {v}"))
    };
    let v = audit(3);
    for name in ["orders-pinned", "orders", "orders-db"] {
        let f = finding(&v, name);
        assert_eq!(
            (f["verdict"].as_str(), f["reason"].as_str()),
            (Some("NON_COMPLIANT"), Some("KEY_REPLACED")),
            "{f}"
        );
        assert_eq!(f["key_arn"], old.arn.as_str(), "{f}");
        assert!(
            f["detail"].as_str().unwrap().contains("PendingDeletion"),
            "{f}"
        );
    }

    // What the resources say, read straight from the emulators.
    let read_back = || -> serde_json::Value {
        let out = p.python(
            r#"
import json, boto3
s3 = boto3.client("s3").get_bucket_encryption(Bucket="orders-pinned")["ServerSideEncryptionConfiguration"]["Rules"][0]
t = boto3.client("dynamodb").describe_table(TableName="orders")["Table"]["SSEDescription"]
d = boto3.client("rds").describe_db_instances(DBInstanceIdentifier="orders-db")["DBInstances"][0]
print(json.dumps({"bucket_key": s3["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"], "bucket_key_enabled": s3.get("BucketKeyEnabled"),
    "table_key": t["KMSMasterKeyArn"], "db_key": d["KmsKeyId"]}))
"#,
            &[],
        );
        serde_json::from_str(&out).unwrap()
    };
    let before = read_back();
    assert_eq!(
        before,
        serde_json::json!({"bucket_key": old.arn, "bucket_key_enabled": true, "table_key": old.arn, "db_key": old.arn})
    );

    // Dry run: the plan, and nothing changes.
    let o = ok(
        p.bastion().args(["repoint", "--json"]).output().unwrap(),
        "repoint (dry run)",
    );
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["applied"], false, "{plan}");
    assert_eq!(plan["replaced_findings"], 3, "{plan}");
    let by = |r: &serde_json::Value, name: &str| -> serde_json::Value {
        r["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["resource"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing: {r}"))
    };
    for name in ["orders-pinned", "orders"] {
        let c = by(&plan, name);
        assert_eq!(c["status"], "PLANNED", "{c}");
        assert_eq!(c["new_key"], new.arn.as_str(), "{c}");
        assert_eq!(c["source"], "bastion-record", "{c}");
    }
    assert_eq!(read_back(), before, "a dry run changed something");

    // A bastion without the record of the alias move (another state
    // directory) sees the replacement only in the tag: planned, but not
    // applied without --trust-tags.
    let elsewhere = tempfile::tempdir().unwrap();
    let o = ok(
        p.bastion()
            .env("BYOK_STATE_DIR", elsewhere.path().join("state"))
            .args(["repoint", "--apply", "--json"])
            .output()
            .unwrap(),
        "repoint --apply from another bastion",
    );
    let other: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for name in ["orders-pinned", "orders"] {
        let c = by(&other, name);
        assert_eq!(
            (c["status"].as_str(), c["source"].as_str()),
            (Some("SKIPPED"), Some("replaced-by-tag")),
            "{c}"
        );
        assert_eq!(c["new_key"], new.arn.as_str(), "{c}");
        assert!(
            c["detail"].as_str().unwrap().contains("--trust-tags"),
            "{c}"
        );
    }
    assert_eq!(read_back(), before, "a tag-only replacement was applied");

    // Apply.
    let o = ok(
        p.bastion().args(["repoint", "--apply"]).output().unwrap(),
        "repoint --apply",
    );
    let log = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        log.contains("APPLIED  AWS::S3::Bucket us-east-1 orders-pinned")
            && log.contains("APPLIED  AWS::DynamoDB::Table us-east-1 orders"),
        "{log}"
    );
    assert!(
        log.contains(&format!("{} -> {}", old.arn, new.arn)),
        "{log}"
    );
    assert!(log.contains("before: ") && log.contains("after: "), "{log}");
    // RDS: the procedure, filled in, never run.
    assert!(
        log.contains("MANUAL   AWS::RDS::DBInstance us-east-1 orders-db"),
        "{log}"
    );
    assert!(
        log.contains(
            "aws rds copy-db-snapshot --region us-east-1 --source-db-snapshot-identifier orders-db-byok-"
        ) && log.contains(&format!("--kms-key-id {} --copy-tags", new.arn))
            && log.contains("aws rds restore-db-instance-from-db-snapshot --region us-east-1 --db-instance-identifier orders-db-rekeyed")
            && log.contains("--db-instance-class db.t3.micro"),
        "{log}"
    );
    assert!(
        log.trim_end().ends_with(
            "3 KEY_REPLACED resource(s): 2 applied, 0 planned, 1 manual (RDS), 0 skipped, 0 failed"
        ),
        "{log}"
    );
    assert_eq!(
        read_back(),
        serde_json::json!({"bucket_key": new.arn, "bucket_key_enabled": true, "table_key": new.arn, "db_key": old.arn})
    );

    // The next audit: bucket and table clean, the database still to do.
    let v = audit(3);
    for name in ["orders-pinned", "orders"] {
        let f = finding(&v, name);
        assert_eq!(f["verdict"], "COMPLIANT", "{f}");
        assert_eq!(f["key_arn"], new.arn.as_str(), "{f}");
    }
    assert_eq!(finding(&v, "orders-db")["reason"], "KEY_REPLACED");
    assert_eq!(v["summary"]["non_compliant"], 1, "{v}");

    // A second --apply has nothing left to change for them.
    let o = ok(
        p.bastion()
            .args(["repoint", "--apply", "--json"])
            .output()
            .unwrap(),
        "repoint --apply again",
    );
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(again["replaced_findings"], 1, "{again}");
    assert_eq!(by(&again, "orders-db")["status"], "MANUAL", "{again}");
}

/// Our findings in moto's Security Hub (GetFindings filters are not emulated:
/// filter here on the generator), by resource name.
const HUB_FINDINGS: &str = r#"
import json, boto3
hub = boto3.client("securityhub")
out, token = [], None
while True:
    page = hub.get_findings(MaxResults=100, **({"NextToken": token} if token else {}))
    out += [f for f in page["Findings"] if f["GeneratorId"] == "byok-ceremony/audit/kms-key-compliance"]
    token = page.get("NextToken")
    if not token:
        break
print(json.dumps(out))
"#;

/// `audit --security-hub`: the first run creates one finding per resource,
/// the second creates none and updates them all, and after a bucket is fixed
/// and a table deleted, the bucket's finding is PASSED/ARCHIVED and the
/// table's ARCHIVED.
#[test]
fn security_hub_findings_are_created_updated_and_archived() {
    let p = Peers::start();
    let external = imported_key(&p);
    p.python(
        r#"
import sys, boto3
external = sys.argv[1]
boto3.client("securityhub").enable_security_hub()
s3 = boto3.client("s3")
for name, rule in (("orders-on-byok", {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": external}), ("logs-sse-s3", {"SSEAlgorithm": "AES256"})):
    s3.create_bucket(Bucket=name)
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]})
boto3.client("dynamodb").create_table(TableName="sessions-default", AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
boto3.client("rds").create_db_instance(DBInstanceIdentifier="legacy-db", DBInstanceClass="db.t3.micro", Engine="postgres",
    MasterUsername="u", MasterUserPassword="passwordpassword", AllocatedStorage=20)
"#,
        &[&external],
    );
    let account = p.python(
        "import boto3; print(boto3.client('sts').get_caller_identity()['Account'])",
        &[],
    );
    let product = format!("arn:aws:securityhub:us-east-1:{account}:product/{account}/default");
    let run_audit = || -> serde_json::Value {
        let o = p
            .bastion()
            .args(["audit", "--json", "--security-hub"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stderr(&o)));
        assert!(stderr(&o).contains("Security Hub "), "{}", stderr(&o));
        v["security_hub"][0].clone()
    };
    let hub = || -> Vec<serde_json::Value> {
        serde_json::from_str(&p.python(HUB_FINDINGS, &[])).unwrap()
    };
    let by_resource = |all: &[serde_json::Value], name: &str| -> serde_json::Value {
        let mine: Vec<&serde_json::Value> = all
            .iter()
            .filter(|f| f["Id"].as_str().unwrap().contains(&format!("/{name}/")))
            .collect();
        assert_eq!(mine.len(), 1, "{name}: {all:#?}");
        mine[0].clone()
    };

    let first = run_audit();
    assert_eq!(
        (
            &first["created"],
            &first["updated"],
            &first["archived_vanished"]
        ),
        (
            &serde_json::json!(4),
            &serde_json::json!(0),
            &serde_json::json!(0)
        ),
        "{first}"
    );
    assert_eq!(first["product_arn"], product.as_str(), "{first}");
    let all = hub();
    assert_eq!(all.len(), 4, "{all:#?}");
    for f in &all {
        assert_eq!(f["ProductArn"], product.as_str(), "{f}");
        assert_eq!(f["AwsAccountId"], account.as_str(), "{f}");
        assert_eq!(f["SchemaVersion"], "2018-10-08", "{f}");
        assert!(
            f["Remediation"]["Recommendation"]["Text"]
                .as_str()
                .unwrap()
                .ends_with('.'),
            "{f}"
        );
    }
    let status = |f: &serde_json::Value| {
        (
            f["Compliance"]["Status"].as_str().unwrap().to_string(),
            f["RecordState"].as_str().unwrap().to_string(),
            f["Severity"]["Label"].as_str().unwrap().to_string(),
        )
    };
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        status(&by_resource(&all, "orders-on-byok")),
        s("PASSED", "ARCHIVED", "INFORMATIONAL")
    );
    assert_eq!(
        status(&by_resource(&all, "logs-sse-s3")),
        s("FAILED", "ACTIVE", "MEDIUM")
    );
    assert_eq!(
        status(&by_resource(&all, "sessions-default")),
        s("FAILED", "ACTIVE", "MEDIUM")
    );
    assert_eq!(
        status(&by_resource(&all, "legacy-db")),
        s("FAILED", "ACTIVE", "HIGH")
    );
    let created_at = by_resource(&all, "logs-sse-s3")["CreatedAt"].clone();

    // Again: nothing new, everything updated in place.
    let second = run_audit();
    assert_eq!(
        (
            &second["created"],
            &second["updated"],
            &second["archived_vanished"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!(4),
            &serde_json::json!(0)
        ),
        "{second}"
    );
    let all = hub();
    assert_eq!(all.len(), 4, "a re-run duplicated findings: {all:#?}");
    let logs = by_resource(&all, "logs-sse-s3");
    assert_eq!(logs["CreatedAt"], created_at, "{logs}");
    assert_ne!(logs["UpdatedAt"], created_at, "{logs}");

    // Fix the bucket, delete the table.
    p.python(
        r#"
import sys, boto3
boto3.client("s3").put_bucket_encryption(Bucket="logs-sse-s3", ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": sys.argv[1]}}]})
boto3.client("dynamodb").delete_table(TableName="sessions-default")
"#,
        &[&external],
    );
    let third = run_audit();
    assert_eq!(
        (
            &third["created"],
            &third["updated"],
            &third["archived_vanished"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!(3),
            &serde_json::json!(1)
        ),
        "{third}"
    );
    let all = hub();
    assert_eq!(all.len(), 4, "{all:#?}");
    assert_eq!(status(&by_resource(&all, "logs-sse-s3")).0, "PASSED");
    assert_eq!(status(&by_resource(&all, "logs-sse-s3")).1, "ARCHIVED");
    let gone = by_resource(&all, "sessions-default");
    assert_eq!(gone["RecordState"], "ARCHIVED", "{gone}");
    assert_eq!(gone["Compliance"]["Status"], "NOT_AVAILABLE", "{gone}");
    assert_eq!(status(&by_resource(&all, "legacy-db")).0, "FAILED");
}

/// A mixed estate over two workload accounts and two Regions, all in moto
/// (S3 too, so each account has its own buckets), with the keys in the
/// security account (LocalStack's KMS, the bastion's own credentials). The
/// bastion assumes `arn:aws:iam::{account}:role/byok-audit` in each account.
const TWO_ACCOUNTS: &str = r#"
import sys, boto3
external, eu_generated, foreign = sys.argv[1:4]
sts = boto3.client("sts")
def session(account):
    c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/setup", RoleSessionName="setup")["Credentials"]
    return boto3.Session(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])
def bucket(s3, name, rule, region=None):
    s3.create_bucket(Bucket=name, **({"CreateBucketConfiguration": {"LocationConstraint": region}} if region else {}))
    if rule:
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]})
schema = dict(AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
db = dict(DBInstanceClass="db.t3.micro", Engine="postgres", MasterUsername="u", MasterUserPassword="passwordpassword", AllocatedStorage=20)
a1 = session("111111111111")
bucket(a1.client("s3", region_name="us-east-1"), "a1-orders", {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": external})
bucket(a1.client("s3", region_name="eu-west-1"), "a1-eu-logs", {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": eu_generated}, "eu-west-1")
a1.client("dynamodb", region_name="us-east-1").create_table(TableName="a1-sessions", **schema)
a2 = session("222222222222")
a2.client("rds", region_name="us-east-1").create_db_instance(DBInstanceIdentifier="a2-db", StorageEncrypted=True, KmsKeyId=external, **db)
a2.client("rds", region_name="eu-west-1").create_db_instance(DBInstanceIdentifier="a2-legacy", **db)
a2.client("dynamodb", region_name="eu-west-1").create_table(TableName="a2-eu-orders", SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": foreign}, **schema)
# The bastion's own account (moto's default) is not audited unless named.
bucket(boto3.client("s3", region_name="us-east-1"), "base-decoy", None)
"#;

/// One CSV line of quoted fields (as `audit --csv` writes them).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') => quoted = true,
            (true, '"') if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (false, ',') => out.push(std::mem::take(&mut cur)),
            (_, c) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[test]
fn two_accounts_two_regions_keys_in_the_security_account() {
    let mut p = Peers::start();
    // S3 in moto for this test: moto keeps buckets per account.
    let moto = p.var("BYOK_MOTO_ENDPOINT");
    p.env.push(("AWS_ENDPOINT_URL_S3".into(), moto));
    let external = imported_key(&p);
    let eu_generated = p.python(
        "import boto3; print(boto3.client('kms', region_name='eu-west-1').create_key()['KeyMetadata']['Arn'])",
        &[],
    );
    let foreign = "arn:aws:kms:eu-west-1:999988887777:key/0c1d2e3f-0000-4000-8000-000000000001";
    p.python(TWO_ACCOUNTS, &[&external, &eu_generated, foreign]);

    let args = [
        "audit",
        "--regions",
        "us-east-1,eu-west-1",
        "--role-arn",
        "arn:aws:iam::{account}:role/byok-audit",
        "--accounts",
        "111111111111,222222222222",
    ];
    let o = p.bastion().args(args).arg("--json").output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stderr(&o)));
    assert_eq!(
        v["accounts"],
        serde_json::json!(["111111111111", "222222222222"])
    );
    assert_eq!(v["regions"], serde_json::json!(["eu-west-1", "us-east-1"]));
    let got: Vec<[String; 6]> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            [
                "account",
                "region",
                "resource_type",
                "resource",
                "verdict",
                "reason",
            ]
            .map(|k| f[k].as_str().unwrap_or("-").to_string())
        })
        .collect();
    let want = [
        [
            "111111111111",
            "us-east-1",
            "AWS::S3::Bucket",
            "a1-orders",
            "COMPLIANT",
            "COMPLIANT_KEY",
        ],
        [
            "111111111111",
            "eu-west-1",
            "AWS::S3::Bucket",
            "a1-eu-logs",
            "NON_COMPLIANT",
            "NOT_EXTERNAL",
        ],
        [
            "111111111111",
            "us-east-1",
            "AWS::DynamoDB::Table",
            "a1-sessions",
            "NON_COMPLIANT",
            "NOT_CUSTOMER_KEY",
        ],
        [
            "222222222222",
            "us-east-1",
            "AWS::RDS::DBInstance",
            "a2-db",
            "COMPLIANT",
            "COMPLIANT_KEY",
        ],
        [
            "222222222222",
            "eu-west-1",
            "AWS::RDS::DBInstance",
            "a2-legacy",
            "NON_COMPLIANT",
            "UNENCRYPTED",
        ],
        [
            "222222222222",
            "eu-west-1",
            "AWS::DynamoDB::Table",
            "a2-eu-orders",
            "UNKNOWN",
            "KEY_UNREADABLE",
        ],
    ]
    .map(|r| r.map(String::from));
    for w in &want {
        assert!(got.contains(w), "want {w:?}; got {got:#?}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
    assert_eq!(
        v["summary"],
        serde_json::json!({"total": 6, "compliant": 2, "non_compliant": 3, "not_applicable": 0, "unknown": 1})
    );
    // Keys read once each, with the bastion's own (security account) credentials.
    assert_eq!(v["kms_describe_calls"], 3, "{}", v["kms_describe_calls"]);
    for f in v["findings"].as_array().unwrap() {
        if f["verdict"] == "COMPLIANT" {
            assert_eq!(f["key_arn"], external.as_str(), "{f}");
        }
    }

    // CSV: the same rows, the account in the last column.
    let o = p.bastion().args(args).arg("--csv").output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let csv = String::from_utf8_lossy(&o.stdout).to_string();
    let mut lines = csv.lines();
    let header = csv_fields(lines.next().unwrap());
    assert_eq!(header.len(), 11, "{header:?}");
    assert_eq!(header[10], "account");
    let rows: Vec<Vec<String>> = lines.map(csv_fields).collect();
    assert_eq!(rows.len(), 6, "{csv}");
    for r in &rows {
        assert_eq!(r.len(), 11, "{r:?}");
        let row = [&r[10], &r[1], &r[0], &r[2], &r[4], &r[5]].map(|s| s.to_string());
        assert!(want.contains(&row), "{row:?} not expected");
    }

    // Security Hub: each account's findings in its own hub, Region by Region.
    let o = p
        .bastion()
        .args(args)
        .args(["--json", "--security-hub"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut published: Vec<(String, String, i64)> = v["security_hub"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["account"].as_str().unwrap().to_string(),
                h["region"].as_str().unwrap().to_string(),
                h["created"].as_i64().unwrap(),
            )
        })
        .collect();
    published.sort();
    let s = |a: &str, r: &str, n: i64| (a.to_string(), r.to_string(), n);
    assert_eq!(
        published,
        vec![
            s("111111111111", "eu-west-1", 1),
            s("111111111111", "us-east-1", 2),
            s("222222222222", "eu-west-1", 2),
            s("222222222222", "us-east-1", 1),
        ]
    );
    let in_hub = p.python(
        r#"
import boto3
sts = boto3.client("sts")
c = sts.assume_role(RoleArn="arn:aws:iam::111111111111:role/check", RoleSessionName="check")["Credentials"]
hub = boto3.client("securityhub", region_name="us-east-1", aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])
print(",".join(sorted(f["AwsAccountId"] + ":" + f["Resources"][0]["Id"].split(":")[-1].split("/")[-1] for f in hub.get_findings()["Findings"])))
"#,
        &[],
    );
    assert_eq!(in_hub, "111111111111:a1-orders,111111111111:a1-sessions");

    // --organization: every ACTIVE account of the organization (moto's
    // default account manages it), through the same role.
    let created = p.python(
        r#"
import boto3
org = boto3.client("organizations")
org.create_organization(FeatureSet="ALL")
org.create_account(Email="workload@example.com", AccountName="workload")
print(",".join(sorted(a["Id"] for a in org.list_accounts()["Accounts"])))
"#,
        &[],
    );
    let o = p
        .bastion()
        .args([
            "audit",
            "--json",
            "--regions",
            "us-east-1",
            "--role-arn",
            "arn:aws:iam::{account}:role/byok-audit",
            "--organization",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let accounts: Vec<&str> = v["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(accounts.join(","), created, "{v}");
    let decoy = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["resource"] == "base-decoy")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(decoy["reason"], "UNENCRYPTED", "{decoy}");
    assert!(created.split(',').any(|a| decoy["account"] == a), "{decoy}");

    // A template without {account} is refused before anything is sent.
    let o = p
        .bastion()
        .args([
            "audit",
            "--role-arn",
            "arn:aws:iam::111111111111:role/x",
            "--accounts",
            "111111111111",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("has no {account}"), "{}", stderr(&o));
}
