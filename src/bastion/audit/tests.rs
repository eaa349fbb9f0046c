//! The verdict table: every reason code from [`judge`], and the renderings.

use time::Duration;

use super::*;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn policy() -> Policy {
    Policy {
        max_age_days: 365,
        require_external: true,
        now: now(),
    }
}

/// An EXTERNAL, enabled customer key with 10-day-old material, aliased.
fn good() -> KeyFacts {
    KeyFacts {
        arn: "arn:aws:kms:eu-west-1:111122223333:key/k1".into(),
        manager: "CUSTOMER".into(),
        origin: "EXTERNAL".into(),
        state: "Enabled".into(),
        material_since: Some(now() - Duration::days(10)),
        age_source: "rotation-date".into(),
        valid_to: None,
        aliases: vec!["alias/orders-prod".into()],
        aliases_unreadable: None,
        replaced_by: None,
        alias_moved_at: None,
        tags_unreadable: None,
    }
}

fn kms(r: &str) -> Encryption {
    Encryption::Kms { key_ref: r.into() }
}

/// Name, encryption, the key's facts (or why not), expected verdict and reason.
type Case = (
    &'static str,
    Encryption,
    Option<Result<KeyFacts, &'static str>>,
    Verdict,
    Reason,
);

/// Judge every case and check its verdict, reason, detail and remediation.
fn check(cases: Vec<Case>) {
    for (name, enc, key, verdict, reason) in cases {
        let got = judge(
            &enc,
            key.as_ref().map(|k| k.as_ref().map_err(|e| *e)),
            &policy(),
        );
        assert_eq!(
            (got.verdict, got.reason),
            (verdict, reason),
            "{name}: {}",
            got.detail
        );
        assert!(!got.detail.is_empty(), "{name}");
        assert!(reason.remediation().ends_with('.'), "{name}");
    }
}

#[test]
fn verdicts_of_what_resources_name() {
    let by_id = kms("arn:aws:kms:eu-west-1:111122223333:key/k1");
    let by_alias = kms("alias/orders-prod");
    let with = |f: fn(&mut KeyFacts)| {
        let mut k = good();
        f(&mut k);
        k
    };
    check(vec![
        (
            "compliant by ID",
            by_id.clone(),
            Some(Ok(good())),
            Verdict::Compliant,
            Reason::CompliantKey,
        ),
        (
            "compliant by alias",
            by_alias.clone(),
            Some(Ok(good())),
            Verdict::Compliant,
            Reason::CompliantKey,
        ),
        (
            "unencrypted",
            Encryption::None,
            None,
            Verdict::NonCompliant,
            Reason::Unencrypted,
        ),
        (
            "SSE-S3",
            Encryption::ServiceOwned {
                what: "SSE-S3 (AES256)".into(),
            },
            None,
            Verdict::NonCompliant,
            Reason::NotCustomerKey,
        ),
        (
            "aws/s3 default",
            Encryption::AwsManagedDefault {
                alias: "alias/aws/s3".into(),
            },
            None,
            Verdict::NonCompliant,
            Reason::NotCustomerKey,
        ),
        (
            "AWS-managed key by ARN",
            by_id.clone(),
            Some(Ok(with(|k| k.manager = "AWS".into()))),
            Verdict::NonCompliant,
            Reason::NotCustomerKey,
        ),
        (
            "alias/aws/* named",
            kms("alias/aws/dynamodb"),
            Some(Ok(good())),
            Verdict::NonCompliant,
            Reason::NotCustomerKey,
        ),
        (
            "KMS-generated",
            by_id.clone(),
            Some(Ok(with(|k| k.origin = "AWS_KMS".into()))),
            Verdict::NonCompliant,
            Reason::NotExternal,
        ),
        (
            "too old",
            by_id.clone(),
            Some(Ok(with(|k| {
                k.material_since = Some(now() - Duration::days(400))
            }))),
            Verdict::NonCompliant,
            Reason::MaterialTooOld,
        ),
    ]);
}

