//! `byok-bastion iam-policy` against what the bastion really sends (issue 13):
//! every command runs through scripts/latency-proxy.py, which logs each
//! request to KMS, S3, DynamoDB and RDS; each request is then checked against
//! the printed policy of the role that ran the command (actions, resources,
//! conditions, as IAM evaluates them), and every printed action must have
//! been needed by some request of that role.
#![cfg(feature = "bastion")]

mod common;
#[path = "common/iam_eval.rs"]
mod iam_eval;
#[path = "common/localstack.rs"]
mod localstack;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};

use common::*;
use iam_eval::*;
use localstack::*;
use serde_json::Value;

/// The estate under test: what the commands created, and who sent what.
struct Estate<'a> {
    ls: &'a LocalStack,
    /// In front of LocalStack (KMS, S3).
    rec: Proxy,
    /// In front of moto (DynamoDB, RDS), logging to the same file.
    moto_rec: Proxy,
    sent: Vec<(&'static str, Value)>,
}

impl Estate<'_> {
    /// Run byok-bastion as `role` (every AWS call through the recorder); it must succeed.
    fn bastion(&mut self, role: &'static str, args: &[&str]) -> Output {
        let o = self.attempt(role, args);
        ok(o, &format!("{role}: byok-bastion {}", args[0]))
    }

    /// Run byok-bastion as `role`, whatever its outcome (a refusal also
    /// sends requests that the role must be allowed to send).
    fn attempt(&mut self, role: &'static str, args: &[&str]) -> Output {
        let before = self.rec.requests().len();
        let url = |r: &Proxy| format!("http://127.0.0.1:{}", r.port);
        let mut c = self.ls.bastion();
        c.env_remove("AWS_ENDPOINT_URL");
        for service in ["KMS", "S3"] {
            c.env(format!("AWS_ENDPOINT_URL_{service}"), url(&self.rec));
        }
        for service in ["DYNAMODB", "RDS", "SECURITYHUB", "STS", "ORGANIZATIONS"] {
            c.env(format!("AWS_ENDPOINT_URL_{service}"), url(&self.moto_rec));
        }
        let o = run(c.args(args));
        let after = self.rec.requests();
        assert!(after.len() > before, "{role}: {} sent nothing", args[0]);
        self.sent
            .extend(after[before..].iter().cloned().map(|r| (role, r)));
        o
    }
}

fn iam_policy(ls: &LocalStack, args: &[&str]) -> Value {
    let o = ok(run(ls.bastion().arg("iam-policy").args(args)), "iam-policy");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    for s in v["Statement"].as_array().unwrap() {
        for a in s["Action"].as_array().unwrap() {
            assert!(
                !a.as_str().unwrap().contains('*'),
                "wildcard action in a role policy: {s}"
            );
        }
    }
    v
}

