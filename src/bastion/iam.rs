//! Least-privilege IAM policies for the roles that run `byok-bastion`, and
//! key-policy statements for keys kept in a central security account.
//!
//! The policies are data (this module never calls AWS): each role lists the
//! commands it runs and, per statement, the KMS actions those commands send,
//! the resources (key ARNs, or every key of the account and Regions narrowed
//! by tags) and KMS's own condition keys where KMS has one for the request
//! (`kms:KeyOrigin`, `kms:WrappingAlgorithm`, `kms:WrappingKeySpec`,
//! `kms:ExpirationModel`, `kms:ValidTo`,
//! `kms:ScheduleKeyDeletionPendingWindowInDays`, `kms:EncryptionContext:…`).
//! `tests/iam_policy.rs` runs every command through a recording proxy and
//! checks each KMS request against the printed policy of the role that sent
//! it, and that no printed action goes unused. docs/iam.md explains each
//! statement.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;

/// The encryption context `verify`'s AES round trip sends, so that a
/// verifier's Encrypt/Decrypt permission can be limited to its own probe
/// (workload ciphertexts carry other contexts, or none).
pub const ROUND_TRIP_CONTEXT: (&str, &str) = ("byok-ceremony", "round-trip");

/// The wrapping algorithms `byok-airgap` produces.
pub const WRAPPING_ALGORITHMS: [&str; 4] = [
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "RSA_AES_KEY_WRAP_SHA_1",
    "RSA_AES_KEY_WRAP_SHA_256",
];

/// The wrapping key specs `byok-airgap` accepts.
pub const WRAPPING_KEY_SPECS: [&str; 3] = ["RSA_2048", "RSA_3072", "RSA_4096"];

/// The shortest deletion window `retire` accepts (days).
pub const MIN_GRACE_DAYS: u32 = 7;

/// A role that runs some of `byok-bastion`'s commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Role {
    /// `prepare`: creates EXTERNAL keys (with tags and an alias) and fetches import parameters.
    Preparer,
    /// `import` and `rotate`: uploads signed key material and makes new material current.
    Importer,
    /// `verify`: asks KMS to prove it holds the HSM's key.
    Verifier,
    /// `status` and `audit`: read-only.
    Auditor,
    /// `move-alias` and `retire`: proves a key, moves an alias to it, retires the old key.
    AliasManager,
    /// `repoint`: moves S3 buckets and DynamoDB tables off replaced keys.
    Remediator,
    /// The `byok-config-rule` Lambda function (AWS Config custom rule):
    /// the audit's reads and `config:PutEvaluations`.
    ConfigRule,
}

impl Role {
    /// Every role, in the order docs/iam.md lists them.
    pub const ALL: [Role; 7] = [
        Role::Preparer,
        Role::Importer,
        Role::Verifier,
        Role::Auditor,
        Role::AliasManager,
        Role::Remediator,
        Role::ConfigRule,
    ];

    /// The `byok-bastion` commands this role runs.
    pub fn commands(self) -> &'static [&'static str] {
        match self {
            Role::Preparer => &["prepare", "params-digest"],
            Role::Importer => &["import", "rotate"],
            Role::Verifier => &["verify"],
            Role::Auditor => &["status", "audit"],
            Role::AliasManager => &["move-alias", "retire"],
            Role::Remediator => &["repoint"],
            // Not a byok-bastion command: the byok-config-rule function.
            Role::ConfigRule => &[],
        }
    }

    /// The name on the command line (`alias-manager`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Preparer => "preparer",
            Role::Importer => "importer",
            Role::Verifier => "verifier",
            Role::Auditor => "auditor",
            Role::AliasManager => "alias-manager",
            Role::Remediator => "remediator",
            Role::ConfigRule => "config-rule",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a policy may touch.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// AWS partition (`aws`, `aws-cn`, `aws-us-gov`).
    pub partition: String,
    /// The account that holds the keys (`*` when only key ARNs are given).
    pub account: Option<String>,
    /// Regions of the keys (none: every Region).
    pub regions: Vec<String>,
    /// Exactly these keys (ARNs); none: every key of the account and Regions.
    pub key_arns: Vec<String>,
    /// Only keys carrying these tags (`aws:ResourceTag`); `prepare` must set
    /// them when it creates a key (`aws:RequestTag`).
    pub tags: Vec<(String, String)>,
    /// Alias names the role may create or move start with this (after `alias/`).
    pub alias_prefix: Option<String>,
    /// Wrapping algorithms `GetParametersForImport` may ask for.
    pub wrapping_algorithms: Vec<String>,
    /// Wrapping key specs `GetParametersForImport` may ask for.
    pub wrapping_key_specs: Vec<String>,
    /// Imported material must expire no later than this (`ImportKeyMaterial`
    /// with `KEY_MATERIAL_EXPIRES` and `ValidTo` at most this).
    pub material_expires_by: Option<OffsetDateTime>,
    /// The shortest deletion window `ScheduleKeyDeletion` may ask for.
    pub min_grace_days: u32,
    /// `audit --security-hub`: publish findings.
    pub security_hub: bool,
    /// `audit`/`repoint --role-arn TEMPLATE`: the roles to assume in other accounts.
    pub assume_role: Option<String>,
    /// With `assume_role`: the accounts (`--accounts`); none: any account.
    pub accounts: Vec<String>,
    /// `audit`/`repoint --organization`: list the organization's accounts.
    pub organization: bool,
}

