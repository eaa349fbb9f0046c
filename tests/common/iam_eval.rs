//! IAM as the policy tests need it: which authorisations a logged request
//! (scripts/latency-proxy.py --log) needs, and whether a printed policy
//! allows them (included with `#[path]` by tests/iam_policy.rs and
//! tests/config_rule.rs).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// One IAM authorisation a request needs: action on resource, with the
/// request's condition values.
pub struct Need {
    pub action: String,
    pub resource: String,
}

/// What the recorded requests tell about keys: ID → ARN, alias → ARN.
#[derive(Default)]
pub struct Keys {
    pub arns: Vec<String>,
    pub aliases: BTreeMap<String, String>,
}

impl Keys {
    fn arn(&self, key_id: &str) -> String {
        if key_id.starts_with("arn:") && key_id.contains(":key/") {
            return key_id.to_string();
        }
        if key_id.starts_with("alias/") || key_id.contains(":alias/") {
            let name = &key_id[key_id.find("alias/").unwrap()..];
            return self
                .aliases
                .get(name)
                .cloned()
                .unwrap_or_else(|| panic!("alias {name} unknown"));
        }
        self.arns
            .iter()
            .find(|a| a.ends_with(&format!("/{key_id}")))
            .cloned()
            .unwrap_or_else(|| panic!("key {key_id} unknown"))
    }

    fn alias_arn(&self, name: &str) -> String {
        let prefix = self.arns[0].split(":key/").next().unwrap();
        format!("{prefix}:{name}")
    }
}

/// The authorisations a logged request needs, per IAM's rules for the
/// service (alias operations need the alias and the keys; CreateKey with
/// tags needs TagResource).
pub fn needs(req: &Value, keys: &mut Keys) -> Vec<Need> {
    let body = &req["body"];
    let target = req["target"].as_str().unwrap();
    let any = |action: String| Need {
        action,
        resource: "*".into(),
    };
    if let Some(op) = target.strip_prefix("TrentService.") {
        let action = format!("kms:{op}");
        let on = |resource: String| Need {
            action: action.clone(),
            resource,
        };
        return match op {
            "CreateKey" => {
                let mut v = vec![any(action.clone())];
                if body["Tags"].as_array().is_some_and(|t| !t.is_empty()) {
                    v.push(any("kms:TagResource".into()));
                }
                v
            }
            "ListKeys" | "ListAliases" => vec![any(action)],
            "CreateAlias" | "UpdateAlias" => {
                let name = body["AliasName"].as_str().unwrap();
                let target = keys.arn(body["TargetKeyId"].as_str().unwrap());
                let mut v = vec![on(keys.alias_arn(name)), on(target.clone())];
                if let Some(old) = keys.aliases.get(name) {
                    v.push(on(old.clone()));
                }
                keys.aliases.insert(name.to_string(), target);
                v
            }
            _ => vec![on(keys.arn(
                body["KeyId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{op} without KeyId: {body}")),
            ))],
        };
    }
    if let Some(op) = target.strip_prefix("DynamoDB_20120810.") {
        return vec![any(format!("dynamodb:{op}"))];
    }
    if let Some(op) = target.strip_prefix("StarlingDoveService.") {
        return vec![any(format!("config:{op}"))];
    }
    if let Some(op) = target.strip_prefix("AWSOrganizationsV20161128.") {
        return vec![any(format!("organizations:{op}"))];
    }
    if let Some(form) = body.as_str() {
        let param = |k: &str| {
            form.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .map(|v| {
                    v.replace("%3A", ":")
                        .replace("%2F", "/")
                        .replace("%7B", "{")
                        .replace("%7D", "}")
                })
        };
        match param("Action").as_deref() {
            // Never denied: IAM does not authorise GetCallerIdentity.
            Some("GetCallerIdentity") => return vec![],
            Some("AssumeRole") => {
                return vec![Need {
                    action: "sts:AssumeRole".into(),
                    resource: param("RoleArn").unwrap(),
                }]
            }
            Some(action) => return vec![any(format!("rds:{action}"))],
            None => {}
        }
    }
    // Security Hub (REST-JSON).
    match (
        req["method"].as_str().unwrap(),
        req["path"].as_str().unwrap(),
    ) {
        ("POST", "/findings/import") => return vec![any("securityhub:BatchImportFindings".into())],
        ("POST", "/findings") => return vec![any("securityhub:GetFindings".into())],
        _ => {}
    }
    // S3 (REST, path style): the operation from the query.
    let path = req["path"].as_str().unwrap();
    let query: Vec<&str> = path
        .split_once('?')
        .map_or(vec![], |(_, q)| q.split('&').collect());
    let has = |k: &str| {
        query
            .iter()
            .any(|p| *p == k || p.starts_with(&format!("{k}=")))
    };
    let action = match (
        req["method"].as_str().unwrap(),
        path.split('?').next().unwrap(),
    ) {
        ("GET", "/") => "s3:ListAllMyBuckets",
        ("GET", _) if has("encryption") => "s3:GetEncryptionConfiguration",
        ("GET", _) if has("location") => "s3:GetBucketLocation",
        ("PUT", _) if has("encryption") => "s3:PutEncryptionConfiguration",
        _ => panic!("a request this test cannot map to an IAM action: {req}"),
    };
    vec![any(action.into())]
}