fn rfc3339_in_days(days: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    t.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn every_request_of_every_role_is_allowed_by_its_printed_policy_and_nothing_more_is_printed() {
    let ls = LocalStack::start_with("kms,s3");
    let moto = Moto::start();
    let hsm = SoftHsm::new("iam");
    let nss = NssDb::new();
    // The first two ImportKeyMaterial responses (HMAC, RSA) are lost after
    // KMS applied them: the importer's re-checks (GenerateMac, GetPublicKey)
    // are part of what it must be allowed.
    let moto_rec = Proxy::start(&moto.var("AWS_ENDPOINT_URL_RDS"), hsm.dir.path(), &[]);
    let rec = Proxy::start(
        &ls.endpoint(),
        hsm.dir.path(),
        &[
            "--fault",
            "ImportKeyMaterial:reset-after:1",
            "--max-faults",
            "2",
        ],
    );
    let mut e = Estate {
        ls: &ls,
        rec,
        moto_rec,
        sent: Vec::new(),
    };
    let (alice_t, alice) = custodian_card("alice");
    let policy = hsm.path("policy.json");
    std::fs::write(&policy, serde_json::json!({"format": "byok-ceremony/custodian-policy/v1", "threshold": 1, "custodians": [alice]}).to_string()).unwrap();
    let policy = policy.to_str().unwrap().to_string();

    // Preparer: four EXTERNAL keys tagged team=payments, one named by an alias,
    // and parameters for new material of the AES key.
    let prepare =
        |e: &mut Estate, what: &[&str], alg: &str, dir: &str| -> (String, String, String) {
            let out = hsm.path(dir);
            let mut a = vec!["prepare"];
            a.extend(what);
            a.extend([
                "--wrapping-algorithm",
                alg,
                "--out-dir",
                out.to_str().unwrap(),
                "--json",
            ]);
            let v = json(&e.bastion("preparer", &a));
            (
                v[0]["params_file"].as_str().unwrap().into(),
                v[0]["key_arn"].as_str().unwrap().into(),
                v[0]["wrapping_key_sha256"].as_str().unwrap().into(),
            )
        };
    let tagged = ["--tag", "team=payments"];
    let hooks1 = prepare(
        &mut e,
        &[
            &["--create", "HMAC_256", "--alias", "alias/iam-hooks"][..],
            &tagged,
        ]
        .concat(),
        "RSAES_OAEP_SHA_1",
        "p-hooks1",
    );
    let hooks2 = prepare(
        &mut e,
        &[&["--create", "HMAC_256"][..], &tagged].concat(),
        "RSAES_OAEP_SHA_1",
        "p-hooks2",
    );
    let orders1 = prepare(
        &mut e,
        &[&["--create", "SYMMETRIC_DEFAULT"][..], &tagged].concat(),
        "RSAES_OAEP_SHA_1",
        "p-orders1",
    );
    let signing = prepare(
        &mut e,
        &[&["--create", "RSA_2048"][..], &tagged].concat(),
        "RSA_AES_KEY_WRAP_SHA_256",
        "p-signing",
    );
    let orders2 = prepare(
        &mut e,
        &["--key", &orders1.1],
        "RSAES_OAEP_SHA_1",
        "p-orders2",
    );
    // The AES key that replaces the orders key later (alias move, then repoint).
    let ordersb = prepare(
        &mut e,
        &[&["--create", "SYMMETRIC_DEFAULT"][..], &tagged].concat(),
        "RSAES_OAEP_SHA_1",
        "p-ordersb",
    );

    // The air gap: SoftHSM2 for HMAC and AES, NSS for RSA; alice signs each.
    let d_hooks1 = wrap_and_sign(&hsm, &alice_t, &hooks1, "HMAC_256", "hooks-v1");
    let d_hooks2 = wrap_and_sign(&hsm, &alice_t, &hooks2, "HMAC_256", "hooks-v2");
    let d_orders1 = wrap_and_sign(&hsm, &alice_t, &orders1, "SYMMETRIC_DEFAULT", "orders-v1");
    let d_orders2 = wrap_and_sign(&hsm, &alice_t, &orders2, "SYMMETRIC_DEFAULT", "orders-v2");
    let d_signing = wrap_and_sign(&nss, &alice_t, &signing, "RSA_2048", "signing");
    let d_ordersb = wrap_and_sign(&hsm, &alice_t, &ordersb, "SYMMETRIC_DEFAULT", "orders-b");

    // Importer: one expiring import (whose response is lost), the rest not,
    // new material for the AES key, then rotate to it.
    let valid_to = rfc3339_in_days(30);
    let import = |e: &mut Estate, dir: &str, params: &str, extra: &[&str]| {
        let mut a = vec![
            "import", dir, "--policy", &policy, "--params", params, "--json",
        ];
        a.extend(extra);
        e.bastion("importer", &a)
    };
    let o = import(&mut e, &d_hooks1, &hooks1.0, &["--valid-to", &valid_to]);
    assert!(
        json(&o)["how"].as_str().unwrap().starts_with("reconciled"),
        "{}",
        stderr(&o)
    );
    let o = import(&mut e, &d_signing, &signing.0, &["--no-expiry"]);
    assert!(
        json(&o)["how"].as_str().unwrap().starts_with("reconciled"),
        "{}",
        stderr(&o)
    );
    import(&mut e, &d_hooks2, &hooks2.0, &["--no-expiry"]);
    import(&mut e, &d_orders1, &orders1.0, &["--no-expiry"]);
    import(
        &mut e,
        &d_orders2,
        &orders2.0,
        &["--no-expiry", "--new-key-material"],
    );
    e.bastion("importer", &["rotate", &d_orders2, "--policy", &policy]);

    // Verifier: HMAC (GenerateMac), AES (round trip, material IDs), RSA (GetPublicKey).
    for d in [&d_hooks1, &d_orders2, &d_signing] {
        e.bastion("verifier", &["verify", d, "--policy", &policy]);
    }
    // The AES key's replaced material: usable, not proven (ListKeyRotations shows why).
    let o = e.attempt("verifier", &["verify", &d_orders1, "--policy", &policy]);
    assert!(!o.status.success(), "{}", stderr(&o));

    // Alias manager: move the existing alias, create new ones (HMAC, AES,
    // RSA), refuse the AES key's replaced material, retire the old key.
    let move_alias = |e: &mut Estate, dir: &str, alias: &str| {
        e.attempt(
            "alias-manager",
            &["move-alias", dir, "--alias", alias, "--policy", &policy],
        )
    };
    for (dir, alias) in [
        (&d_hooks2, "alias/iam-hooks"),
        (&d_orders2, "alias/iam-orders"),
        (&d_signing, "alias/iam-signing"),
    ] {
        ok(move_alias(&mut e, dir, alias), "move-alias");
    }
    let o = move_alias(&mut e, &d_orders1, "alias/iam-orders-old");
    assert!(
        !o.status.success() && stderr(&o).contains("the alias stays where it is"),
        "{}",
        stderr(&o)
    );
    e.bastion(
        "alias-manager",
        &["retire", "--key", &hooks1.1, "--grace-days", "7"],
    );

    // Auditor: key status, and an audit that finds a bucket and a table on the AES key.
    let python = ls.var("BYOK_LOCALSTACK_PYTHON").unwrap();
    let mut c = Command::new(python);
    for (k, v) in ls.env.iter().chain(&moto.env) {
        c.env(k, v);
    }
    ok(
        run(c.arg("-c").arg(
            "import boto3,sys\ns3=boto3.client('s3')\ns3.create_bucket(Bucket='iam-orders')\n\
             s3.put_bucket_encryption(Bucket='iam-orders',ServerSideEncryptionConfiguration={'Rules':[{'ApplyServerSideEncryptionByDefault':{'SSEAlgorithm':'aws:kms','KMSMasterKeyID':sys.argv[1]}}]})\n\
             boto3.client('dynamodb').create_table(TableName='iam-orders',BillingMode='PAY_PER_REQUEST',\
             AttributeDefinitions=[{'AttributeName':'id','AttributeType':'S'}],KeySchema=[{'AttributeName':'id','KeyType':'HASH'}],\
             SSESpecification={'Enabled':True,'SSEType':'KMS','KMSMasterKeyId':sys.argv[1]})",
        ).arg(&orders1.1)),
        "create bucket and table",
    );
    let mut py = Command::new(moto.var("BYOK_MOTO_PYTHON"));
    for (k, v) in ls.env.iter().chain(&moto.env) {
        py.env(k, v);
    }
    ok(
        run(py.arg("-c").arg(
            "import boto3\nboto3.client('securityhub').enable_security_hub()\n\
             boto3.client('organizations').create_organization(FeatureSet='ALL')",
        )),
        "enable Security Hub, create the organization",
    );
    let role = "arn:aws:iam::{account}:role/byok-audit";
    for args in [
        &["status", "--json"][..],
        &["audit", "--json", "--security-hub"][..],
        &[
            "audit",
            "--json",
            "--role-arn",
            role,
            "--accounts",
            "111111111111",
        ][..],
        &["audit", "--json", "--role-arn", role, "--organization"][..],
    ] {
        // Exit code 3 (keys or resources need action) is an answer, not a failure.
        let o = e.attempt("auditor", args);
        assert!(
            matches!(o.status.code(), Some(0 | 3)),
            "{args:?}: {}",
            stderr(&o)
        );
    }

    // The orders alias moves to a new key; the remediator moves the bucket
    // and the table that pin the old one by ARN.
    import(&mut e, &d_ordersb, &ordersb.0, &["--no-expiry"]);
    ok(
        move_alias(&mut e, &d_ordersb, "alias/iam-orders"),
        "move-alias to orders-b",
    );
    let o = e.attempt("remediator", &["repoint", "--apply", "--json"]);
    assert!(o.status.success(), "repoint: {}", stderr(&o));
    let r = json(&o);
    assert_eq!(
        r.to_string().matches("\"APPLIED\"").count(),
        2,
        "the bucket and the table are repointed: {r:#}"
    );

    // The policies, scoped as an administrator would scope them.
    let (account, region) = {
        let p: Vec<&str> = hooks1.1.split(':').collect();
        (p[4].to_string(), p[3].to_string())
    };
    let all_keys: Vec<String> = [&hooks1.1, &hooks2.1, &orders1.1, &signing.1, &ordersb.1]
        .map(|s| s.to_string())
        .to_vec();
    let by_account = ["--account", &account, "--regions", &region];
    let key_args: Vec<&str> = all_keys
        .iter()
        .flat_map(|k| ["--key-arn", k.as_str()])
        .collect();
    let policies: BTreeMap<&str, Value> = BTreeMap::from([
        (
            "preparer",
            iam_policy(
                &ls,
                &[&["--role", "preparer"][..], &by_account, &tagged].concat(),
            ),
        ),
        (
            "importer",
            iam_policy(&ls, &[&["--role", "importer"][..], &key_args].concat()),
        ),
        (
            "verifier",
            iam_policy(
                &ls,
                &[&["--role", "verifier"][..], &by_account, &tagged].concat(),
            ),
        ),
        (
            "alias-manager",
            iam_policy(
                &ls,
                &[
                    &["--role", "alias-manager", "--alias-prefix", "iam-"][..],
                    &key_args,
                ]
                .concat(),
            ),
        ),
        (
            "auditor",
            iam_policy(
                &ls,
                &[
                    &["--role", "auditor", "--security-hub", "--organization"][..],
                    &["--assume-role", role],
                    &by_account,
                ]
                .concat(),
            ),
        ),
        (
            "remediator",
            iam_policy(&ls, &[&["--role", "remediator"][..], &by_account].concat()),
        ),
    ]);
    // Stricter variants that must refuse some of what was sent.
    let expiring_only = iam_policy(
        &ls,
        &[
            &[
                "--role",
                "importer",
                "--material-expires-by",
                &rfc3339_in_days(60),
            ][..],
            &key_args,
        ]
        .concat(),
    );
    let sha256_only = iam_policy(
        &ls,
        &[
            &[
                "--role",
                "preparer",
                "--wrapping-algorithm",
                "RSA_AES_KEY_WRAP_SHA_256",
            ][..],
            &by_account,
            &tagged,
        ]
        .concat(),
    );
    let other_team = iam_policy(
        &ls,
        &[
            &["--role", "verifier", "--tag", "team=other"][..],
            &by_account,
        ]
        .concat(),
    );

    let mut tags: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for arn in &all_keys {
        let o = ok(
            run(ls.peer().args(["list-tags", "--key-id", arn])),
            "list-tags",
        );
        tags.insert(arn.clone(), serde_json::from_slice(&o.stdout).unwrap());
    }
    let mut keys = Keys {
        arns: all_keys.clone(),
        aliases: BTreeMap::new(),
    };
    let mut used: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut refused = BTreeMap::<&str, usize>::new();
    for (role, req) in &e.sent {
        for need in needs(req, &mut keys) {
            assert!(
                allows(&policies[role], &need, req, &tags),
                "the {role} policy does not allow {} on {} for\n{req}\npolicy: {:#}",
                need.action,
                need.resource,
                policies[role]
            );
            used.entry(role).or_default().insert(need.action.clone());
            let stricter = match (*role, need.action.as_str()) {
                ("importer", "kms:ImportKeyMaterial") => Some(("no-expiry import", &expiring_only)),
                ("preparer", "kms:GetParametersForImport") => {
                    Some(("OAEP parameters", &sha256_only))
                }
                ("verifier", a) if a != "kms:ListKeys" => {
                    Some(("another team's keys", &other_team))
                }
                _ => None,
            };
            if let Some((what, p)) = stricter {
                if !allows(p, &need, req, &tags) {
                    *refused.entry(what).or_default() += 1;
                }
            }
        }
    }
    for (role, policy) in &policies {
        let unused: Vec<String> = actions_of(policy)
            .difference(&used[role])
            .filter(|a| !service_side(policy).contains(*a))
            .cloned()
            .collect();
        assert!(
            unused.is_empty(),
            "the {role} policy prints actions no command of the role sent: {unused:?}"
        );
    }
    // The stricter policies refuse exactly what they should: the four
    // no-expiry imports, the four OAEP parameter requests, every verifier
    // request on a key of team=payments.
    assert_eq!(refused.get("no-expiry import"), Some(&5), "{refused:?}");
    assert_eq!(refused.get("OAEP parameters"), Some(&5), "{refused:?}");
    let verifier_key_requests = e.sent.iter().filter(|(r, _)| *r == "verifier").count();
    assert_eq!(
        refused.get("another team's keys"),
        Some(&verifier_key_requests),
        "{refused:?}"
    );
}

/// Wrap the prepared key's material on `t` and have alice sign the bundle.
fn wrap_and_sign(
    t: &impl TestToken,
    alice: &SoftHsm,
    p: &(String, String, String),
    spec: &str,
    label: &str,
) -> String {
    let out = t.file(&format!("b-{label}"));
    ok(
        run(t.command().args(bastion_wrap_args(
            t,
            &p.0,
            spec,
            label,
            &p.2,
            out.to_str().unwrap(),
        ))),
        "wrap",
    );
    sign(alice, "alice", &out);
    out.to_str().unwrap().to_string()
}
