//! `move-alias` and `retire`.

use std::path::PathBuf;

use clap::Args;

use super::{verify_dir, Context};
use crate::bastion::alias as lib;
use crate::bastion::batch;
use crate::bastion::errors::BastionError;

/// `byok-bastion move-alias`.
#[derive(Args, Debug)]
pub struct MoveAliasArgs {
    /// The imported bundle directory.
    pub dir: PathBuf,
    /// The alias to move (alias/NAME); created if missing.
    #[arg(long)]
    pub alias: String,
    /// The bastion's own custodian policy.
    #[arg(long)]
    pub policy: PathBuf,
    /// In a ceremony directory, the bundle LABEL/TARGET.
    #[arg(long, default_value = "")]
    pub target: String,
}

/// `byok-bastion move-alias`: prove, then move the alias and tag both keys.
pub async fn move_alias(ctx: &Context, a: &MoveAliasArgs) -> Result<(), BastionError> {
    let verified = verify_dir(&a.dir, &a.policy)?;
    let state = ctx.state()?;
    let (key, region) = batch::bundle_key(&verified, &a.target)?;
    let b = ctx.regions.for_key(&key, region.as_deref()).await?;
    let m = lib::move_alias(&b, &state, &verified, &a.target, &a.alias).await?;
    eprintln!("PROVEN: {}", m.proof.statement);
    eprintln!(
        "{} → {} (was {})",
        m.alias,
        m.key,
        m.previous_key.as_deref().unwrap_or("not set")
    );
    ctx.json(&m);
    Ok(())
}

/// `byok-bastion retire`.
#[derive(Args, Debug)]
pub struct RetireArgs {
    /// The old key (ID or ARN).
    #[arg(long)]
    pub key: String,
    /// Days before KMS deletes it (7 to 30).
    #[arg(long)]
    pub grace_days: i32,
}

/// `byok-bastion retire`: disable a replaced key and schedule its deletion.
pub async fn retire(ctx: &Context, a: &RetireArgs) -> Result<(), BastionError> {
    let state = ctx.state()?;
    let b = ctx.regions.for_key(&a.key, None).await?;
    let r = lib::retire(&b, &state, &a.key, a.grace_days).await?;
    eprintln!(
        "{} disabled; KMS deletes it on {}",
        r.key,
        r.deletion_date.as_deref().unwrap_or("(date not reported)")
    );
    ctx.json(&r);
    Ok(())
}