/// The value a condition key takes for this request (None: absent).
pub fn condition_value(
    key: &str,
    req: &Value,
    resource_tags: &BTreeMap<String, String>,
) -> Option<String> {
    let body = &req["body"];
    let field = |f: &str| match &body[f] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(format!("{}", n.as_f64().unwrap() as i64)),
        _ => None,
    };
    if let Some(k) = key.strip_prefix("aws:ResourceTag/") {
        return resource_tags.get(k).cloned();
    }
    if let Some(k) = key.strip_prefix("aws:RequestTag/") {
        return body["Tags"]
            .as_array()?
            .iter()
            .find(|t| t["TagKey"] == k)
            .map(|t| t["TagValue"].as_str().unwrap().to_string());
    }
    if let Some(k) = key.strip_prefix("kms:EncryptionContext:") {
        return body["EncryptionContext"][k].as_str().map(String::from);
    }
    match key {
        "kms:KeyOrigin" => field("Origin"),
        "kms:WrappingAlgorithm" => field("WrappingAlgorithm"),
        "kms:WrappingKeySpec" => field("WrappingKeySpec"),
        "kms:ExpirationModel" => field("ExpirationModel"),
        "kms:ValidTo" => field("ValidTo"),
        "kms:ScheduleKeyDeletionPendingWindowInDays" => field("PendingWindowInDays"),
        _ => panic!("the policy uses condition key {key}, which this test cannot evaluate"),
    }
}

pub fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, rest)) => {
            s.starts_with(head)
                && (0..=s.len() - head.len()).any(|i| glob(rest, &s[head.len() + i..]))
        }
    }
}

/// Does `policy` allow `need` for `req`? (Allow statements only; the
/// printed role policies have no Deny.)
pub fn allows(
    policy: &Value,
    need: &Need,
    req: &Value,
    tags: &BTreeMap<String, BTreeMap<String, String>>,
) -> bool {
    let none = BTreeMap::new();
    let resource_tags = tags.get(&need.resource).unwrap_or(&none);
    policy["Statement"].as_array().unwrap().iter().any(|s| {
        assert_eq!(s["Effect"], "Allow", "{s}");
        let actions = s["Action"].as_array().unwrap();
        let resources = s["Resource"].as_array().unwrap();
        actions.iter().any(|a| a == need.action.as_str())
            && resources
                .iter()
                .any(|r| glob(r.as_str().unwrap(), &need.resource))
            && s["Condition"].as_object().is_none_or(|ops| {
                ops.iter().all(|(op, kv)| {
                    kv.as_object().unwrap().iter().all(|(key, values)| {
                        let Some(got) = condition_value(key, req, resource_tags) else {
                            return false;
                        };
                        let values = values
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|v| v.as_str().unwrap());
                        let num = |v: &str| v.parse::<i64>().unwrap();
                        match op.as_str() {
                            "StringEquals" => values.into_iter().any(|v| v == got),
                            "NumericLessThanEquals" => {
                                values.into_iter().any(|v| num(&got) <= num(v))
                            }
                            "NumericGreaterThanEquals" => {
                                values.into_iter().any(|v| num(&got) >= num(v))
                            }
                            _ => panic!("condition operator {op} not evaluated by this test"),
                        }
                    })
                })
            })
    })
}

/// Actions an AWS service sends on the caller's behalf (statements limited
/// by `kms:ViaService`): the proxy never sees them, so they cannot count as
/// unused.
pub fn service_side(policy: &Value) -> BTreeSet<String> {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Condition"]["StringLike"]["kms:ViaService"].is_array())
        .flat_map(|s| s.as_array_of("Action"))
        .collect()
}

pub fn actions_of(policy: &Value) -> BTreeSet<String> {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s.as_array_of("Action"))
        .collect()
}

pub trait Strings {
    fn as_array_of(&self, field: &str) -> Vec<String>;
}

impl Strings for Value {
    fn as_array_of(&self, field: &str) -> Vec<String> {
        self[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }
}
