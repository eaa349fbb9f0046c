//! KMS errors, said so that a security engineer knows what to do next.

use aws_sdk_kms::error::ProvideErrorMetadata;

/// A bastion operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum BastionError {
    /// KMS refused or failed.
    #[error("KMS {operation} failed: {explanation}")]
    Kms {
        /// The API operation.
        operation: &'static str,
        /// What happened and what to do.
        explanation: String,
    },
    /// The endpoint is not acceptable (nothing was sent to it).
    #[error("refusing KMS endpoint {url} ({origin}): {problem}; only HTTPS, or plain HTTP on loopback (a local emulator), is allowed: fix the setting named here (nothing was sent)")]
    Endpoint {
        /// The URL as configured.
        url: String,
        /// Where it was configured.
        origin: super::client::EndpointSource,
        /// What is wrong with it.
        problem: super::client::EndpointProblem,
    },
    /// An S3, DynamoDB or RDS endpoint override is not acceptable (nothing was sent to it).
    #[error("refusing {service} endpoint {url} (from AWS_ENDPOINT_URL_{service} or AWS_ENDPOINT_URL): {problem}; only HTTPS, or plain HTTP on loopback (a local emulator), is allowed (nothing was sent)")]
    ServiceEndpoint {
        /// `S3`, `DYNAMODB` or `RDS`.
        service: String,
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        problem: super::client::EndpointProblem,
    },
    /// No Region anywhere in the configuration.
    #[error("no AWS Region configured: pass --region or set AWS_REGION")]
    NoRegion,
    /// A batch was interrupted (SIGINT/SIGTERM) before every bundle started (exit code 130).
    #[error("interrupted: {done} bundle(s) done, {left} left (not started); run the same command again to finish: done bundles are not repeated")]
    Interrupted {
        /// Bundles that finished (whatever their status).
        done: usize,
        /// Bundles never started.
        left: usize,
    },
    /// KMS answered, but nothing ties the key to this bundle.
    #[error("not proven: {0}")]
    NotProven(String),
    /// The bastion's state directory refused an operation.
    #[error(transparent)]
    State(#[from] super::state::StateError),
    /// The bundle did not verify or does not match.
    #[error("refusing to import: {0}")]
    Refused(String),
    /// `status` found keys that need action (exit code 3).
    #[error("{0} key(s) need action: out of rotation policy, pending import, or not enabled")]
    OutOfPolicy(usize),
    /// `audit` found resources that are not on compliant keys (exit code 3).
    #[error("{0} resource(s) are NON_COMPLIANT: see the table (or --json) for each reason and its remediation")]
    NonCompliant(usize),
    /// A local file problem.
    #[error("{0}")]
    Local(String),
    /// The ceremony directory did not verify.
    #[error(transparent)]
    Verify(#[from] crate::ceremony::VerifyError),
    /// The ceremony file (or a parameters file it names) was refused.
    #[error(transparent)]
    Ceremony(#[from] crate::ceremony::file::PlanError),
    /// A digest was asked for parameters this bastion did not fetch.
    #[error("{bundle}: its import parameters (token SHA-256 {token_sha256}) were not fetched by this bastion (no record in {state}): a digest of them would vouch for a wrapping key nobody here checked. Fetch them with `byok-bastion prepare`, with the same --state-dir")]
    ParamsNotRecorded {
        /// `LABEL/TARGET`.
        bundle: String,
        /// The import token's SHA-256.
        token_sha256: String,
        /// The state directory searched.
        state: std::path::PathBuf,
    },
    /// The policy was refused.
    #[error(transparent)]
    Policy(#[from] crate::ceremony::policy::PolicyError),
    /// Publishing to Security Hub failed.
    #[error(transparent)]
    SecurityHub(#[from] super::audit::securityhub::HubError),
    /// The accounts to audit could not be chosen.
    #[error(transparent)]
    Accounts(#[from] super::audit::accounts::AccountError),
    /// `repoint` failed.
    #[error(transparent)]
    Repoint(#[from] super::repoint::RepointError),
}

/// Explain a KMS error code (and message) for people.
pub fn explain(code: Option<&str>, message: Option<&str>) -> String {
    let msg = message.unwrap_or("");
    let advice = match code.unwrap_or("") {
        "ExpiredImportTokenException" => "the import token expired (they last 24 hours): run `byok-bastion prepare` again and wrap again on the air-gapped side",
        "InvalidImportTokenException" => "the import token does not belong to this KMS key or was already replaced by a newer GetParametersForImport: use the parameters this bundle was wrapped for, or prepare and wrap again",
        "InvalidCiphertextException" => "KMS could not unwrap the key material: the wrapping algorithm or hash differs from the one requested in GetParametersForImport, or the material was wrapped under other parameters",
        "IncorrectKeyMaterialException" => "this KMS key already has different key material: re-imports must be the same material (use NEW_KEY_MATERIAL for rotation of symmetric keys, or a new KMS key)",
        "ThrottlingException" => "KMS throttled the request: wait and retry, or ask for a higher quota (GetParametersForImport is about 1 per second)",
        "NotFoundException" => "no such KMS key in this account and Region: check the key ID, --region and --profile",
        "KMSInvalidStateException" | "KmsInvalidStateException" => "the KMS key is not in a state that allows this (disabled, pending deletion, or not Origin EXTERNAL): check it with DescribeKey",
        "UnsupportedOperationException" => "KMS does not support this for this key (for example NEW_KEY_MATERIAL on an HMAC or asymmetric key: rotate those by alias instead)",
        "AccessDeniedException" => "the credentials in use may not call this operation on this key: check the IAM and key policy",
        _ => "",
    };
    match (code, advice.is_empty()) {
        (Some(c), false) => format!("{c}: {advice} ({msg})"),
        (Some(c), true) => format!("{c}: {msg}"),
        (None, _) => {
            format!("no response from KMS ({msg}); check the endpoint, network and credentials")
        }
    }
}

/// Wrap an SDK error from `operation`.
pub fn kms<E: ProvideErrorMetadata + std::fmt::Debug>(
    operation: &'static str,
    e: E,
) -> BastionError {
    let message = e
        .message()
        .map(String::from)
        .unwrap_or_else(|| format!("{e:?}").chars().take(300).collect());
    BastionError::Kms {
        operation,
        explanation: explain(e.code(), Some(&message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_error_says_what_to_do() {
        for (code, needle) in [
            ("ExpiredImportTokenException", "prepare` again"),
            (
                "InvalidImportTokenException",
                "parameters this bundle was wrapped for",
            ),
            (
                "InvalidCiphertextException",
                "wrapping algorithm or hash differs",
            ),
            ("IncorrectKeyMaterialException", "NEW_KEY_MATERIAL"),
            ("ThrottlingException", "wait and retry"),
        ] {
            let m = explain(Some(code), Some("detail"));
            assert!(
                m.starts_with(code) && m.contains(needle) && m.contains("detail"),
                "{m}"
            );
        }
        assert!(explain(None, Some("dispatch failure")).contains("check the endpoint"));
    }
}
