//! The air-gapped build must contain no network code: the default feature set's
//! dependency tree has no HTTP, TLS, async runtime or AWS crate. The same check
//! on the `bastion` feature finds them, so this test can fail.

use std::collections::BTreeSet;
use std::process::Command;

const NETWORK_CRATES: &[&str] = &[
    "hyper",
    "hyper-util",
    "hyper-rustls",
    "h2",
    "http",
    "http-body",
    "reqwest",
    "rustls",
    "native-tls",
    "openssl",
    "tokio",
    "mio",
    "socket2",
    "aws-config",
    "aws-sdk-kms",
    "aws-sdk-s3",
    "aws-sdk-dynamodb",
    "aws-sdk-rds",
    "aws-sdk-securityhub",
    "aws-sdk-sts",
    "aws-sdk-organizations",
    "aws-sdk-config",
    "lambda_runtime",
    "lambda_runtime_api_client",
    "aws-smithy-runtime",
    "aws-smithy-http-client",
];

fn normal_deps(features: &[&str]) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree", "--locked", "-e", "normal", "--prefix", "none", "--format", "{p}",
        ])
        .args(features)
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

#[test]
fn offline_build_has_no_network_crates() {
    let deps = normal_deps(&[]);
    assert!(deps.contains("cryptoki"), "the tree was read: {deps:?}");
    let found: Vec<_> = NETWORK_CRATES
        .iter()
        .filter(|c| deps.contains(**c))
        .collect();
    assert!(
        found.is_empty(),
        "the offline build depends on network crates: {found:?}"
    );
}

#[test]
fn bastion_build_has_them_so_the_check_is_real() {
    let deps = normal_deps(&["--features", "bastion"]);
    for c in [
        "aws-sdk-kms",
        "aws-sdk-s3",
        "aws-sdk-dynamodb",
        "aws-sdk-rds",
        "aws-config",
        "tokio",
        "hyper",
    ] {
        assert!(
            deps.contains(c),
            "{c} missing from the bastion build: the check above would prove nothing"
        );
    }
}

/// The Config rule's crates are in its own feature's tree (so the list above
/// checks them), and not in the bastion's: `byok-bastion` does not carry the
/// Lambda runtime.
#[test]
fn config_rule_crates_stay_in_their_feature() {
    let rule = normal_deps(&["--features", "config-rule"]);
    let bastion = normal_deps(&["--features", "bastion"]);
    for c in [
        "aws-sdk-config",
        "lambda_runtime",
        "lambda_runtime_api_client",
    ] {
        assert!(rule.contains(c), "{c} missing from the config-rule build");
        assert!(!bastion.contains(c), "{c} reached the bastion build");
    }
}
