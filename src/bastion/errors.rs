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
    #[error("not proven: {key}: {statement}")]
    NotProven {
        /// The key.
        key: String,
        /// What was shown, and why not more.
        statement: String,
    },
    /// Bundles of a batch that are usable but not proven.
    #[error("not proven: {0} bundle(s) are usable but not proven (listed above, with why)")]
    BatchNotProven(usize),
    /// The bastion's state directory refused an operation.
    #[error(transparent)]
    State(#[from] super::state::StateError),
    /// The bundle, a receipt or KMS's answer does not allow the operation.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// `status` found keys that need action (exit code 3).
    #[error("{0} key(s) need action: out of rotation policy, pending import, or not enabled")]
    OutOfPolicy(usize),
    /// `audit` found resources that are not on compliant keys (exit code 3).
    #[error("{0} resource(s) are NON_COMPLIANT: see the table (or --json) for each reason and its remediation")]
    NonCompliant(usize),
    /// A local file could not be read, written or created.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// `read`, `write`, `create`, `resolve`.
        action: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A new file would replace an existing one.
    #[error(transparent)]
    Output(#[from] crate::bundle::output::OutputError),
    /// The arguments, or their combination, are wrong (nothing was sent).
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// A draft ceremony file cannot be prepared as it is (nothing was sent).
    #[error(transparent)]
    Draft(#[from] DraftError),
    /// A KMS key is not one the command can use.
    #[error(transparent)]
    Key(#[from] KeyProblem),
    /// KMS answered without a field it always returns.
    #[error("KMS {operation} answered without {missing}: nothing was written; try again, and check the endpoint if it persists")]
    IncompleteAnswer {
        /// The API operation.
        operation: &'static str,
        /// What was missing.
        missing: &'static str,
    },
    /// KMS returned import parameters the air-gapped side would refuse.
    #[error("KMS returned parameters byok-airgap would refuse: {0}; nothing was written")]
    UnusableParameters(#[source] crate::kms::import_params::ParamsError),
    /// Some bundles of a batch failed.
    #[error("{0} bundle(s) failed (listed above); fix the cause and run the same command again: finished bundles are not repeated")]
    BatchFailed(usize),
    /// ImportKeyMaterial succeeded but its receipt could not be written.
    #[error("imported (KeyMaterialId {key_material_id}), but cannot record the receipt: {source}; run the same import again: it reconciles with KMS")]
    ReceiptNotRecorded {
        /// What ImportKeyMaterial answered.
        key_material_id: String,
        /// Why the receipt was not written.
        #[source]
        source: super::state::StateError,
    },
    /// A bundle of a batch was not started (interrupted).
    #[error("{0} was not read (interrupted); run the same command again to read it")]
    NotRead(String),
    /// The process cannot install its SIGINT/SIGTERM handlers.
    #[error("cannot listen for SIGINT/SIGTERM: {0}")]
    Signals(#[source] std::io::Error),
    /// KMS's endpoint rules give no endpoint for the Region.
    #[error(
        "no KMS endpoint for Region {region}: {source}; check --region (or pass --endpoint-url)"
    )]
    NoEndpoint {
        /// The Region.
        region: String,
        /// What the SDK's rules said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `rotate` of a bundle imported as DEFAULT.
    #[error("the bundle for {0} was not imported as NEW_KEY_MATERIAL, so there is no pending material to rotate to: import new material with `import --new-key-material` first")]
    NotNewMaterial(String),
    /// The task working on a key or bundle panicked (a bug).
    #[error("internal error: the task for {0} panicked; please report it (other keys and bundles are not affected)")]
    TaskPanicked(String),
    /// A bug: something that cannot happen did.
    #[error("internal error: {0}; please report it")]
    Internal(&'static str),
    /// `iam-policy` cannot build the policy asked for.
    #[error(transparent)]
    Iam(#[from] super::iam::IamError),
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

/// Arguments that are wrong, alone or together: the message says what to pass.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    /// `--tag` without keys created here.
    #[error("--tag applies to keys created here (--create, or --create-missing with --ceremony); tag existing keys with `aws kms tag-resource`")]
    TagWithoutCreate,
    /// `prepare` with no key named or created.
    #[error("name keys with --key or --key-list FILE, or create them with --create KEY_SPEC (or use --ceremony FILE)")]
    NoKeys,
    /// `prepare` without an algorithm or output directory.
    #[error("give --wrapping-algorithm and --out-dir, or prepare a ceremony file with --ceremony")]
    AlgorithmAndOutDir,
    /// `--alias` with other than one `--create`.
    #[error("--alias names one key: use it with exactly one --create")]
    AliasNeedsOneCreate,
    /// Not a customer alias name.
    #[error("{0:?} is not a customer alias: use alias/NAME (not alias/aws/…)")]
    BadAlias(String),
    /// Not an RSA wrapping key spec.
    #[error("wrapping key spec {0:?} must be RSA_2048, RSA_3072 or RSA_4096")]
    WrappingKeySpec(String),
    /// Not a Region name.
    #[error("{0:?} is not an AWS Region name (like eu-west-1)")]
    Region(String),
    /// A key ARN in one Region, a Region setting naming another.
    #[error("{key} is in Region {key_region}, not {region}: use the key's Region (--region {key_region}), or name the key by ID or alias")]
    KeyInOtherRegion {
        /// The key.
        key: String,
        /// Its ARN's Region.
        key_region: String,
        /// The Region asked for.
        region: String,
    },
    /// Neither `--no-expiry` nor `--valid-to`.
    #[error("choose --no-expiry or --valid-to TIME (KMS's default model requires an expiry)")]
    ChooseExpiry,
    /// `--valid-to` that is not RFC 3339.
    #[error("--valid-to {0:?} is not an RFC 3339 time (like 2027-06-30T00:00:00Z)")]
    ValidTo(String),
    /// `--params` with a directory of several bundles and no `--target`.
    #[error("{} holds {bundles} bundles: name one with --target LABEL/TARGET, or import them all with --params-dir", dir.display())]
    OneBundle {
        /// The ceremony directory.
        dir: std::path::PathBuf,
        /// How many bundles it holds.
        bundles: usize,
    },
    /// `--target` names no bundle of the directory.
    #[error("{} has no bundle {target:?}; it has: {available}", dir.display())]
    NoSuchBundle {
        /// The ceremony directory.
        dir: std::path::PathBuf,
        /// What was asked for.
        target: String,
        /// The bundles it has, comma-separated.
        available: String,
    },
    /// A directory without any bundle.
    #[error("{} holds no wrap bundle: name the ceremony (or wrap) output directory the custodians signed", .0.display())]
    NoBundles(std::path::PathBuf),
    /// `--json` and `--csv` together.
    #[error("--json and --csv both given: choose one output format")]
    JsonAndCsv,
    /// A deletion window KMS does not accept.
    #[error("--grace-days {0}: KMS's pending window is 7 to 30 days")]
    GraceDays(i32),
    /// An output file that exists.
    #[error("{} already exists; refusing to overwrite it", .0.display())]
    Exists(std::path::PathBuf),
    /// The prepared ceremony file is not written next to its draft.
    #[error("write the prepared ceremony file next to the draft (in {}): the paths in it are relative to its directory", .0.display())]
    OutNotNextToDraft(std::path::PathBuf),
}

/// A draft ceremony file `prepare --ceremony` cannot fill in as it is.
#[derive(Debug, thiserror::Error)]
pub enum DraftError {
    /// The draft does not parse.
    #[error("{}: {source}", path.display())]
    Structure {
        /// The draft.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: Box<crate::ceremony::file::PlanError>,
    },
    /// A target already carries a wrapping key fingerprint.
    #[error("{0} already has a wrapping_key_sha256: this file was prepared already; start from the draft")]
    AlreadyPrepared(String),
    /// A target names no key and keys are not to be created.
    #[error("{bundle} names no kms_key: add one, or pass --create-missing to create an EXTERNAL {key_spec} key")]
    NoKey {
        /// `LABEL/TARGET`.
        bundle: String,
        /// The key's spec.
        key_spec: crate::kms::KeySpec,
    },
    /// KMS cannot import this key spec with this wrapping.
    #[error("{bundle}: {source}")]
    Combination {
        /// `LABEL/TARGET`.
        bundle: String,
        /// Why not.
        #[source]
        source: crate::kms::key_spec::CombinationError,
    },
    /// The key's ARN and the target's Region disagree.
    #[error("{bundle}: kms_key is in {key_region}, region says {region}: make the target's region the key ARN's Region (or leave one of them out)")]
    Region {
        /// `LABEL/TARGET`.
        bundle: String,
        /// The ARN's Region.
        key_region: String,
        /// The target's `region`.
        region: String,
    },
    /// A params path outside the draft's directory.
    #[error("{bundle}: params path {} leaves the draft's directory (absolute, or with ..): name a file under {}", params.display(), base.display())]
    ParamsOutside {
        /// `LABEL/TARGET`.
        bundle: String,
        /// The path given.
        params: std::path::PathBuf,
        /// The draft's directory.
        base: std::path::PathBuf,
    },
    /// Two targets write one file.
    #[error("{bundle}: another target writes {} too", .params.display())]
    ParamsShared {
        /// `LABEL/TARGET`.
        bundle: String,
        /// The path given.
        params: std::path::PathBuf,
    },
    /// An existing parameters file that does not parse.
    #[error("{bundle}: {} exists and is not usable ({source}); remove it to fetch new parameters", path.display())]
    ParamsUnusable {
        /// `LABEL/TARGET`.
        bundle: String,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: crate::kms::import_params::ParamsError,
    },
    /// An existing parameters file this bastion did not write (or that changed).
    #[error("{bundle}: {} exists but this bastion did not write it (no matching record in its state directory {}), or it changed since; remove it to fetch new parameters", path.display(), state.display())]
    ParamsNotOurs {
        /// `LABEL/TARGET`.
        bundle: String,
        /// The file.
        path: std::path::PathBuf,
        /// The state directory searched.
        state: std::path::PathBuf,
    },
    /// An existing parameters file for something else, or about to expire.
    #[error("{bundle}: {} exists but is not this target's (algorithm, key spec, wrapping key, key) or expires within 2 hours; remove it to fetch new parameters", path.display())]
    ParamsNotThisTarget {
        /// `LABEL/TARGET`.
        bundle: String,
        /// The file.
        path: std::path::PathBuf,
    },
}

/// Why the bastion refuses to import, rotate, move an alias or retire a key.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A file of the ceremony directory is not the one the custodians signed.
    #[error("refusing to import: {0} is not the file the custodians signed; copy the directory again, exactly as it was signed, from the media")]
    NotSigned(String),
    /// manifest.json does not parse as a wrap manifest.
    #[error("refusing: manifest.json is not a wrap manifest ({0}); name a directory that byok-airgap wrote")]
    NotAManifest(#[source] serde_json::Error),
    /// The blob's hash is not the manifest's.
    #[error("refusing to import: EncryptedKeyMaterial.bin differs from the manifest that was signed with it; wrap again and have the custodians sign the new directory")]
    BlobDiffers,
    /// The bastion's own parameters file does not parse (or expired).
    #[error("refusing to import: the bastion's import parameters: {0}")]
    Parameters(#[source] crate::kms::import_params::ParamsError),
    /// The bundle's import token is not the one in the bastion's parameters.
    #[error("refusing to import: the bundle's ImportToken.bin is not the token in the bastion's parameters file: it was wrapped for another prepare")]
    TokenDiffers,
    /// The material was wrapped under another wrapping key.
    #[error("refusing to import: the key material was wrapped under another wrapping key than the one this bastion fetched")]
    WrappingKeyDiffers,
    /// The bundle and the parameters name different keys.
    #[error("refusing to import: the bundle is for {bundle_key} but the parameters are for {params_key}; give the parameters file `prepare` wrote for {bundle_key}")]
    KeyDiffers {
        /// The manifest's key.
        bundle_key: String,
        /// The parameters' key.
        params_key: String,
    },
    /// A parameters file this bastion has no record of.
    #[error("refusing to import: {} is not a parameters file this bastion wrote: its state directory {} has no record of its import token (run `byok-bastion prepare` here, with the same --state-dir)", file.display(), state.display())]
    ParamsNotRecorded {
        /// The file.
        file: std::path::PathBuf,
        /// The state directory.
        state: std::path::PathBuf,
    },
    /// A parameters file changed since this bastion wrote it.
    #[error("refusing to import: {} differs from the parameters file this bastion wrote ({}, SHA-256 {sha256}): it was changed after prepare", file.display(), recorded.display())]
    ParamsChanged {
        /// The file given.
        file: std::path::PathBuf,
        /// The file recorded.
        recorded: std::path::PathBuf,
        /// Its recorded SHA-256.
        sha256: String,
    },
    /// A receipt of this bastion records another blob.
    #[error("refusing: the receipt {} records other encrypted key material than this bundle's; move it away only if you know why", .0.display())]
    ReceiptMaterialDiffers(std::path::PathBuf),
    /// Some bundles of a batch cannot be imported, so none is.
    #[error("refusing to import: {} of {total} bundles cannot be imported, so none is (import the good ones one by one with --target if you must):\n  {}", problems.len(), problems.join("\n  "))]
    Batch {
        /// `BUNDLE: why`, one per bad bundle.
        problems: Vec<String>,
        /// Bundles in the batch.
        total: usize,
    },
    /// KMS's answer contradicts the HSM's check value.
    #[error("KMS key {key} does NOT hold the HSM's key: {mismatch}; do not use this key: find out whose material it holds (this bastion's receipts, `byok-bastion status`)")]
    NotTheHsmKey {
        /// The key.
        key: String,
        /// What differs.
        mismatch: Mismatch,
    },
    /// After a lost response, the key holds material, and not this bundle's.
    #[error("refusing to import: KMS key {key} already holds key material, and not this bundle's ({source}); nothing sent")]
    HoldsOtherMaterial {
        /// The key.
        key: String,
        /// What the check found.
        #[source]
        source: Box<BastionError>,
    },
    /// This bastion's receipt names another key than the signed manifest.
    #[error("refusing to rotate: this bastion's receipt names key {receipt_key}, the signed manifest {manifest_key}; nothing rotated")]
    ReceiptOtherKey {
        /// The receipt's key.
        receipt_key: String,
        /// The manifest's key.
        manifest_key: String,
    },
    /// No receipt of this bastion for the bundle to rotate.
    #[error("refusing to rotate: this bastion has no receipt of importing {bundle} (state directory {}): import it from here first; nothing rotated", state.display())]
    NoRotationReceipt {
        /// The bundle (or "this bundle").
        bundle: String,
        /// The state directory.
        state: std::path::PathBuf,
    },
    /// RotateKeyOnDemand returned but the current material is not the imported one.
    #[error("RotateKeyOnDemand returned, but the current key material is {after:?} (was {before:?}, imported {imported:?}); check the key with DescribeKey before using it")]
    RotationNotConfirmed {
        /// Current material after.
        after: Option<String>,
        /// Current material before.
        before: Option<String>,
        /// What this bastion imported.
        imported: Option<String>,
    },
    /// The proof failed: the alias does not move.
    #[error("the alias stays where it is: {0}")]
    AliasProofFailed(#[source] Box<BastionError>),
    /// The key is usable, not proven: the alias does not move.
    #[error("the alias stays where it is: not proven: {0}")]
    AliasNotProven(String),
    /// An alias still points to the key to retire.
    #[error("refusing to retire: {alias} still points to {key}; move it first (byok-bastion move-alias)")]
    AliasStillPoints {
        /// The alias.
        alias: String,
        /// The key.
        key: String,
    },
    /// This bastion never moved an alias away from the key to a proven key.
    #[error("refusing to retire: this bastion never moved an alias from {key} to a proven key (no record in {}{}); run `byok-bastion move-alias` for its replacement first", state.display(), if *.moved_elsewhere { ", or the alias it moved points elsewhere now" } else { "" })]
    NeverMoved {
        /// The key.
        key: String,
        /// The state directory.
        state: std::path::PathBuf,
        /// Records exist but their aliases point elsewhere now.
        moved_elsewhere: bool,
    },
}

/// What differs between KMS's answer and the HSM's check value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Mismatch {
    /// An HMAC manifest without its check.
    #[error("the manifest has no HMAC check")]
    NoHmacCheck,
    /// The check message is not hex.
    #[error("bad HMAC check message")]
    BadHmacMessage,
    /// GenerateMac differs.
    #[error("GenerateMac gave {kms}, the HSM computed {hsm}")]
    Mac {
        /// KMS's MAC, hex.
        kms: String,
        /// The HSM's, hex.
        hsm: String,
    },
    /// An asymmetric manifest without its public key.
    #[error("the manifest has no public key")]
    NoPublicKey,
    /// GetPublicKey differs.
    #[error("GetPublicKey differs from the HSM's public key")]
    PublicKey,
    /// Encrypt answered without a ciphertext.
    #[error("Encrypt returned nothing")]
    NothingEncrypted,
    /// Decrypt did not give the probe back.
    #[error("Encrypt/Decrypt round trip failed")]
    RoundTrip,
}

/// A KMS key that is not one the command can use.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    /// Not an imported key.
    #[error("{0} is not a key with Origin EXTERNAL (imported key material); create one with `byok-bastion prepare --create`")]
    NotExternal(String),
    /// Another key spec than the ceremony file says.
    #[error("{key} is a {actual} key, the ceremony file says {expected}: name a {expected} key in the ceremony file, or leave kms_key out and use --create-missing")]
    SpecDiffers {
        /// The key.
        key: String,
        /// What KMS says.
        actual: String,
        /// What the file says.
        expected: crate::kms::KeySpec,
    },
    /// A key spec this tool does not import.
    #[error("{key}: {source}")]
    UnknownSpec {
        /// The key.
        key: String,
        /// Why.
        #[source]
        source: crate::kms::key_spec::UnknownName,
    },
    /// KMS cannot import this key with this wrapping.
    #[error("{key}: {source}")]
    Combination {
        /// The key.
        key: String,
        /// Why not.
        #[source]
        source: crate::kms::key_spec::CombinationError,
    },
    /// DescribeKey answered for another key than the one asked about, or
    /// without saying which key.
    #[error("DescribeKey of {asked} answered for {answered:?}, not that key: whatever answered is not KMS, or not this account's; check --endpoint-url, AWS_ENDPOINT_URL_KMS and the profile, then run prepare again")]
    AnswerForAnotherKey {
        /// The key ID or ARN asked about.
        asked: String,
        /// The key ID or ARN in the answer (empty when there was none).
        answered: String,
    },
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
        (Some(c), true) => format!(
            "{c}: {msg} (look {c} up in the KMS API reference for the operation; the command can be run again once the cause is fixed)"
        ),
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
