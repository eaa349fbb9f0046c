//! `prepare` and `params-digest`.

use std::path::{Path, PathBuf};

use clap::Args;

use super::output::{print_json, print_parameters_digest, print_prepared};
use super::Context;
use crate::bastion::errors::{BastionError, UsageError};
use crate::bastion::prepare::{self as lib, CeremonyPrepare, CreateSpec, Pacer, PreparedTarget};
use crate::kms::{KeySpec, WrappingAlgorithm};

/// `byok-bastion prepare`.
#[derive(Args, Debug, Default)]
pub struct PrepareArgs {
    /// Existing KMS key (ID, ARN or alias), repeatable; an ARN's Region is used.
    #[arg(long = "key", conflicts_with = "ceremony")]
    pub keys: Vec<String>,
    /// Create a new EXTERNAL key of this spec first, repeatable.
    #[arg(long = "create", value_name = "KEY_SPEC", conflicts_with = "ceremony")]
    pub create: Vec<KeySpec>,
    /// A file of keys (ID, ARN or alias), one per line; blank lines and `#` comments ignored.
    #[arg(long, conflicts_with = "ceremony")]
    pub key_list: Option<PathBuf>,
    /// Description for created keys.
    #[arg(long, default_value = "byok-ceremony imported key")]
    pub description: String,
    /// Alias for the created key (with exactly one --create).
    #[arg(long, requires = "create")]
    pub alias: Option<String>,
    /// Tag created keys with KEY=VALUE, repeatable.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = lib::parse_tag)]
    pub tags: Vec<(String, String)>,
    /// The wrapping algorithm to request (with --key/--create; a ceremony file names it per target).
    #[arg(long, required_unless_present = "ceremony")]
    pub wrapping_algorithm: Option<WrappingAlgorithm>,
    /// RSA_2048, RSA_3072 or RSA_4096 (a ceremony target may name its own).
    #[arg(long, default_value = "RSA_2048")]
    pub wrapping_key_spec: String,
    /// Directory for the parameters files (with --key/--create; created if missing).
    #[arg(long, required_unless_present = "ceremony")]
    pub out_dir: Option<PathBuf>,
    /// A draft ceremony file: prepare every target it lists (parameters go where it says).
    #[arg(long, requires = "out")]
    pub ceremony: Option<PathBuf>,
    /// With --ceremony: the completed ceremony file to write, next to the draft.
    #[arg(long, requires = "ceremony")]
    pub out: Option<PathBuf>,
    /// With --ceremony: create an EXTERNAL key for each target that names no kms_key.
    #[arg(long, requires = "ceremony")]
    pub create_missing: bool,
    /// GetParametersForImport calls per second per Region (KMS's quota: about 1 per
    /// account and Region); 0 for no pacing.
    #[arg(long, default_value_t = 0.9)]
    pub params_per_second: f64,
}

/// `prepare --key/--create`, checked: what to fetch, where.
#[derive(Debug, PartialEq)]
pub struct KeysRequest {
    /// Keys named on the command line or in `--key-list` (not yet created ones).
    pub keys: Vec<String>,
    /// The wrapping algorithm.
    pub algorithm: WrappingAlgorithm,
    /// Where the parameters files go.
    pub out_dir: PathBuf,
}