/// Why a scope cannot become a policy.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IamError {
    /// Neither an account nor key ARNs.
    #[error("say which keys the policy covers: --account ID (every key of that account, narrowed by --regions and --tag) or --key-arn ARN (repeatable)")]
    NoScope,
    /// An account ID that is not 12 digits.
    #[error("{0:?} is not an AWS account ID (12 digits)")]
    BadAccount(String),
    /// A key ARN that is not `arn:PARTITION:kms:REGION:ACCOUNT:key/ID`.
    #[error("{0:?} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID); aliases and key IDs cannot scope a policy")]
    BadKeyArn(String),
    /// A Region name with characters no Region has.
    #[error("{0:?} is not a Region name")]
    BadRegion(String),
    /// A tag key or value that IAM cannot match literally.
    #[error("tag {0:?}: keys and values may not contain '*', '?', '$' or '/' here, and the key may not be empty")]
    BadTag(String),
    /// An alias prefix that is not an alias name.
    #[error("alias prefix {0:?}: letters, digits, '/', '_' and '-' only, not starting with aws/")]
    BadAliasPrefix(String),
    /// A wrapping algorithm or key spec the tool does not use.
    #[error("{what} {value:?} is not one the tool uses ({allowed})")]
    NotUsed {
        /// What was given.
        what: &'static str,
        /// The value.
        value: String,
        /// The accepted values.
        allowed: String,
    },
    /// A deletion window KMS does not accept.
    #[error("--min-grace-days {0}: KMS accepts 7 to 30 days")]
    BadGrace(u32),
    /// A role template that is not `arn:PARTITION:iam::{account}:role/NAME`.
    #[error("--assume-role {0:?} must be an IAM role ARN template with {{account}} (arn:aws:iam::{{account}}:role/byok-audit)")]
    BadRoleTemplate(String),
    /// Key policy without the accounts it needs.
    #[error("--key-policy needs --account (the security account holding the keys) and at least one --workload-account")]
    KeyPolicyAccounts,
}

/// One IAM policy statement.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Statement {
    /// Statement ID (what the statement is for).
    #[serde(rename = "Sid")]
    pub sid: String,
    /// `Allow` or `Deny`.
    #[serde(rename = "Effect")]
    pub effect: &'static str,
    /// Key policies only: who.
    #[serde(rename = "Principal", skip_serializing_if = "Option::is_none")]
    pub principal: Option<serde_json::Value>,
    /// The actions (`kms:ImportKeyMaterial`, …).
    #[serde(rename = "Action")]
    pub actions: Vec<String>,
    /// The resources (ARNs or `*`).
    #[serde(rename = "Resource")]
    pub resources: Vec<String>,
    /// Condition operator → key → values.
    #[serde(rename = "Condition", skip_serializing_if = "BTreeMap::is_empty")]
    pub condition: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// An IAM policy document.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PolicyDocument {
    /// Always `2012-10-17`.
    #[serde(rename = "Version")]
    pub version: &'static str,
    /// The statements.
    #[serde(rename = "Statement")]
    pub statements: Vec<Statement>,
}

/// A statement under construction.
struct Builder(Statement);

impl Builder {
    fn allow(sid: &str, actions: &[&str], resources: Vec<String>) -> Self {
        Builder(Statement {
            sid: sid.into(),
            effect: "Allow",
            principal: None,
            actions: actions.iter().map(|a| format!("kms:{a}")).collect(),
            resources,
            condition: BTreeMap::new(),
        })
    }

    fn when(mut self, op: &str, key: &str, values: Vec<String>) -> Self {
        self.0
            .condition
            .entry(op.into())
            .or_default()
            .insert(key.into(), values);
        self
    }

    fn when_tagged(mut self, scope: &Scope, which: &str) -> Self {
        for (k, v) in &scope.tags {
            self = self.when("StringEquals", &format!("aws:{which}/{k}"), vec![v.clone()]);
        }
        self
    }

    fn done(self) -> Statement {
        self.0
    }
}

impl Scope {
    /// A scope with the tool's defaults (every wrapping algorithm and key
    /// spec the tool uses, a 7-day minimum deletion window).
    pub fn new(partition: &str) -> Self {
        Scope {
            partition: partition.into(),
            wrapping_algorithms: WRAPPING_ALGORITHMS.map(String::from).to_vec(),
            wrapping_key_specs: WRAPPING_KEY_SPECS.map(String::from).to_vec(),
            min_grace_days: MIN_GRACE_DAYS,
            ..Scope::default()
        }
    }

