//! `byok-bastion`'s commands: their arguments, the rules between them
//! ([`UsageError`], table-tested), and what each
//! runs. The binary only parses the command line and calls these.

mod alias;
mod import;
mod output;
mod prepare;
mod status;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use alias::{move_alias, retire, MoveAliasArgs, RetireArgs};
pub use import::{import, ImportArgs};
pub use prepare::{params_digest, prepare, ParamsDigestArgs, PrepareArgs};
pub use status::{status, StatusArgs};
pub use verify::{rotate, verify, RotateArgs, VerifyArgs};

use super::errors::{BastionError, UsageError};
use super::regions::Regions;
use super::state::{self, StateDir};
use crate::ceremony::{self, Policy, VerifiedCeremony};

/// What every command shares: the clients per Region, where the state
/// directory is, and the output format.
pub struct Context {
    /// KMS clients, one per Region, connected on first use.
    pub regions: Arc<Regions>,
    /// `--state-dir`, if given.
    pub state_dir: Option<PathBuf>,
    /// `--json`.
    pub json: bool,
    /// `--profile`, if given.
    pub profile: Option<String>,
}

impl Context {
    /// Open the bastion's state directory (created 0700 if missing).
    pub fn state(&self) -> Result<StateDir, BastionError> {
        let (path, _) = state::resolve(self.state_dir.as_deref())?;
        Ok(StateDir::open(&path)?)
    }

    /// Print `v` as JSON on stdout when `--json` was given.
    fn json(&self, v: &impl serde::Serialize) {
        if self.json {
            output::print_json(v);
        }
    }
}

/// Verify the directory against the bastion's own policy; nothing reaches KMS otherwise.
fn verify_dir(dir: &Path, policy: &Path) -> Result<VerifiedCeremony, BastionError> {
    let policy = Policy::read(policy)?;
    let verified = ceremony::verify(dir, &policy)?;
    eprintln!(
        "verified ceremony {} signed by {} (policy: {} of {} custodians)",
        verified.ceremony_id(),
        verified.signers().join(", "),
        policy.threshold,
        policy.custodians.len()
    );
    Ok(verified)
}

/// What `import`, `verify` and `rotate` start from: the directory verified
/// against the bastion's own policy (nothing reaches KMS otherwise), the
/// bundles asked for, and the state directory; receipts found on the media
/// are reported as ignored.
fn open_ceremony(
    ctx: &Context,
    dir: &Path,
    policy: &Path,
    target: Option<&str>,
) -> Result<(VerifiedCeremony, Vec<String>, StateDir), BastionError> {
    let verified = verify_dir(dir, policy)?;
    let targets = chosen_bundles(dir, verified.bundles(), target)?;
    let state = ctx.state()?;
    output::note_receipts_on_media(dir);
    Ok((verified, targets, state))
}

/// The bundles a command works on: the one named, else all of them.
pub fn chosen_bundles(
    dir: &Path,
    all: Vec<String>,
    target: Option<&str>,
) -> Result<Vec<String>, UsageError> {
    match target {
        Some(t) if all.iter().any(|b| b == t) => Ok(vec![t.to_string()]),
        Some(t) => Err(UsageError::NoSuchBundle {
            dir: dir.to_path_buf(),
            target: t.to_string(),
            available: all.join(", "),
        }),
        None if all.is_empty() => Err(UsageError::NoBundles(dir.to_path_buf())),
        None => Ok(all),
    }
}

/// Whether a command works on one bundle (named, or the only one of a wrap
/// directory) rather than a batch.
fn single(target: Option<&str>, bundles: &[String]) -> bool {
    target.is_some() || bundles == [String::new()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_are_chosen_or_the_refusal_says_what_there_is() {
        let dir = Path::new("ceremony");
        let all = || vec!["a/t1".to_string(), "a/t2".to_string()];
        assert_eq!(chosen_bundles(dir, all(), None).unwrap(), all());
        assert_eq!(
            chosen_bundles(dir, all(), Some("a/t2")).unwrap(),
            vec!["a/t2".to_string()]
        );
        let e = chosen_bundles(dir, all(), Some("a/t3")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ceremony has no bundle \"a/t3\"; it has: a/t1, a/t2"
        );
        assert_eq!(
            chosen_bundles(dir, vec![], None).unwrap_err(),
            UsageError::NoBundles(dir.to_path_buf())
        );
        assert!(single(None, &[String::new()]));
        assert!(single(Some("a/t1"), &all()));
        assert!(!single(None, &all()));
    }
}