impl PrepareArgs {
    /// The rules between `--key`, `--key-list`, `--create`, `--alias` and
    /// `--tag`, checked before anything is read or sent; `list` is the
    /// content of `--key-list`.
    pub fn keys_request(&self, list: Option<&str>) -> Result<KeysRequest, UsageError> {
        let (Some(algorithm), Some(out_dir)) = (self.wrapping_algorithm, &self.out_dir) else {
            return Err(UsageError::AlgorithmAndOutDir);
        };
        let mut keys = self.keys.clone();
        keys.extend(
            list.unwrap_or("")
                .lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
        if keys.is_empty() && self.create.is_empty() {
            return Err(UsageError::NoKeys);
        }
        if !self.tags.is_empty() && self.create.is_empty() {
            return Err(UsageError::TagWithoutCreate);
        }
        if self.alias.is_some() && self.create.len() != 1 {
            return Err(UsageError::AliasNeedsOneCreate);
        }
        if let Some(alias) = &self.alias {
            if !alias.starts_with("alias/") || alias.starts_with("alias/aws/") {
                return Err(UsageError::BadAlias(alias.clone()));
            }
        }
        lib::wrapping_key_bits(&self.wrapping_key_spec)
            .map_err(|_| UsageError::WrappingKeySpec(self.wrapping_key_spec.clone()))?;
        Ok(KeysRequest {
            keys,
            algorithm,
            out_dir: out_dir.clone(),
        })
    }

    /// The rules of `prepare --ceremony`.
    pub fn check_ceremony(&self) -> Result<(), UsageError> {
        if !self.tags.is_empty() && !self.create_missing {
            return Err(UsageError::TagWithoutCreate);
        }
        lib::wrapping_key_bits(&self.wrapping_key_spec)
            .map_err(|_| UsageError::WrappingKeySpec(self.wrapping_key_spec.clone()))?;
        Ok(())
    }
}

/// `byok-bastion prepare`.
pub async fn prepare(ctx: &Context, a: &PrepareArgs) -> Result<(), BastionError> {
    if let (Some(draft), Some(out)) = (&a.ceremony, &a.out) {
        return prepare_ceremony(ctx, a, draft, out).await;
    }
    let list = match &a.key_list {
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|source| BastionError::Io {
                action: "read",
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let mut req = a.keys_request(list.as_deref())?;
    let state = ctx.state()?;
    std::fs::create_dir_all(&req.out_dir).map_err(|source| BastionError::Io {
        action: "create",
        path: req.out_dir.clone(),
        source,
    })?;
    for spec in &a.create {
        let b = ctx.regions.default_region().await?;
        let create = CreateSpec {
            key_spec: *spec,
            description: a.description.clone(),
            alias: a.alias.clone(),
            tags: a.tags.clone(),
        };
        let arn = lib::create(&b, &create).await?;
        eprintln!("created EXTERNAL {spec} key {arn}");
        req.keys.push(arn);
    }
    let mut pacer = Pacer::per_second(a.params_per_second);
    let mut done = Vec::new();
    for key in &req.keys {
        let b = ctx.regions.for_key(key, None).await?;
        let short = key.rsplit(['/', ':']).next().unwrap_or(key);
        let file = req.out_dir.join(format!("{short}.params.json"));
        pacer.wait(&b.region).await;
        let spec = &a.wrapping_key_spec;
        let p = lib::prepare(&b, &state, key, req.algorithm, spec, None, &file).await?;
        print_prepared(&p);
        done.push(p);
    }
    ctx.json(&done);
    Ok(())
}

fn report_target(t: &PreparedTarget) {
    let how = if t.created {
        " (key created now)"
    } else if t.kept {
        " (parameters kept from an earlier run)"
    } else {
        ""
    };
    eprintln!("{}/{} in {}{how}:", t.label, t.target, t.region);
    print_prepared(&t.prepared);
}

async fn prepare_ceremony(
    ctx: &Context,
    a: &PrepareArgs,
    draft: &Path,
    out: &Path,
) -> Result<(), BastionError> {
    a.check_ceremony()?;
    let state = ctx.state()?;
    let opts = CeremonyPrepare {
        draft,
        out,
        create_missing: a.create_missing,
        default_wrapping_key_spec: &a.wrapping_key_spec,
        tags: &a.tags,
        params_per_second: a.params_per_second,
    };
    let done = lib::prepare_ceremony(&ctx.regions, &state, &opts, &report_target).await?;
    eprintln!(
        "wrote {} ({} targets); take it with the parameters files to the air-gapped workstation and check it with `byok-airgap ceremony plan`",
        out.display(),
        done.len()
    );
    let (_, digest) = lib::parameters_digest(&state, out)?;
    print_parameters_digest(&digest);
    ctx.json(&done);
    Ok(())
}

/// `byok-bastion params-digest`.
#[derive(Args, Debug)]
pub struct ParamsDigestArgs {
    /// The completed ceremony file (this bastion's own copy).
    #[arg(long)]
    pub ceremony: PathBuf,
}

/// `byok-bastion params-digest`: from parameters this bastion fetched; no KMS call.
pub fn params_digest(ctx: &Context, a: &ParamsDigestArgs) -> Result<(), BastionError> {
    let (lines, digest) = lib::parameters_digest(&ctx.state()?, &a.ceremony)?;
    if ctx.json {
        print_json(&serde_json::json!({
            "parameters_digest": digest.hex(),
            "targets": lines,
        }));
        return Ok(());
    }
    for l in &lines {
        eprintln!(
            "{}  {}  {}  wrapping key {}",
            l.bundle, l.key_arn, l.region, l.wrapping_key_sha256
        );
    }
    print_parameters_digest(&digest);
    println!("{}", digest.hex());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> PrepareArgs {
        PrepareArgs {
            wrapping_algorithm: Some(WrappingAlgorithm::RsaesOaepSha256),
            wrapping_key_spec: "RSA_2048".into(),
            out_dir: Some("params".into()),
            ..PrepareArgs::default()
        }
    }

    #[test]
    fn prepare_argument_rules_and_their_exact_messages() {
        type Change = fn(&mut PrepareArgs);
        let cases: [(Change, &str); 7] = [
            (|a| a.out_dir = None, "give --wrapping-algorithm and --out-dir, or prepare a ceremony file with --ceremony"),
            (|_| {}, "name keys with --key or --key-list FILE, or create them with --create KEY_SPEC (or use --ceremony FILE)"),
            (
                |a| {
                    a.keys = vec!["k".into()];
                    a.tags = vec![("team".into(), "x".into())];
                },
                "--tag applies to keys created here (--create, or --create-missing with --ceremony); tag existing keys with `aws kms tag-resource`",
            ),
            (
                |a| {
                    a.create = vec![KeySpec::Hmac256, KeySpec::Hmac256];
                    a.alias = Some("alias/x".into());
                },
                "--alias names one key: use it with exactly one --create",
            ),
            (
                |a| {
                    a.create = vec![KeySpec::Hmac256];
                    a.alias = Some("alias/aws/s3".into());
                },
                "\"alias/aws/s3\" is not a customer alias: use alias/NAME (not alias/aws/…)",
            ),
            (
                |a| {
                    a.keys = vec!["k".into()];
                    a.wrapping_key_spec = "RSA_1024".into();
                },
                "wrapping key spec \"RSA_1024\" must be RSA_2048, RSA_3072 or RSA_4096",
            ),
            (
                |a| {
                    a.create = vec![KeySpec::Hmac256];
                    a.alias = Some("webhooks".into());
                },
                "\"webhooks\" is not a customer alias: use alias/NAME (not alias/aws/…)",
            ),
        ];
        for (change, message) in cases {
            let mut a = args();
            change(&mut a);
            assert_eq!(a.keys_request(None).unwrap_err().to_string(), message);
        }
        let req = args()
            .keys_request(Some(
                "arn:aws:kms:eu-west-1:111122223333:key/1 # payments\n\n# none\nalias/b\n",
            ))
            .unwrap();
        assert_eq!(
            req.keys,
            vec![
                "arn:aws:kms:eu-west-1:111122223333:key/1".to_string(),
                "alias/b".into()
            ]
        );
        let mut a = args();
        a.tags = vec![("team".into(), "x".into())];
        assert_eq!(a.check_ceremony(), Err(UsageError::TagWithoutCreate));
        a.create_missing = true;
        assert_eq!(a.check_ceremony(), Ok(()));
    }
}