    /// Check every field; a policy is built only from a checked scope.
    pub fn check(&self) -> Result<(), IamError> {
        if self.account.is_none() && self.key_arns.is_empty() {
            return Err(IamError::NoScope);
        }
        if let Some(a) = &self.account {
            if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
                return Err(IamError::BadAccount(a.clone()));
            }
        }
        for r in &self.regions {
            if r.is_empty()
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(IamError::BadRegion(r.clone()));
            }
        }
        for arn in &self.key_arns {
            if !is_key_arn(arn) {
                return Err(IamError::BadKeyArn(arn.clone()));
            }
        }
        for (k, v) in &self.tags {
            let literal = |s: &str| !s.contains(['*', '?', '$', '/']);
            if k.is_empty() || !literal(k) || !literal(v) {
                return Err(IamError::BadTag(format!("{k}={v}")));
            }
        }
        if let Some(p) = &self.alias_prefix {
            if p.starts_with("aws/")
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
            {
                return Err(IamError::BadAliasPrefix(p.clone()));
            }
        }
        for a in &self.wrapping_algorithms {
            if !WRAPPING_ALGORITHMS.contains(&a.as_str()) {
                return Err(IamError::NotUsed {
                    what: "wrapping algorithm",
                    value: a.clone(),
                    allowed: WRAPPING_ALGORITHMS.join(", "),
                });
            }
        }
        for s in &self.wrapping_key_specs {
            if !WRAPPING_KEY_SPECS.contains(&s.as_str()) {
                return Err(IamError::NotUsed {
                    what: "wrapping key spec",
                    value: s.clone(),
                    allowed: WRAPPING_KEY_SPECS.join(", "),
                });
            }
        }
        if !(7..=30).contains(&self.min_grace_days) {
            return Err(IamError::BadGrace(self.min_grace_days));
        }
        if let Some(t) = &self.assume_role {
            let role = t.replace("{account}", "111122223333");
            let parts: Vec<&str> = role.splitn(6, ':').collect();
            let ok = t.contains("{account}")
                && parts.len() == 6
                && parts[0] == "arn"
                && parts[2] == "iam"
                && parts[5].starts_with("role/")
                && !t.contains('*');
            if !ok {
                return Err(IamError::BadRoleTemplate(t.clone()));
            }
        }
        for a in &self.accounts {
            if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
                return Err(IamError::BadAccount(a.clone()));
            }
        }
        Ok(())
    }

    fn regions_or_any(&self) -> Vec<String> {
        if self.regions.is_empty() {
            vec!["*".into()]
        } else {
            self.regions.clone()
        }
    }

    fn account_or_any(&self) -> &str {
        self.account.as_deref().unwrap_or("*")
    }

    /// The keys: the ARNs given, else every key of the account and Regions.
    fn keys(&self) -> Vec<String> {
        if !self.key_arns.is_empty() {
            return self.key_arns.clone();
        }
        self.regions_or_any()
            .iter()
            .map(|r| {
                format!(
                    "arn:{}:kms:{r}:{}:key/*",
                    self.partition,
                    self.account_or_any()
                )
            })
            .collect()
    }

    /// The aliases the role may create or move: in the Regions and account
    /// of the keys in scope.
    fn aliases(&self) -> Vec<String> {
        let places: std::collections::BTreeSet<(String, String)> = if self.key_arns.is_empty() {
            self.regions_or_any()
                .into_iter()
                .map(|r| (r, self.account_or_any().to_string()))
                .collect()
        } else {
            self.key_arns
                .iter()
                .map(|a| {
                    let p: Vec<&str> = a.split(':').collect();
                    (p[3].to_string(), p[4].to_string())
                })
                .collect()
        };
        let prefix = self.alias_prefix.as_deref().unwrap_or("");
        places
            .iter()
            .map(|(r, account)| format!("arn:{}:kms:{r}:{account}:alias/{prefix}*", self.partition))
            .collect()
    }

    /// A statement on the keys in scope, narrowed by the scope's tags.
    fn on_keys(&self, sid: &str, actions: &[&str]) -> Builder {
        Builder::allow(sid, actions, self.keys()).when_tagged(self, "ResourceTag")
    }
}

