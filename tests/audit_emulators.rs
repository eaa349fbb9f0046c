//! `byok-bastion audit` against real peers on loopback: LocalStack (KMS, S3)
//! and moto's server (DynamoDB, RDS). The compliant key went through a real
//! ceremony: prepare → byok-airgap wrap on SoftHSM2 → a custodian signs →
//! import. Every resource gets the expected verdict and reason; JSON and CSV
//! parse; exit code 3.
#![cfg(feature = "bastion")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `export K=V` lines of a start script.
fn exports(out: &Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches(['\'', '"']).to_string()))
        .collect()
}

/// LocalStack (kms,s3) and moto (dynamodb, rds), stopped when dropped.
struct Peers {
    ls_state: tempfile::TempDir,
    moto_state: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Peers {
    fn start() -> Self {
        let ls_state = tempfile::tempdir().unwrap();
        let moto_state = tempfile::tempdir().unwrap();
        let ls = Command::new("bash")
            .arg(root().join("scripts/localstack/start.sh"))
            .env("BYOK_LOCALSTACK_STATE", ls_state.path())
            .env("BYOK_LOCALSTACK_SERVICES", "kms,s3")
            .output()
            .expect("start.sh runs");
        let mut peers = Peers {
            ls_state,
            moto_state,
            env: Vec::new(),
        };
        assert!(
            ls.status.success(),
            "LocalStack did not start:\n{}",
            stderr(&ls)
        );
        peers.env = exports(&ls);
        let moto = Command::new("bash")
            .arg(root().join("scripts/moto/start.sh"))
            .env("BYOK_MOTO_STATE", peers.moto_state.path())
            .output()
            .expect("moto start.sh runs");
        assert!(
            moto.status.success(),
            "moto did not start:\n{}",
            stderr(&moto)
        );
        peers.env.extend(exports(&moto));
        for k in [
            "AWS_ENDPOINT_URL_KMS",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL_DYNAMODB",
            "AWS_ENDPOINT_URL_RDS",
        ] {
            assert!(
                peers.env.iter().any(|(n, _)| n == k),
                "{k}: {:?}",
                peers.env
            );
        }
        peers
    }

    fn var(&self, k: &str) -> String {
        self.env
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    }

    fn with_env<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.env_remove("AWS_PROFILE").env_remove("AWS_ENDPOINT_URL")
    }

    fn bastion(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_byok-bastion"));
        self.with_env(&mut c);
        c
    }

    /// Run Python (boto3, from the LocalStack venv) with `args` as sys.argv[1:].
    fn python(&self, code: &str, args: &[&str]) -> String {
        let mut c = Command::new(self.var("BYOK_LOCALSTACK_PYTHON"));
        self.with_env(&mut c).arg("-c").arg(code).args(args);
        let o = run(&mut c);
        assert!(o.status.success(), "python failed:\n{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("scripts/localstack/stop.sh"))
            .env("BYOK_LOCALSTACK_STATE", self.ls_state.path())
            .output();
        let _ = Command::new("bash")
            .arg(root().join("scripts/moto/stop.sh"))
            .env("BYOK_MOTO_STATE", self.moto_state.path())
            .output();
    }
}

fn ok(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what} failed:\n{}", stderr(&o));
    o
}

/// A key imported through a ceremony, with what `move-alias` needs.
struct Imported {
    _card: SoftHsm,
    _hsm: SoftHsm,
    policy: PathBuf,
    dir: PathBuf,
    arn: String,
}

/// A SYMMETRIC_DEFAULT key with material from a real ceremony: the bastion
/// creates it and fetches parameters, SoftHSM2 wraps, one custodian signs,
/// the bastion imports. Returns the key ARN.
fn imported_key(p: &Peers) -> String {
    ceremony(p).arn
}

fn ceremony(p: &Peers) -> Imported {
    let card = SoftHsm::new("alice-card");
    let mut a = vec!["custodian".to_string(), "init".into()];
    a.extend(card.hsm_args());
    a.extend(["--name", "alice", "--key-label", "sig", "--json"].map(String::from));
    let o = ok(run(card.airgap().args(a)), "custodian init");
    let entry: serde_json::Value =
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["entry"].clone();
    let hsm = SoftHsm::new("audit");
    let policy = hsm.path("policy.json");
    std::fs::write(
        &policy,
        serde_json::json!({"format": "byok-ceremony/custodian-policy/v1", "threshold": 1, "custodians": [entry]}).to_string(),
    )
    .unwrap();
    let params_dir = hsm.path("params");
    let o = ok(
        run(p.bastion().args([
            "prepare",
            "--create",
            "SYMMETRIC_DEFAULT",
            "--wrapping-algorithm",
            "RSAES_OAEP_SHA_1",
            "--out-dir",
            params_dir.to_str().unwrap(),
            "--json",
        ])),
        "prepare",
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let params = PathBuf::from(v[0]["params_file"].as_str().unwrap());
    let arn = v[0]["key_arn"].as_str().unwrap().to_string();
    let fp = v[0]["wrapping_key_sha256"].as_str().unwrap().to_string();
    let out = hsm.path("orders-prod");
    ok(
        run(hsm.airgap().args(bastion_wrap_args(
            &hsm,
            params.to_str().unwrap(),
            "SYMMETRIC_DEFAULT",
            "orders-prod",
            &fp,
            out.to_str().unwrap(),
        ))),
        "wrap",
    );
    let mut a = vec![
        "ceremony".to_string(),
        "sign".into(),
        out.to_str().unwrap().into(),
    ];
    a.extend(card.hsm_args());
    a.extend(["--custodian", "alice", "--key-label", "sig", "--yes"].map(String::from));
    ok(run(card.airgap().args(a)), "ceremony sign");
    ok(
        run(p.bastion().args([
            "import",
            out.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--params",
            params.to_str().unwrap(),
            "--no-expiry",
        ])),
        "import",
    );
    Imported {
        _card: card,
        _hsm: hsm,
        policy,
        dir: out,
        arn,
    }
}

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
        Some("resource_type,region,resource,arn,verdict,reason,key_reference,key_arn,detail,remediation")
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
