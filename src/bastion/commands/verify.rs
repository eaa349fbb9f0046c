//! `verify` and `rotate`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::output::{finish_batch, progress_line};
use super::{open_ceremony, single, Context};
use crate::bastion::batch;
use crate::bastion::errors::{BastionError, Refusal};
use crate::bastion::prove::{self, Verdict};
use crate::bastion::rotate as lib;

/// `byok-bastion verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The ceremony (or wrap) directory.
    pub dir: PathBuf,
    /// The bastion's own custodian policy.
    #[arg(long)]
    pub policy: PathBuf,
    /// In a ceremony directory, the bundle LABEL/TARGET to check (default: every bundle).
    #[arg(long)]
    pub target: Option<String>,
    /// Bundles checked at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub jobs: u16,
}

/// `byok-bastion verify`: "proven" only when KMS's own answer ties the key
/// to this bundle; "usable, not proven" exits non-zero.
pub async fn verify(ctx: &Context, a: &VerifyArgs) -> Result<(), BastionError> {
    let (verified, targets, state) = open_ceremony(ctx, &a.dir, &a.policy, a.target.as_deref())?;
    if single(a.target.as_deref(), &targets) {
        let target = &targets[0];
        let (key, region) = batch::bundle_key(&verified, target)?;
        let b = ctx.regions.for_key(&key, region.as_deref()).await?;
        let proof = prove::prove(&b, &state, &verified, target).await?;
        ctx.json(&proof);
        return match proof.verdict {
            Verdict::Proven => {
                eprintln!("PROVEN: {}: {}", proof.key_arn, proof.statement);
                Ok(())
            }
            Verdict::UsableNotProven => Err(BastionError::NotProven {
                key: proof.key_arn,
                statement: proof.statement,
            }),
        };
    }
    let stop = batch::StopFlag::on_signals()?;
    let outcomes = batch::verify_all(
        ctx.regions.clone(),
        Arc::new(state),
        Arc::new(verified),
        a.jobs.into(),
        &progress_line,
        &stop,
    )
    .await;
    finish_batch(ctx, "verify", &outcomes)
}

/// `byok-bastion rotate`.
#[derive(Args, Debug)]
pub struct RotateArgs {
    /// The bundle directory imported with --new-key-material.
    pub dir: PathBuf,
    /// The bastion's own custodian policy (the directory is verified first).
    #[arg(long)]
    pub policy: PathBuf,
    /// In a ceremony directory, the bundle LABEL/TARGET (default: every bundle).
    #[arg(long)]
    pub target: Option<String>,
    /// Bundles worked on at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub jobs: u16,
}

/// `byok-bastion rotate`: only the key the signed manifest names and this
/// bastion's own receipt recorded.
pub async fn rotate(ctx: &Context, a: &RotateArgs) -> Result<(), BastionError> {
    let (verified, targets, state) = open_ceremony(ctx, &a.dir, &a.policy, a.target.as_deref())?;
    if single(a.target.as_deref(), &targets) {
        let target = &targets[0];
        let receipt = lib::rotation_receipt(&state, &verified, target)?.ok_or_else(|| {
            Refusal::NoRotationReceipt {
                bundle: if target.is_empty() {
                    "this bundle".into()
                } else {
                    target.clone()
                },
                state: state.path().to_path_buf(),
            }
        })?;
        let b = ctx
            .regions
            .for_key(&receipt.key_arn, Some(&receipt.region))
            .await?;
        let r = lib::rotate(&b, &receipt).await?;
        eprintln!(
            "rotated {}: current key material {} (was {})",
            r.key_arn,
            r.after.as_deref().unwrap_or("?"),
            r.before.as_deref().unwrap_or("none")
        );
        ctx.json(&r);
        return Ok(());
    }
    let stop = batch::StopFlag::on_signals()?;
    let outcomes = batch::rotate_all(
        ctx.regions.clone(),
        Arc::new(state),
        Arc::new(verified),
        targets,
        a.jobs.into(),
        &progress_line,
        &stop,
    )
    .await;
    finish_batch(ctx, "rotate", &outcomes)
}