fn is_key_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "kms"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("key/").is_some_and(|id| {
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The IAM policy for `role` over `scope` (checked first).
pub fn policy(role: Role, scope: &Scope) -> Result<PolicyDocument, IamError> {
    scope.check()?;
    let statements = match role {
        Role::Preparer => preparer(scope),
        Role::Importer => importer(scope),
        Role::Verifier => prove_statements(scope, "Verify"),
        Role::Auditor => auditor(scope),
        Role::AliasManager => alias_manager(scope),
        Role::Remediator => remediator(scope),
        Role::ConfigRule => config_rule(scope),
    };
    Ok(PolicyDocument {
        version: "2012-10-17",
        statements,
    })
}

fn preparer(s: &Scope) -> Vec<Statement> {
    let create = Builder::allow("CreateExternalKeys", &["CreateKey"], vec!["*".into()])
        .when("StringEquals", "kms:KeyOrigin", vec!["EXTERNAL".into()])
        .when_tagged(s, "RequestTag")
        .done();
    // CreateKey with Tags needs kms:TagResource; the key does not exist yet.
    let tag_new = Builder::allow("TagKeysAtCreation", &["TagResource"], vec!["*".into()])
        .when_tagged(s, "RequestTag")
        .done();
    let params = s
        .on_keys("FetchImportParameters", &["GetParametersForImport"])
        .when(
            "StringEquals",
            "kms:WrappingAlgorithm",
            s.wrapping_algorithms.clone(),
        )
        .when(
            "StringEquals",
            "kms:WrappingKeySpec",
            s.wrapping_key_specs.clone(),
        )
        .done();
    let describe = s.on_keys("ReadKeys", &["DescribeKey"]).done();
    vec![
        create,
        tag_new,
        params,
        describe,
        alias_statement(s, "NameNewKeys", &["CreateAlias"]),
    ]
}

/// Alias actions are authorised on the alias and on the key(s): two resources.
fn alias_statement(s: &Scope, sid: &str, actions: &[&str]) -> Statement {
    let mut resources = s.aliases();
    resources.extend(s.keys());
    // The alias prefix narrows the alias resource. Tags cannot narrow it
    // (aliases carry none), and kms:ResourceAliases names a key's existing
    // aliases, which a new key lacks.
    Builder::allow(sid, actions, resources).done()
}

fn importer(s: &Scope) -> Vec<Statement> {
    let mut import = s.on_keys("ImportSignedKeyMaterial", &["ImportKeyMaterial"]);
    if let Some(by) = s.material_expires_by {
        import = import
            .when(
                "StringEquals",
                "kms:ExpirationModel",
                vec!["KEY_MATERIAL_EXPIRES".into()],
            )
            .when(
                "NumericLessThanEquals",
                "kms:ValidTo",
                vec![by.unix_timestamp().to_string()],
            );
    }
    vec![
        s.on_keys("ReadKeys", &["DescribeKey"]).done(),
        import.done(),
        s.on_keys("MakeNewMaterialCurrent", &["RotateKeyOnDemand"])
            .done(),
        // After a lost response, `import` proves an HMAC or asymmetric key
        // already holds this bundle's material before writing its receipt.
        s.on_keys("ReconcileLostResponses", &["GenerateMac", "GetPublicKey"])
            .done(),
    ]
}

/// What `verify` sends (and `move-alias`, which proves first).
fn prove_statements(s: &Scope, prefix: &str) -> Vec<Statement> {
    let (k, v) = ROUND_TRIP_CONTEXT;
    vec![
        s.on_keys(
            &format!("{prefix}ReadKeysAndMaterial"),
            &["DescribeKey", "ListKeyRotations"],
        )
        .done(),
        s.on_keys(
            &format!("{prefix}HmacAndPublicKeys"),
            &["GenerateMac", "GetPublicKey"],
        )
        .done(),
        s.on_keys(
            &format!("{prefix}AesRoundTripOnly"),
            &["Encrypt", "Decrypt"],
        )
        .when(
            "StringEquals",
            &format!("kms:EncryptionContext:{k}"),
            vec![v.into()],
        )
        .done(),
    ]
}

/// A statement of another service's actions (given with their prefix).
fn other(sid: &str, actions: &[&str], resources: Vec<String>) -> Statement {
    Statement {
        sid: sid.into(),
        effect: "Allow",
        principal: None,
        actions: actions.iter().map(|a| a.to_string()).collect(),
        resources,
        condition: BTreeMap::new(),
    }
}

/// What `audit` reads: key references resolved, and each resource's encryption.
fn audit_reads(s: &Scope) -> Vec<Statement> {
    vec![
        s.on_keys(
            "ReadKeys",
            &["DescribeKey", "ListKeyRotations", "ListResourceTags"],
        )
        .done(),
        other(
            "ReadResourceEncryption",
            &[
                "s3:ListAllMyBuckets",
                "s3:GetEncryptionConfiguration",
                "dynamodb:ListTables",
                "dynamodb:DescribeTable",
                "rds:DescribeDBInstances",
                "rds:DescribeDBClusters",
            ],
            vec!["*".into()],
        ),
    ]
}

/// `--role-arn` and `--organization`: assume the audit role in other accounts.
fn other_accounts(s: &Scope) -> Vec<Statement> {
    let mut v = Vec::new();
    if let Some(t) = &s.assume_role {
        let roles = if s.accounts.is_empty() {
            vec![t.replace("{account}", "*")]
        } else {
            s.accounts
                .iter()
                .map(|a| t.replace("{account}", a))
                .collect()
        };
        v.push(other(
            "AssumeTheAuditRoleInEachAccount",
            &["sts:AssumeRole"],
            roles,
        ));
    }
    if s.organization {
        v.push(other(
            "ListTheOrganizationsAccounts",
            &["organizations:ListAccounts"],
            vec!["*".into()],
        ));
    }
    v
}

fn auditor(s: &Scope) -> Vec<Statement> {
    let mut v = vec![Builder::allow(
        "ListKeysAndAliases",
        &["ListKeys", "ListAliases"],
        vec!["*".into()],
    )
    .done()];
    v.extend(audit_reads(s));
    v.extend(other_accounts(s));
    if s.security_hub {
        v.push(other(
            "PublishAndUpdateFindings",
            &["securityhub:BatchImportFindings", "securityhub:GetFindings"],
            vec!["*".into()],
        ));
    }
    v
}

/// The Config rule's function: what `audit` reads in its own account and
/// Region, and PutEvaluations. Its CloudWatch Logs permissions are Lambda's
/// and sit beside this policy in deploy/config-rule.yaml.
fn config_rule(s: &Scope) -> Vec<Statement> {
    let mut v = vec![Builder::allow("ListAliases", &["ListAliases"], vec!["*".into()]).done()];
    v.extend(audit_reads(s));
    v.push(other(
        "ReportEvaluations",
        &["config:PutEvaluations"],
        vec!["*".into()],
    ));
    v
}

fn remediator(s: &Scope) -> Vec<Statement> {
    let mut v = vec![Builder::allow("ListAliases", &["ListAliases"], vec!["*".into()]).done()];
    v.extend(audit_reads(s));
    v.extend(other_accounts(s));
    v.push(other(
        "RepointBucketsAndTables",
        &["s3:PutEncryptionConfiguration", "dynamodb:UpdateTable"],
        vec!["*".into()],
    ));
    // DynamoDB itself reads the new key and creates a grant on it when a
    // table moves to it (forward access session): the caller needs these,
    // only through DynamoDB.
    let regions = s.regions_or_any();
    let via = regions
        .iter()
        .map(|r| format!("dynamodb.{r}.amazonaws.com"))
        .collect();
    v.push(
        s.on_keys(
            "NewKeysThroughDynamoDbOnly",
            &["DescribeKey", "CreateGrant"],
        )
        .when("StringLike", "kms:ViaService", via)
        .done(),
    );
    v
}

fn alias_manager(s: &Scope) -> Vec<Statement> {
    let mut v = prove_statements(s, "Prove");
    v.push(Builder::allow("ListAliases", &["ListAliases"], vec!["*".into()]).done());
    v.push(alias_statement(
        s,
        "MoveAliases",
        &["CreateAlias", "UpdateAlias"],
    ));
    v.push(s.on_keys("TagReplacements", &["TagResource"]).done());
    v.push(s.on_keys("DisableOldKeys", &["DisableKey"]).done());
    v.push(
        s.on_keys("ScheduleDeletionAfterGrace", &["ScheduleKeyDeletion"])
            .when(
                "NumericGreaterThanEquals",
                "kms:ScheduleKeyDeletionPendingWindowInDays",
                vec![s.min_grace_days.to_string()],
            )
            .done(),
    );
    v
}

/// Who the key policy of a security-account key names.
#[derive(Clone, Debug, Default)]
pub struct KeyPolicyScope {
    /// The security account that holds the keys.
    pub security_account: String,
    /// Accounts whose workloads use the keys through AWS services.
    pub workload_accounts: Vec<String>,
    /// The bastion roles (ARNs) allowed to manage key material.
    pub material_roles: Vec<String>,
    /// Regions of the services that use the keys (none: any).
    pub regions: Vec<String>,
    /// AWS partition.
    pub partition: String,
}

/// Key-policy statements for a key in a central security account: IAM
/// policies of that account apply, workload accounts use the key only
/// through S3, DynamoDB and RDS (and grant only to them), and nobody but the
/// named bastion roles touches key material.
pub fn key_policy(k: &KeyPolicyScope) -> Result<PolicyDocument, IamError> {
    if k.security_account.is_empty() || k.workload_accounts.is_empty() {
        return Err(IamError::KeyPolicyAccounts);
    }
    for a in std::iter::once(&k.security_account).chain(&k.workload_accounts) {
        if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IamError::BadAccount(a.clone()));
        }
    }
    let root = |a: &str| format!("arn:{}:iam::{a}:root", k.partition);
    let workloads: Vec<String> = k.workload_accounts.iter().map(|a| root(a)).collect();
    let regions = if k.regions.is_empty() {
        vec!["*".to_string()]
    } else {
        k.regions.clone()
    };
    let via: Vec<String> = ["s3", "dynamodb", "rds"]
        .iter()
        .flat_map(|svc| {
            regions
                .iter()
                .map(move |r| format!("{svc}.{r}.amazonaws.com"))
        })
        .collect();
    let mut statements = vec![
        key_statement(
            "SecurityAccountIamPoliciesApply",
            "Allow",
            serde_json::json!({"AWS": root(&k.security_account)}),
            &["kms:*"],
            None,
        ),
        key_statement(
            "WorkloadsUseTheKeyThroughServices",
            "Allow",
            serde_json::json!({"AWS": workloads}),
            &[
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
                "kms:DescribeKey",
            ],
            Some(("StringLike", "kms:ViaService", via)),
        ),
        key_statement(
            "WorkloadsGrantOnlyToServices",
            "Allow",
            serde_json::json!({"AWS": workloads}),
            &["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
            Some(("Bool", "kms:GrantIsForAWSResource", vec!["true".into()])),
        ),
    ];
    statements.extend(material_role_denials(&k.material_roles));
    Ok(PolicyDocument {
        version: "2012-10-17",
        statements,
    })
}

/// Nobody but the bastion roles touches key material, and those roles do
/// not use the key (none when no role is named).
fn material_role_denials(roles: &[String]) -> Vec<Statement> {
    if roles.is_empty() {
        return Vec::new();
    }
    let everyone = serde_json::json!({"AWS": "*"});
    vec![
        key_statement(
            "OnlyTheBastionTouchesKeyMaterial",
            "Deny",
            everyone.clone(),
            &[
                "kms:GetParametersForImport",
                "kms:ImportKeyMaterial",
                "kms:DeleteImportedKeyMaterial",
                "kms:RotateKeyOnDemand",
            ],
            Some(("ArnNotEquals", "aws:PrincipalArn", roles.to_vec())),
        ),
        key_statement(
            "TheBastionDoesNotUseTheKey",
            "Deny",
            everyone,
            &[
                "kms:Decrypt",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
                "kms:Sign",
            ],
            Some(("ArnEquals", "aws:PrincipalArn", roles.to_vec())),
        ),
    ]
}

/// A key-policy statement on the key itself (`*`), with at most one condition.
fn key_statement(
    sid: &str,
    effect: &'static str,
    principal: serde_json::Value,
    actions: &[&str],
    condition: Option<(&str, &str, Vec<String>)>,
) -> Statement {
    Statement {
        sid: sid.into(),
        effect,
        principal: Some(principal),
        actions: actions.iter().map(|a| a.to_string()).collect(),
        resources: vec!["*".into()],
        condition: condition
            .map(|(op, key, values)| {
                BTreeMap::from([(op.to_string(), BTreeMap::from([(key.to_string(), values)]))])
            })
            .unwrap_or_default(),
    }
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("{s:?} is not an RFC 3339 time (2027-06-30T00:00:00Z)"))
}