#[test]
fn verdicts_of_key_states_and_replacement() {
    let by_id = kms("arn:aws:kms:eu-west-1:111122223333:key/k1");
    let by_alias = kms("alias/orders-prod");
    let with = |f: fn(&mut KeyFacts)| {
        let mut k = good();
        f(&mut k);
        k
    };
    check(vec![
        (
            "expired material",
            by_id.clone(),
            Some(Ok(with(|k| k.valid_to = Some(now() - Duration::days(1))))),
            Verdict::NonCompliant,
            Reason::MaterialMissing,
        ),
        (
            "pending import",
            by_id.clone(),
            Some(Ok(with(|k| k.state = "PendingImport".into()))),
            Verdict::NonCompliant,
            Reason::MaterialMissing,
        ),
        (
            "disabled",
            by_id.clone(),
            Some(Ok(with(|k| k.state = "Disabled".into()))),
            Verdict::NonCompliant,
            Reason::KeyDisabledOrPendingDeletion,
        ),
        (
            "pending deletion",
            by_id.clone(),
            Some(Ok(with(|k| k.state = "PendingDeletion".into()))),
            Verdict::NonCompliant,
            Reason::KeyDisabledOrPendingDeletion,
        ),
        (
            "replaced-by tag",
            by_alias.clone(),
            Some(Ok(with(|k| k.replaced_by = Some("k2".into())))),
            Verdict::NonCompliant,
            Reason::KeyReplaced,
        ),
        // Retired after the alias moved: still "replaced", the fix is a repoint.
        (
            "replaced and pending deletion",
            by_id.clone(),
            Some(Ok(with(|k| {
                k.replaced_by = Some("k2".into());
                k.state = "PendingDeletion".into();
            }))),
            Verdict::NonCompliant,
            Reason::KeyReplaced,
        ),
        (
            "pinned by ID, alias moved away, then disabled",
            by_id.clone(),
            Some(Ok(with(|k| {
                k.aliases.clear();
                k.alias_moved_at = Some("2026-11-01T00:00:00Z".into());
                k.state = "Disabled".into();
            }))),
            Verdict::NonCompliant,
            Reason::KeyReplaced,
        ),
        (
            "pinned by ID, alias moved away",
            by_id.clone(),
            Some(Ok(with(|k| {
                k.aliases.clear();
                k.alias_moved_at = Some("2026-11-01T00:00:00Z".into());
            }))),
            Verdict::NonCompliant,
            Reason::KeyReplaced,
        ),
        // By alias, the resource follows the alias: not replaced.
        (
            "by alias, alias moved tag",
            by_alias.clone(),
            Some(Ok(with(|k| {
                k.aliases.clear();
                k.alias_moved_at = Some("2026-11-01T00:00:00Z".into());
            }))),
            Verdict::Compliant,
            Reason::CompliantKey,
        ),
    ]);
}

#[test]
fn verdicts_of_material_age_and_unreadable_facts() {
    let by_id = kms("arn:aws:kms:eu-west-1:111122223333:key/k1");
    let with = |f: fn(&mut KeyFacts)| {
        let mut k = good();
        f(&mut k);
        k
    };
    check(vec![
        // No alias ever (no tag): a key used by ID from the start is not "replaced".
        (
            "pinned by ID, never aliased",
            by_id.clone(),
            Some(Ok(with(|k| k.aliases.clear()))),
            Verdict::Compliant,
            Reason::CompliantKey,
        ),
        // Aliases unknown: the alias rule is not applied on a guess.
        (
            "aliases unreadable",
            by_id.clone(),
            Some(Ok(with(|k| {
                k.aliases.clear();
                k.aliases_unreadable = Some("AccessDenied".into());
                k.alias_moved_at = Some("x".into());
            }))),
            Verdict::Compliant,
            Reason::CompliantKey,
        ),
        (
            "key unreadable",
            by_id.clone(),
            Some(Err("AccessDeniedException")),
            Verdict::Unknown,
            Reason::KeyUnreadable,
        ),
        (
            "tags unreadable",
            by_id.clone(),
            Some(Ok(with(|k| {
                k.tags_unreadable = Some("AccessDeniedException".into())
            }))),
            Verdict::Unknown,
            Reason::TagsUnreadable,
        ),
        (
            "age unknown",
            by_id.clone(),
            Some(Ok(with(|k| k.material_since = None))),
            Verdict::Unknown,
            Reason::MaterialAgeUnknown,
        ),
        (
            "resource unreadable",
            Encryption::Unreadable {
                why: "AccessDenied".into(),
            },
            None,
            Verdict::Unknown,
            Reason::ResourceUnreadable,
        ),
        (
            "cluster member",
            Encryption::NotApplicable {
                why: "member of DB cluster c1".into(),
            },
            None,
            Verdict::NotApplicable,
            Reason::NotApplicable,
        ),
    ]);
}

