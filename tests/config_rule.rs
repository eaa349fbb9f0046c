//! `byok-config-rule` (the AWS Config custom rule) against real peers on
//! loopback: LocalStack (KMS, S3) and moto's server (DynamoDB, RDS, and
//! Config's PutEvaluations in TestMode). Keys went through a real ceremony and
//! import, and one was replaced by `move-alias`. The real binary runs against
//! a stand-in for the Lambda Runtime API (scripts/fake-lambda-runtime.py) and
//! is fed AWS Config's event documents (tests/data/config-events/) filled with
//! the resources' real configuration. Every change event, the oversized one
//! and the periodic run give the verdict, reason and detail that
//! `byok-bastion audit --json` gives over the same estate.
#![cfg(feature = "config-rule")]

mod common;
#[path = "common/iam_eval.rs"]
mod iam_eval;
#[path = "common/localstack.rs"]
mod localstack;
#[path = "common/peers.rs"]
mod peers;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use iam_eval::{actions_of, allows, needs, Keys};
use localstack::Proxy;
use peers::*;
use serde_json::{json, Value};

/// The estate: S3 in LocalStack, DynamoDB and RDS in moto.
const ESTATE: &str = r#"
import sys, boto3
external, old, generated = sys.argv[1:4]
s3 = boto3.client("s3")
def bucket(name, rule):
    s3.create_bucket(Bucket=name)
    if rule:
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule, "BucketKeyEnabled": True}]})
bucket("orders-on-byok", {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": external})
bucket("logs-sse-s3", {"SSEAlgorithm": "AES256"})
bucket("on-aws-managed", {"SSEAlgorithm": "aws:kms"})
bucket("pinned-old", {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": old})
bucket("tmp-on-generated-key", {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": generated})
ddb = boto3.client("dynamodb")
schema = dict(AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
ddb.create_table(TableName="orders", SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": external}, **schema)
ddb.create_table(TableName="sessions-default", **schema)
ddb.create_table(TableName="pinned-old-table", SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": old}, **schema)
rds = boto3.client("rds")
db = dict(DBInstanceClass="db.t3.micro", Engine="postgres", MasterUsername="u", MasterUserPassword="passwordpassword", AllocatedStorage=20)
rds.create_db_instance(DBInstanceIdentifier="orders-db", StorageEncrypted=True, KmsKeyId=external, **db)
rds.create_db_instance(DBInstanceIdentifier="legacy-db", **db)
rds.create_db_cluster(DBClusterIdentifier="orders-cluster", Engine="aurora-postgresql", MasterUsername="u", MasterUserPassword="passwordpassword", StorageEncrypted=True, KmsKeyId=external)
"#;

/// Each resource as AWS Config records it, from the services' own answers:
/// {type, id, name, arn, configuration, supplementary} (camelCase members,
/// as in a configuration item).
const ITEMS: &str = r#"
import json, boto3
from botocore.exceptions import ClientError
def camel(v):
    if isinstance(v, dict):
        return {k[:1].lower() + k[1:]: camel(x) for k, x in v.items()}
    if isinstance(v, list):
        return [camel(x) for x in v]
    return v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
out = []
s3 = boto3.client("s3")
for b in s3.list_buckets()["Buckets"]:
    name = b["Name"]
    try:
        rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
        sse = {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"], "kmsMasterKeyID": r["ApplyServerSideEncryptionByDefault"].get("KMSMasterKeyID")}, "bucketKeyEnabled": r.get("BucketKeyEnabled", False)} for r in rules]}
    except ClientError:
        sse = None
    out.append({"type": "AWS::S3::Bucket", "id": name, "name": name, "arn": "arn:aws:s3:::" + name,
                "configuration": {"name": name}, "supplementary": {"ServerSideEncryptionConfiguration": sse}})
ddb = boto3.client("dynamodb")
for name in ddb.list_tables()["TableNames"]:
    t = ddb.describe_table(TableName=name)["Table"]
    sse = t.get("SSEDescription")
    out.append({"type": "AWS::DynamoDB::Table", "id": name, "name": name, "arn": t["TableArn"],
                "configuration": {"tableName": name, "tableArn": t["TableArn"],
                                  "ssedescription": {"status": sse.get("Status"), "sseType": sse.get("SSEType"), "kmsMasterKeyArn": sse.get("KMSMasterKeyArn")} if sse else None}})
rds = boto3.client("rds")
for d in rds.describe_db_instances()["DBInstances"]:
    out.append({"type": "AWS::RDS::DBInstance", "id": d["DbiResourceId"], "name": d["DBInstanceIdentifier"], "arn": d["DBInstanceArn"],
                "configuration": {"dBInstanceIdentifier": d["DBInstanceIdentifier"], "storageEncrypted": d.get("StorageEncrypted", False),
                                  "kmsKeyId": d.get("KmsKeyId"), "dbiResourceId": d["DbiResourceId"], "dBClusterIdentifier": d.get("DBClusterIdentifier")}})
for c in rds.describe_db_clusters()["DBClusters"]:
    out.append({"type": "AWS::RDS::DBCluster", "id": c["DbClusterResourceId"], "name": c["DBClusterIdentifier"], "arn": c["DBClusterArn"],
                "configuration": {"dBClusterIdentifier": c["DBClusterIdentifier"], "storageEncrypted": c.get("StorageEncrypted", False),
                                  "kmsKeyId": c.get("KmsKeyId"), "dbClusterResourceId": c["DbClusterResourceId"]}})
print(json.dumps(out))
"#;

fn fixture(name: &str) -> Value {
    let path = root().join("tests/data/config-events").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A Lambda event from a fixture, its invokingEvent changed by `edit`.
fn event(name: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut ev = fixture(name);
    let mut inner: Value = serde_json::from_str(ev["invokingEvent"].as_str().unwrap()).unwrap();
    edit(&mut inner);
    ev["invokingEvent"] = Value::String(inner.to_string());
    ev
}

/// `into`'s members replaced by `from`'s.
fn merge(into: &mut Value, from: &Value) {
    if let (Some(a), Some(b)) = (into.as_object_mut(), from.as_object()) {
        for (k, v) in b {
            a.insert(k.clone(), v.clone());
        }
    }
}

/// The change event of a real resource: the fixture of its type with the
/// resource's IDs, ARN and configuration.
fn change_event(item: &Value) -> Value {
    let fixture = match item["type"].as_str().unwrap() {
        "AWS::S3::Bucket" => "change-s3-bucket.json",
        "AWS::DynamoDB::Table" => "change-dynamodb-table.json",
        "AWS::RDS::DBInstance" => "change-rds-dbinstance.json",
        "AWS::RDS::DBCluster" => "change-rds-dbcluster.json",
        other => panic!("{other}"),
    };
    event(fixture, |inv| {
        let ci = &mut inv["configurationItem"];
        ci["resourceId"] = item["id"].clone();
        ci["resourceName"] = item["name"].clone();
        ci["ARN"] = item["arn"].clone();
        merge(&mut ci["configuration"], &item["configuration"]);
        if let Some(s) = item.get("supplementary") {
            merge(&mut ci["supplementaryConfiguration"], s);
        }
    })
}

/// `text` cut to 256 characters as Config's Annotation limit requires.
fn cut(text: &str) -> String {
    if text.chars().count() <= 256 {
        return text.to_string();
    }
    let mut s: String = text.chars().take(255).collect();
    s.push('…');
    s
}

/// The fake Lambda Runtime API and the function, killed when dropped.
struct Lambda {
    runtime: Child,
    function: Child,
    results: std::path::PathBuf,
}

impl Lambda {
    /// Run `byok-config-rule` on `events` with `env` (the peers'
    /// credentials, endpoints through the proxies).
    fn run(dir: &Path, events: &[Value], env: &[(String, String)]) -> Lambda {
        let events_file = dir.join("events.json");
        std::fs::write(&events_file, serde_json::to_vec(events).unwrap()).unwrap();
        let results = dir.join("results.jsonl");
        let mut runtime = Command::new("python3")
            .arg(root().join("scripts/fake-lambda-runtime.py"))
            .arg("--events")
            .arg(&events_file)
            .arg("--results")
            .arg(&results)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut port = String::new();
        BufReader::new(runtime.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        let port: u16 = port.trim().parse().unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_byok-config-rule"));
        for (k, v) in env {
            c.env(k, v);
        }
        let function = c
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .env("AWS_LAMBDA_FUNCTION_NAME", "byok-config-rule")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/byok-config-rule")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/03/02/[$LATEST]0")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .stderr(std::fs::File::create(dir.join("function.log")).unwrap())
            .spawn()
            .unwrap();
        Lambda {
            runtime,
            function,
            results,
        }
    }

    /// The `n` results by invocation ID, waiting for them (at most 5 minutes).
    fn results(&mut self, n: usize, log: &Path) -> BTreeMap<String, Value> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let got: Vec<Value> = std::fs::read_to_string(&self.results)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if got.len() >= n {
                return got
                    .into_iter()
                    .map(|r| (r["id"].as_str().unwrap_or("init").to_string(), r))
                    .collect();
            }
            if let Ok(Some(status)) = self.function.try_wait() {
                panic!(
                    "byok-config-rule exited ({status}) after {} of {n} results:\n{}",
                    got.len(),
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} results after 5 minutes:\n{}",
                got.len(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Lambda {
    fn drop(&mut self) {
        for c in [&mut self.function, &mut self.runtime] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// (type, Config resource ID) → (compliance, annotation) of a response's evaluations.
fn evaluations(response: &Value) -> BTreeMap<(String, String), (String, String, String)> {
    assert_eq!(response["kind"], "response", "{response}");
    response["body"]["evaluations"]
        .as_array()
        .unwrap_or_else(|| panic!("{response}"))
        .iter()
        .map(|e| {
            (
                (
                    e["resource_type"].as_str().unwrap().to_string(),
                    e["resource_id"].as_str().unwrap().to_string(),
                ),
                (
                    e["compliance"].as_str().unwrap().to_string(),
                    e["annotation"].as_str().unwrap().to_string(),
                    e["ordering_timestamp"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn change_oversized_and_periodic_events_judge_as_the_audit_does() {
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
    // The old key, then its replacement: the alias moves on, the old key is
    // tagged byok:replaced-by.
    let old = ceremony(&p);
    move_alias(&old);
    let external = ceremony(&p);
    move_alias(&external);
    let generated = p.python(
        "import boto3; print(boto3.client('kms').create_key()['KeyMetadata']['Arn'])",
        &[],
    );
    p.python(ESTATE, &[&external.arn, &old.arn, &generated]);
    let items: Vec<Value> = serde_json::from_str(&p.python(ITEMS, &[])).unwrap();
    assert_eq!(items.len(), 11, "{items:#?}");
    // Config names resources by these IDs: each must be its own (RDS: DbiResourceId).
    let ids: BTreeSet<(&str, &str)> = items
        .iter()
        .map(|i| (i["type"].as_str().unwrap(), i["id"].as_str().unwrap()))
        .collect();
    assert_eq!(ids.len(), items.len(), "{items:#?}");

    // The audit's answer over the same estate.
    let o = p.bastion().args(["audit", "--json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let audit: BTreeMap<(String, String), Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                (
                    f["resource_type"].as_str().unwrap().to_string(),
                    f["resource"].as_str().unwrap().to_string(),
                ),
                f.clone(),
            )
        })
        .collect();
    assert_eq!(audit.len(), 11, "{report:#}");
    let o = p
        .bastion()
        .args(["audit", "--json", "--allow-kms-generated"])
        .output()
        .unwrap();
    let relaxed_report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let relaxed_audit = relaxed_report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["resource"] == "tmp-on-generated-key")
        .map(|f| {
            let compliance = match f["verdict"].as_str().unwrap() {
                "UNKNOWN" => "INSUFFICIENT_DATA".to_string(),
                v => v.to_string(),
            };
            let annotation = cut(&format!(
                "{}: {}. {}",
                f["reason"].as_str().unwrap(),
                f["detail"].as_str().unwrap(),
                f["remediation"].as_str().unwrap()
            ));
            (compliance, annotation)
        })
        .unwrap();
    let reasons: BTreeSet<&str> = audit
        .values()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    for reason in [
        "COMPLIANT_KEY",
        "KEY_REPLACED",
        "UNENCRYPTED",
        "NOT_CUSTOMER_KEY",
        "NOT_EXTERNAL",
    ] {
        assert!(reasons.contains(reason), "{reason} missing: {report:#}");
    }
    // (type, Config ID) → what the rule must report, from the audit.
    let expected: BTreeMap<(String, String), (String, String)> = items
        .iter()
        .map(|i| {
            let (t, name) = (i["type"].as_str().unwrap(), i["name"].as_str().unwrap());
            let f = &audit[&(t.to_string(), name.to_string())];
            let compliance = match f["verdict"].as_str().unwrap() {
                "UNKNOWN" => "INSUFFICIENT_DATA",
                v => v,
            };
            let annotation = cut(&format!(
                "{}: {}. {}",
                f["reason"].as_str().unwrap(),
                f["detail"].as_str().unwrap(),
                f["remediation"].as_str().unwrap()
            ));
            (
                (t.to_string(), i["id"].as_str().unwrap().to_string()),
                (compliance.to_string(), annotation),
            )
        })
        .collect();

    // The events: one change per resource, a deleted table, the oversized
    // item of the pinned bucket, the periodic run, the generated-key bucket
    // with requireExternal false, and refused parameters.
    let mut events: Vec<Value> = items.iter().map(change_event).collect();
    events.push(event("change-deleted.json", |inv| {
        inv["configurationItem"]["resourceId"] = json!("gone-table");
        inv["configurationItem"]["resourceName"] = json!("gone-table");
    }));
    let pinned = items.iter().find(|i| i["name"] == "pinned-old").unwrap();
    events.push(event("oversized.json", |inv| {
        inv["configurationItemSummary"]["resourceId"] = pinned["id"].clone();
        inv["configurationItemSummary"]["resourceName"] = pinned["name"].clone();
        inv["configurationItemSummary"]["ARN"] = pinned["arn"].clone();
    }));
    events.push(fixture("scheduled.json"));
    let generated_item = items
        .iter()
        .find(|i| i["name"] == "tmp-on-generated-key")
        .unwrap();
    let mut relaxed = change_event(generated_item);
    relaxed["ruleParameters"] = json!(r#"{"maxAgeDays":"365","requireExternal":"false"}"#);
    events.push(relaxed);
    let mut refused = change_event(&items[0]);
    refused["ruleParameters"] = json!(r#"{"maxAgeDays":"forever"}"#);
    events.push(refused);
    let n = events.len();

    // The function reaches KMS and S3 (LocalStack), DynamoDB, RDS and
    // Config (moto) through logging proxies.
    let dir = tempfile::tempdir().unwrap();
    let ls = Proxy::start(&p.var("AWS_ENDPOINT_URL_KMS"), dir.path(), &[]);
    let moto = Proxy::start(&p.var("BYOK_MOTO_ENDPOINT"), dir.path(), &[]);
    let mut env = p.env.clone();
    for (k, url) in [
        ("AWS_ENDPOINT_URL_KMS", ls.url()),
        ("AWS_ENDPOINT_URL_S3", ls.url()),
        ("AWS_ENDPOINT_URL_DYNAMODB", moto.url()),
        ("AWS_ENDPOINT_URL_RDS", moto.url()),
        ("AWS_ENDPOINT_URL_STS", moto.url()),
        ("AWS_ENDPOINT_URL_CONFIG_SERVICE", moto.url()),
    ] {
        env.push((k.to_string(), url));
    }
    let log = dir.path().join("function.log");
    let mut lambda = Lambda::run(dir.path(), &events, &env);
    let results = lambda.results(n, &log);
    drop(lambda);
    let function_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        !results.contains_key("init"),
        "{results:#?}\n{function_log}"
    );

    // Each change event: the audit's verdict, reason and detail, under the
    // item's Config ID, ordered by the item's capture time.
    for (i, item) in items.iter().enumerate() {
        let got = evaluations(&results[&format!("inv-{i}")]);
        let key = (
            item["type"].as_str().unwrap().to_string(),
            item["id"].as_str().unwrap().to_string(),
        );
        let (compliance, annotation, at) = &got[&key];
        assert_eq!(
            (compliance, annotation),
            (&expected[&key].0, &expected[&key].1),
            "{key:?}\n{function_log}"
        );
        assert_eq!(at, "2026-03-02T10:15:30.123Z");
        assert_eq!(got.len(), 1);
    }
    let k = items.len();
    // The deleted table.
    let got = evaluations(&results[&format!("inv-{k}")]);
    let (compliance, annotation, _) =
        &got[&("AWS::DynamoDB::Table".to_string(), "gone-table".to_string())];
    assert_eq!(compliance, "NOT_APPLICABLE");
    assert_eq!(
        annotation,
        "NOT_APPLICABLE: the resource was deleted (ResourceDeleted)"
    );
    // The oversized item, described directly: the audit's KEY_REPLACED.
    let got = evaluations(&results[&format!("inv-{}", k + 1)]);
    let key = ("AWS::S3::Bucket".to_string(), "pinned-old".to_string());
    assert_eq!(
        (&got[&key].0, &got[&key].1),
        (&expected[&key].0, &expected[&key].1)
    );
    assert!(got[&key].1.starts_with("KEY_REPLACED: "), "{got:?}");
    // The periodic run: every resource, as the audit judged it, ordered by
    // the notification's time.
    let got = evaluations(&results[&format!("inv-{}", k + 2)]);
    let periodic: BTreeMap<(String, String), (String, String)> = got
        .iter()
        .map(|(key, (c, a, at))| {
            assert_eq!(at, "2026-03-02T12:00:00Z");
            (key.clone(), (c.clone(), a.clone()))
        })
        .collect();
    assert_eq!(periodic, expected);
    // requireExternal false: as `audit --allow-kms-generated`, the
    // KMS-generated key is no longer NOT_EXTERNAL.
    let got = evaluations(&results[&format!("inv-{}", k + 3)]);
    let (compliance, annotation, _) = got.values().next().unwrap();
    assert!(!annotation.starts_with("NOT_EXTERNAL"), "{annotation}");
    assert_eq!(
        (compliance, annotation),
        (&relaxed_audit.0, &relaxed_audit.1)
    );
    // Refused parameters: a Lambda error with what to do.
    let refused = &results[&format!("inv-{}", k + 4)];
    assert_eq!(refused["kind"], "error", "{refused}");
    assert_eq!(refused["body"]["errorType"], "InvalidRuleParameters");
    assert!(
        refused["body"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("rule parameter maxAgeDays is \"forever\"; give a whole number"),
        "{refused}"
    );

    // What reached Config: one PutEvaluations per evaluated event, in
    // TestMode with the event's token, carrying exactly the evaluations.
    let requests = ls.requests();
    let puts: Vec<&Value> = requests
        .iter()
        .filter(|r| r["target"] == "StarlingDoveService.PutEvaluations")
        .collect();
    assert_eq!(puts.len(), n - 1, "{puts:#?}");
    let mut sent = BTreeSet::new();
    for put in &puts {
        assert_eq!(put["body"]["TestMode"], true, "{put}");
        assert_eq!(put["body"]["ResultToken"], "TESTMODE", "{put}");
        for e in put["body"]["Evaluations"].as_array().unwrap() {
            assert!(e["OrderingTimestamp"].is_number(), "{e}");
            sent.insert((
                e["ComplianceResourceType"].as_str().unwrap().to_string(),
                e["ComplianceResourceId"].as_str().unwrap().to_string(),
                e["ComplianceType"].as_str().unwrap().to_string(),
                e["Annotation"].as_str().unwrap().to_string(),
            ));
        }
    }
    for ((t, id), (c, a)) in &expected {
        assert!(
            sent.contains(&(t.clone(), id.clone(), c.clone(), a.clone())),
            "{t} {id} {c} not sent: {sent:#?}"
        );
    }
    assert!(sent.contains(&(
        "AWS::DynamoDB::Table".into(),
        "gone-table".into(),
        "NOT_APPLICABLE".into(),
        "NOT_APPLICABLE: the resource was deleted (ResourceDeleted)".into()
    )));

    // Least privilege: every request the function sent is allowed by the
    // role policy of deploy/config-rule.yaml, and every action it grants was
    // sent.
    let key_account = external.arn.split(':').nth(4).unwrap().to_string();
    let policy = template_policy(&key_account);
    let mut keys = Keys {
        arns: vec![external.arn.clone(), old.arn.clone(), generated.clone()],
        aliases: BTreeMap::new(),
    };
    let mut used = BTreeSet::new();
    for req in &requests {
        for need in needs(req, &mut keys) {
            assert!(
                allows(&policy, &need, req, &BTreeMap::new()),
                "deploy/config-rule.yaml's role does not allow {} on {} for\n{req}",
                need.action,
                need.resource
            );
            used.insert(need.action);
        }
    }
    let unused: Vec<String> = actions_of(&policy).difference(&used).cloned().collect();
    assert!(
        unused.is_empty(),
        "deploy/config-rule.yaml grants actions the function never sent: {unused:?}"
    );

    // A periodic run over more than 100 resources: PutEvaluations carries at
    // most 100 evaluations per call.
    p.python(
        r#"
import boto3
ddb = boto3.client("dynamodb")
for i in range(95):
    ddb.create_table(TableName=f"bulk-{i:03}", AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
"#,
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let ls = Proxy::start(&p.var("AWS_ENDPOINT_URL_KMS"), dir.path(), &[]);
    let moto = Proxy::start(&p.var("BYOK_MOTO_ENDPOINT"), dir.path(), &[]);
    let mut env = p.env.clone();
    for (k, url) in [
        ("AWS_ENDPOINT_URL_KMS", ls.url()),
        ("AWS_ENDPOINT_URL_S3", ls.url()),
        ("AWS_ENDPOINT_URL_DYNAMODB", moto.url()),
        ("AWS_ENDPOINT_URL_RDS", moto.url()),
        ("AWS_ENDPOINT_URL_CONFIG_SERVICE", moto.url()),
    ] {
        env.push((k.to_string(), url));
    }
    let log = dir.path().join("function.log");
    let mut lambda = Lambda::run(dir.path(), &[fixture("scheduled.json")], &env);
    let results = lambda.results(1, &log);
    drop(lambda);
    let got = evaluations(&results["inv-0"]);
    assert_eq!(got.len(), 11 + 95);
    let batches: Vec<usize> = ls
        .requests()
        .iter()
        .filter(|r| r["target"] == "StarlingDoveService.PutEvaluations")
        .map(|r| r["body"]["Evaluations"].as_array().unwrap().len())
        .collect();
    assert_eq!(batches, [100, 6]);
    assert_eq!(results["inv-0"]["body"]["put_calls"], 2);
}

/// A YAML value as JSON, CloudFormation's short-form tags (`!Ref X`,
/// `!GetAtt A.B`, `!Sub s`, …) turned into their long forms.
fn cfn(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(n).unwrap(),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(cfn).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.as_str().unwrap().to_string(), cfn(v)))
                .collect(),
        ),
        Y::Tagged(t) => {
            let serde_yaml::value::TaggedValue { tag, value } = *t;
            let tag = tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = cfn(value);
            match name {
                "Ref" => json!({ "Ref": inner }),
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (a, b) = s.split_once('.').unwrap();
                        json!({ "Fn::GetAtt": [a, b] })
                    }
                    other => json!({ "Fn::GetAtt": other }),
                },
                other => json!({ format!("Fn::{other}"): inner }),
            }
        }
    }
}

fn template() -> Value {
    let text = std::fs::read_to_string(root().join("deploy/config-rule.yaml")).unwrap();
    cfn(serde_yaml::from_str(&text).unwrap())
}

/// The function role's byok policy with `KeyAccountId` and the partition
/// substituted (`Fn::Sub`) as CloudFormation would.
fn template_policy(key_account: &str) -> Value {
    fn resolve(v: &Value, account: &str) -> Value {
        match v {
            Value::Object(m) if m.len() == 1 && m.contains_key("Fn::Sub") => Value::String(
                m["Fn::Sub"]
                    .as_str()
                    .unwrap()
                    .replace("${AWS::Partition}", "aws")
                    .replace("${KeyAccountId}", account),
            ),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), resolve(v, account)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|v| resolve(v, account)).collect()),
            other => other.clone(),
        }
    }
    let t = template();
    let policies = t["Resources"]["FunctionRole"]["Properties"]["Policies"]
        .as_array()
        .unwrap();
    let byok = policies
        .iter()
        .find(|p| p["PolicyName"] == "byok-config-rule")
        .expect("the role has the byok-config-rule policy");
    resolve(&byok["PolicyDocument"], key_account)
}

#[test]
fn the_template_deploys_the_rule_with_the_printed_policy() {
    let t = template();
    let r = &t["Resources"];
    // The function: bootstrap on provided.al2023 from the zip the parameters name.
    let f = &r["Function"]["Properties"];
    assert_eq!(f["Runtime"], "provided.al2023");
    assert_eq!(f["Handler"], "bootstrap");
    assert_eq!(f["Code"]["S3Bucket"], json!({"Ref": "CodeBucket"}));
    assert_eq!(f["Code"]["S3Key"], json!({"Ref": "CodeKey"}));
    assert_eq!(f["Role"], json!({"Fn::GetAtt": ["FunctionRole", "Arn"]}));
    assert_eq!(f["Architectures"], json!([{"Ref": "Architecture"}]));
    // Config may invoke it, from this account only.
    let perm = &r["ConfigPermission"]["Properties"];
    assert_eq!(perm["Principal"], "config.amazonaws.com");
    assert_eq!(perm["Action"], "lambda:InvokeFunction");
    assert_eq!(perm["SourceAccount"], json!({"Ref": "AWS::AccountId"}));
    // The rule: the four types, the three triggers, the parameters.
    let rule = &r["ConfigRule"]["Properties"];
    assert_eq!(r["ConfigRule"]["Type"], "AWS::Config::ConfigRule");
    assert_eq!(
        rule["Scope"]["ComplianceResourceTypes"],
        json!([
            "AWS::S3::Bucket",
            "AWS::DynamoDB::Table",
            "AWS::RDS::DBInstance",
            "AWS::RDS::DBCluster"
        ])
    );
    assert_eq!(rule["Source"]["Owner"], "CUSTOM_LAMBDA");
    assert_eq!(
        rule["Source"]["SourceIdentifier"],
        json!({"Fn::GetAtt": ["Function", "Arn"]})
    );
    let triggers: Vec<&str> = rule["Source"]["SourceDetails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["EventSource"], "aws.config");
            d["MessageType"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        triggers,
        [
            "ConfigurationItemChangeNotification",
            "OversizedConfigurationItemChangeNotification",
            "ScheduledNotification"
        ]
    );
    assert_eq!(
        rule["MaximumExecutionFrequency"],
        json!({"Ref": "MaximumExecutionFrequency"})
    );
    assert_eq!(
        rule["InputParameters"],
        json!({"maxAgeDays": {"Ref": "MaxAgeDays"}, "requireExternal": {"Ref": "RequireExternal"}})
    );
    // The parameters' defaults are what the rule parses, as Config passes them (strings).
    let params = &t["Parameters"];
    let defaults = json!({
        "maxAgeDays": params["MaxAgeDays"]["Default"].to_string(),
        "requireExternal": params["RequireExternal"]["Default"],
    });
    let parsed =
        byok_ceremony::bastion::config_rule::RuleParameters::parse(Some(&defaults.to_string()))
            .unwrap();
    assert_eq!((parsed.max_age_days, parsed.require_external), (365, true));
    // Alerts: Config NON_COMPLIANT and the audit's FAILED findings go to the
    // topic; an email subscription when AlertEmail is set.
    let topic = json!([{"Id": "alert-topic", "Arn": {"Ref": "AlertTopic"}}]);
    let config_alert = &r["NonCompliantEvaluationRule"]["Properties"];
    assert_eq!(config_alert["Targets"], topic);
    assert_eq!(
        config_alert["EventPattern"]["source"],
        json!(["aws.config"])
    );
    assert_eq!(
        config_alert["EventPattern"]["detail"]["newEvaluationResult"]["complianceType"],
        json!(["NON_COMPLIANT"])
    );
    let hub_alert = &r["FailedFindingRule"]["Properties"];
    assert_eq!(hub_alert["Targets"], topic);
    assert_eq!(
        hub_alert["EventPattern"]["detail"]["findings"]["Compliance"]["Status"],
        json!(["FAILED"])
    );
    assert_eq!(
        hub_alert["EventPattern"]["detail"]["findings"]["GeneratorId"],
        json!(["byok-ceremony/audit/kms-key-compliance"])
    );
    assert_eq!(r["AlertSubscription"]["Condition"], "HasAlertEmail");
    assert_eq!(r["AlertSubscription"]["Properties"]["Protocol"], "email");

    // The role's byok policy is exactly what iam-policy prints for the role.
    let o = Command::new(env!("CARGO_BIN_EXE_byok-bastion"))
        .args([
            "iam-policy",
            "--role",
            "config-rule",
            "--account",
            "111122223333",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let printed: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(template_policy("111122223333"), printed);
    // Its other policy is Lambda's logging, on the function's own log group.
    let logs = r["FunctionRole"]["Properties"]["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["PolicyName"] == "lambda-logs")
        .unwrap();
    assert_eq!(
        logs["PolicyDocument"]["Statement"],
        json!([{
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [{"Fn::GetAtt": ["FunctionLogGroup", "Arn"]}]
        }])
    );
}