/// `byok-bastion iam-policy`: print a role's IAM policy (or a key policy).
#[derive(Debug, clap::Args)]
pub struct IamPolicyArgs {
    /// The role whose IAM policy to print.
    #[arg(long, value_enum, required_unless_present = "key_policy")]
    pub role: Option<Role>,
    /// Print key-policy statements for keys in a central security account instead.
    #[arg(long, conflicts_with = "role")]
    pub key_policy: bool,
    /// The account that holds the keys (for --key-policy: the security account).
    #[arg(long)]
    pub account: Option<String>,
    /// Regions of the keys (comma-separated or repeated; default: every Region).
    #[arg(long = "regions", value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Only these keys (ARN), repeatable.
    #[arg(long = "key-arn")]
    pub key_arns: Vec<String>,
    /// Only keys tagged KEY=VALUE (and `prepare` must set the tag), repeatable.
    #[arg(long = "tag", value_parser = super::prepare::parse_tag)]
    pub tags: Vec<(String, String)>,
    /// Aliases the role may create or move start with alias/PREFIX.
    #[arg(long)]
    pub alias_prefix: Option<String>,
    /// Wrapping algorithms prepare may request (default: the four the tool produces), repeatable.
    #[arg(long = "wrapping-algorithm")]
    pub wrapping_algorithms: Vec<String>,
    /// Wrapping key specs prepare may request (default: RSA_2048, RSA_3072, RSA_4096), repeatable.
    #[arg(long = "wrapping-key-spec")]
    pub wrapping_key_specs: Vec<String>,
    /// Importer: only material that expires, no later than this UTC time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub material_expires_by: Option<OffsetDateTime>,
    /// Alias manager: the shortest deletion window ScheduleKeyDeletion may ask for (7 to 30).
    #[arg(long, default_value_t = MIN_GRACE_DAYS)]
    pub min_grace_days: u32,
    /// AWS partition of the ARNs.
    #[arg(long, default_value = "aws")]
    pub partition: String,
    /// Auditor: `audit --security-hub` (publish and update findings).
    #[arg(long)]
    pub security_hub: bool,
    /// Auditor, remediator: the role `--role-arn` names in other accounts (a template with {account}).
    #[arg(long)]
    pub assume_role: Option<String>,
    /// With --assume-role: only these accounts (comma-separated or repeated).
    #[arg(long = "accounts", value_delimiter = ',', requires = "assume_role")]
    pub accounts: Vec<String>,
    /// Auditor, remediator: `--organization` (organizations:ListAccounts).
    #[arg(long)]
    pub organization: bool,
    /// --key-policy: an account whose workloads use the keys, repeatable.
    #[arg(long = "workload-account", requires = "key_policy")]
    pub workload_accounts: Vec<String>,
    /// --key-policy: a bastion role (ARN) that may fetch parameters and import, repeatable.
    #[arg(long = "material-role-arn", requires = "key_policy")]
    pub material_roles: Vec<String>,
}