#[test]
fn external_not_required_accepts_kms_generated_keys() {
    let mut k = good();
    k.origin = "AWS_KMS".into();
    let p = Policy {
        require_external: false,
        ..policy()
    };
    let got = judge(&kms("alias/orders-prod"), Some(Ok(&k)), &p);
    assert_eq!(got.verdict, Verdict::Compliant, "{}", got.detail);
}

#[test]
fn alias_references_and_rds_encryption() {
    assert!(is_alias_ref("alias/x"));
    assert!(is_alias_ref("arn:aws:kms:eu-west-1:1:alias/x"));
    assert!(!is_alias_ref("arn:aws:kms:eu-west-1:1:key/x"));
    assert!(!is_alias_ref("1234abcd-12ab-34cd-56ef-1234567890ab"));
    assert_eq!(rds::encryption(Some(false), None), Encryption::None);
    assert_eq!(rds::encryption(None, Some("arn:k")), Encryption::None);
    assert_eq!(
        rds::encryption(Some(true), None),
        Encryption::AwsManagedDefault {
            alias: "alias/aws/rds".into()
        }
    );
    assert_eq!(rds::encryption(Some(true), Some("arn:k")), kms("arn:k"));
    assert_eq!(s3::region_of_location(None), "us-east-1");
    assert_eq!(s3::region_of_location(Some("EU")), "eu-west-1");
    assert_eq!(s3::region_of_location(Some("ap-south-1")), "ap-south-1");
}

fn finding(name: &str, verdict: Verdict, reason: Reason, detail: &str) -> Finding {
    Finding {
        account: None,
        resource_type: ResourceType::S3Bucket,
        region: "eu-west-1".into(),
        resource: name.into(),
        arn: Some(format!("arn:aws:s3:::{name}")),
        config_id: None,
        verdict,
        reason,
        key_reference: None,
        key_arn: None,
        detail: detail.into(),
        remediation: reason.remediation().into(),
    }
}

#[test]
fn renderings() {
    let findings = vec![
        finding(
            "b1",
            Verdict::NonCompliant,
            Reason::Unencrypted,
            "=HYPERLINK(\"x\")",
        ),
        finding("b2", Verdict::Compliant, Reason::CompliantKey, "ok, fine"),
    ];
    let report = Report {
        generated_at: "2027-01-15T08:00:00Z".into(),
        regions: vec!["eu-west-1".into()],
        accounts: Vec::new(),
        max_age_days: 365,
        summary: Summary::of(&findings),
        kms_describe_calls: 1,
        findings,
        security_hub: None,
    };
    assert_eq!(
        report.summary.line(),
        "1 NON_COMPLIANT, 0 UNKNOWN, 1 COMPLIANT, 0 NOT_APPLICABLE (of 2 resources)"
    );
    let csv = render(&report, Format::Csv);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(CSV_HEADER));
    let row = lines.next().unwrap();
    // Quoted, quotes doubled, a formula defused.
    assert!(row.contains("\"'=HYPERLINK(\"\"x\"\")\""), "{row}");
    assert!(
        row.starts_with("\"AWS::S3::Bucket\",\"eu-west-1\",\"b1\""),
        "{row}"
    );
    assert_eq!(csv.lines().count(), 3);
    let table = render(&report, Format::Table);
    let nc = table.find("NON_COMPLIANT (1)").unwrap();
    let c = table.find("\nCOMPLIANT (1)\n").unwrap();
    assert!(nc < c && table.contains("UNENCRYPTED"), "{table}");
    let v: serde_json::Value = serde_json::from_str(&render(&report, Format::Json)).unwrap();
    assert_eq!(v["summary"]["non_compliant"], 1);
    assert_eq!(v["findings"][0]["verdict"], "NON_COMPLIANT");
    assert_eq!(v["findings"][0]["reason"], "UNENCRYPTED");
    assert_eq!(v["findings"][0]["resource_type"], "AWS::S3::Bucket");
}