impl IamPolicyArgs {
    /// The scope these arguments describe.
    pub fn scope(&self) -> Scope {
        let mut s = Scope::new(&self.partition);
        s.account = self.account.clone();
        s.regions = self.regions.clone();
        s.key_arns = self.key_arns.clone();
        s.tags = self.tags.clone();
        s.alias_prefix = self.alias_prefix.clone();
        if !self.wrapping_algorithms.is_empty() {
            s.wrapping_algorithms = self.wrapping_algorithms.clone();
        }
        if !self.wrapping_key_specs.is_empty() {
            s.wrapping_key_specs = self.wrapping_key_specs.clone();
        }
        s.material_expires_by = self.material_expires_by;
        s.min_grace_days = self.min_grace_days;
        s.security_hub = self.security_hub;
        s.assume_role = self.assume_role.clone();
        s.accounts = self.accounts.clone();
        s.organization = self.organization;
        s
    }
}

/// Print the policy document on stdout (it is what gets pasted into IAM)
/// and, on stderr, what it is for. No AWS call.
pub fn main(args: &IamPolicyArgs) -> Result<(), IamError> {
    let doc = match args.role {
        Some(role) => {
            let doc = policy(role, &args.scope())?;
            match role.commands() {
                [] => eprintln!(
                    "IAM policy for the {role} role (the byok-config-rule Lambda function; its CloudWatch Logs permissions come from deploy/config-rule.yaml):"
                ),
                commands => eprintln!(
                    "IAM policy for the {role} role (runs: byok-bastion {}):",
                    commands.join(", byok-bastion ")
                ),
            }
            doc
        }
        None => {
            let doc = key_policy(&KeyPolicyScope {
                security_account: args.account.clone().unwrap_or_default(),
                workload_accounts: args.workload_accounts.clone(),
                material_roles: args.material_roles.clone(),
                regions: args.regions.clone(),
                partition: args.partition.clone(),
            })?;
            eprintln!("Key-policy statements for keys in the security account (add the bastion roles' own statements as needed):");
            doc
        }
    };
    for s in &doc.statements {
        eprintln!("  {:<36} {} {}", s.sid, s.effect, s.actions.join(" "));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        let mut s = Scope::new("aws");
        s.account = Some("111122223333".into());
        s.regions = vec!["eu-west-1".into()];
        s
    }

    fn statement<'a>(doc: &'a PolicyDocument, sid: &str) -> &'a Statement {
        doc.statements
            .iter()
            .find(|s| s.sid == sid)
            .unwrap_or_else(|| panic!("no statement {sid}"))
    }

    #[test]
    fn scopes_are_checked_with_messages_that_say_what_to_pass() {
        type Change = Box<dyn Fn(&mut Scope)>;
        let cases: Vec<(Change, IamError)> = vec![
            (Box::new(|s| s.account = None), IamError::NoScope),
            (
                Box::new(|s| s.account = Some("1234".into())),
                IamError::BadAccount("1234".into()),
            ),
            (
                Box::new(|s| s.key_arns = vec!["alias/x".into()]),
                IamError::BadKeyArn("alias/x".into()),
            ),
            (
                Box::new(|s| s.regions = vec!["eu-west-1*".into()]),
                IamError::BadRegion("eu-west-1*".into()),
            ),
            (
                Box::new(|s| s.tags = vec![("team".into(), "pay*".into())]),
                IamError::BadTag("team=pay*".into()),
            ),
            (
                Box::new(|s| s.alias_prefix = Some("aws/".into())),
                IamError::BadAliasPrefix("aws/".into()),
            ),
            (
                Box::new(|s| s.wrapping_algorithms = vec!["RSAES_PKCS1_V1_5".into()]),
                IamError::NotUsed {
                    what: "wrapping algorithm",
                    value: "RSAES_PKCS1_V1_5".into(),
                    allowed: WRAPPING_ALGORITHMS.join(", "),
                },
            ),
            (Box::new(|s| s.min_grace_days = 3), IamError::BadGrace(3)),
        ];
        for (change, want) in cases {
            let mut s = scope();
            change(&mut s);
            assert_eq!(policy(Role::Importer, &s), Err(want));
        }
        assert!(policy(Role::Importer, &scope()).is_ok());
    }

    #[test]
    fn key_arns_scope_every_key_statement_and_aliases_follow_their_regions() {
        let mut s = Scope::new("aws");
        let arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        s.key_arns = vec![arn.into()];
        s.alias_prefix = Some("payments-".into());
        let doc = policy(Role::AliasManager, &s).unwrap();
        for st in &doc.statements {
            if st.sid != "ListAliases" {
                assert!(st.resources.contains(&arn.to_string()), "{st:?}");
            }
        }
        assert_eq!(
            statement(&doc, "MoveAliases").resources,
            vec![
                "arn:aws:kms:eu-west-1:111122223333:alias/payments-*".to_string(),
                arn.to_string()
            ]
        );
        assert_eq!(
            statement(&doc, "ScheduleDeletionAfterGrace").condition["NumericGreaterThanEquals"]
                ["kms:ScheduleKeyDeletionPendingWindowInDays"],
            vec!["7".to_string()]
        );
        // DisableKey has no deletion window: a condition on it would deny it.
        assert!(statement(&doc, "DisableOldKeys").condition.is_empty());
    }

    #[test]
    fn kms_condition_keys_narrow_what_each_role_may_ask_for() {
        let mut s = scope();
        s.tags = vec![("team".into(), "payments".into())];
        s.wrapping_algorithms = vec!["RSA_AES_KEY_WRAP_SHA_256".into()];
        s.material_expires_by = Some(time::macros::datetime!(2027-06-30 00:00 UTC));
        let prep = policy(Role::Preparer, &s).unwrap();
        let create = statement(&prep, "CreateExternalKeys");
        assert_eq!(create.resources, vec!["*".to_string()]);
        assert_eq!(
            create.condition["StringEquals"]["kms:KeyOrigin"],
            vec!["EXTERNAL".to_string()]
        );
        assert_eq!(
            create.condition["StringEquals"]["aws:RequestTag/team"],
            vec!["payments".to_string()]
        );
        let params = statement(&prep, "FetchImportParameters");
        assert_eq!(
            params.condition["StringEquals"]["kms:WrappingAlgorithm"],
            vec!["RSA_AES_KEY_WRAP_SHA_256".to_string()]
        );
        assert_eq!(
            params.condition["StringEquals"]["aws:ResourceTag/team"],
            vec!["payments".to_string()]
        );
        assert_eq!(
            params.resources,
            vec!["arn:aws:kms:eu-west-1:111122223333:key/*".to_string()]
        );
        let imp = policy(Role::Importer, &s).unwrap();
        let import = statement(&imp, "ImportSignedKeyMaterial");
        assert_eq!(
            import.condition["StringEquals"]["kms:ExpirationModel"],
            vec!["KEY_MATERIAL_EXPIRES".to_string()]
        );
        assert_eq!(
            import.condition["NumericLessThanEquals"]["kms:ValidTo"],
            vec!["1814313600".to_string()]
        );
        let ver = policy(Role::Verifier, &s).unwrap();
        assert_eq!(
            statement(&ver, "VerifyAesRoundTripOnly").condition["StringEquals"]
                ["kms:EncryptionContext:byok-ceremony"],
            vec!["round-trip".to_string()]
        );
        // The auditor reads, nothing else.
        let aud = policy(Role::Auditor, &s).unwrap();
        for st in &aud.statements {
            for a in &st.actions {
                let op = a.split(':').nth(1).unwrap();
                assert!(
                    ["List", "Describe", "Get"]
                        .iter()
                        .any(|p| op.starts_with(p)),
                    "{a}"
                );
            }
        }
    }

    #[test]
    fn audit_options_add_their_statements_and_the_remediator_writes_only_encryption() {
        let mut s = scope();
        let plain = policy(Role::Auditor, &s).unwrap();
        assert!(plain.statements.iter().all(|st| st.actions.iter().all(|a| {
            !a.starts_with("securityhub:")
                && !a.starts_with("sts:")
                && !a.starts_with("organizations:")
        })));
        s.security_hub = true;
        s.organization = true;
        s.assume_role = Some("arn:aws:iam::{account}:role/byok-audit".into());
        s.accounts = vec!["444455556666".into()];
        let full = policy(Role::Auditor, &s).unwrap();
        assert_eq!(
            statement(&full, "AssumeTheAuditRoleInEachAccount").resources,
            vec!["arn:aws:iam::444455556666:role/byok-audit".to_string()]
        );
        assert!(statement(&full, "PublishAndUpdateFindings")
            .actions
            .contains(&"securityhub:BatchImportFindings".to_string()));
        s.accounts.clear();
        assert_eq!(
            statement(
                &policy(Role::Auditor, &s).unwrap(),
                "AssumeTheAuditRoleInEachAccount"
            )
            .resources,
            vec!["arn:aws:iam::*:role/byok-audit".to_string()]
        );
        s.assume_role = Some("arn:aws:iam::111122223333:role/fixed".into());
        assert_eq!(
            policy(Role::Auditor, &s),
            Err(IamError::BadRoleTemplate(
                "arn:aws:iam::111122223333:role/fixed".into()
            ))
        );
        let rem = policy(Role::Remediator, &scope()).unwrap();
        let writes = write_actions(&rem);
        assert_eq!(
            writes,
            [
                "s3:PutEncryptionConfiguration",
                "dynamodb:UpdateTable",
                "kms:CreateGrant"
            ]
        );
        assert_eq!(
            statement(&rem, "NewKeysThroughDynamoDbOnly").condition["StringLike"]["kms:ViaService"],
            vec!["dynamodb.eu-west-1.amazonaws.com".to_string()]
        );
    }

    /// The actions of `p` that are not List*, Describe* or Get*.
    fn write_actions(p: &PolicyDocument) -> Vec<&String> {
        p.statements
            .iter()
            .flat_map(|st| &st.actions)
            .filter(|a| {
                !["List", "Describe", "Get"]
                    .iter()
                    .any(|v| a.split(':').nth(1).unwrap().starts_with(v))
            })
            .collect()
    }

    #[test]
    fn the_config_rule_reads_what_audit_reads_and_writes_only_evaluations() {
        let rule = policy(Role::ConfigRule, &scope()).unwrap();
        let writes = write_actions(&rule);
        assert_eq!(writes, ["config:PutEvaluations"]);
        assert_eq!(
            statement(&rule, "ReadKeys").resources,
            ["arn:aws:kms:eu-west-1:111122223333:key/*"]
        );
        // The auditor's reads of resources, without ListKeys (the rule never lists keys).
        let auditor = policy(Role::Auditor, &scope()).unwrap();
        assert_eq!(
            statement(&rule, "ReadResourceEncryption").actions,
            statement(&auditor, "ReadResourceEncryption").actions
        );
        assert!(!rule
            .statements
            .iter()
            .any(|st| st.actions.iter().any(|a| a == "kms:ListKeys")));
        assert!(Role::ConfigRule.commands().is_empty());
    }

    #[test]
    fn key_policy_keeps_importers_away_from_data_and_workloads_away_from_material() {
        let k = KeyPolicyScope {
            security_account: "111122223333".into(),
            workload_accounts: vec!["444455556666".into()],
            material_roles: vec!["arn:aws:iam::111122223333:role/byok-importer".into()],
            regions: vec!["eu-west-1".into()],
            partition: "aws".into(),
        };
        let doc = key_policy(&k).unwrap();
        let via = &statement(&doc, "WorkloadsUseTheKeyThroughServices").condition["StringLike"]
            ["kms:ViaService"];
        assert!(via.contains(&"rds.eu-west-1.amazonaws.com".to_string()));
        let deny = statement(&doc, "OnlyTheBastionTouchesKeyMaterial");
        assert_eq!(deny.effect, "Deny");
        assert!(deny.actions.contains(&"kms:ImportKeyMaterial".to_string()));
        assert_eq!(
            deny.condition["ArnNotEquals"]["aws:PrincipalArn"],
            k.material_roles
        );
        let apart = statement(&doc, "TheBastionDoesNotUseTheKey");
        assert!(apart.actions.contains(&"kms:Decrypt".to_string()));
        assert_eq!(
            key_policy(&KeyPolicyScope {
                workload_accounts: vec![],
                ..k
            }),
            Err(IamError::KeyPolicyAccounts)
        );
    }
}
