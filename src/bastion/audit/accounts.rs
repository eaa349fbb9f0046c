//! Several accounts: `--role-arn` (a template with `{account}`) plus
//! `--accounts A,B` or `--organization` (organizations:ListAccounts). The
//! bastion's own credentials assume the role in each account (STS
//! AssumeRole); the resources of each account are listed with its role, and
//! each key is read with the credentials of the key's account when the audit
//! has them (an assumed account), else with the bastion's own (typically the
//! central security account that holds the keys).

use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_sdk_kms::config::Credentials;
use aws_sdk_organizations::types::{AccountState, AccountStatus};

use super::endpoint_override;
use crate::bastion::errors::BastionError;
use crate::bastion::regions::Regions;

/// Which accounts to audit.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct AccountArgs {
    /// The role to assume in each account: an ARN template in which
    /// `{account}` becomes the account ID (arn:aws:iam::{account}:role/byok-audit).
    #[arg(long)]
    pub role_arn: Option<String>,
    /// The accounts to audit with --role-arn (12-digit IDs, comma-separated or repeated).
    #[arg(long = "accounts", value_delimiter = ',', requires = "role_arn")]
    pub accounts: Vec<String>,
    /// Audit every ACTIVE account of the organization (organizations:ListAccounts,
    /// with the bastion's own credentials) with --role-arn.
    #[arg(long, requires = "role_arn", conflicts_with = "accounts")]
    pub organization: bool,
}

/// Why the accounts could not be chosen.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The role template lacks `{account}`.
    #[error("--role-arn {0:?} has no {{account}}: write it as a template, e.g. arn:aws:iam::{{account}}:role/byok-audit")]
    NoPlaceholder(String),
    /// Not a 12-digit account ID.
    #[error("{0:?} is not an AWS account ID (12 digits)")]
    BadAccount(String),
    /// `--role-arn` alone.
    #[error("--role-arn needs --accounts A,B or --organization to say which accounts to audit")]
    NoAccounts,
    /// The role ARN built from the template is not an IAM role ARN.
    #[error("--role-arn gives {0:?} for an account, which is not an IAM role ARN (arn:PARTITION:iam::ACCOUNT:role/NAME)")]
    NotARole(String),
    /// ListAccounts failed.
    #[error("organizations:ListAccounts failed ({0}): run with credentials of the organization's management or delegated administrator account, or name the accounts with --accounts")]
    ListAccounts(String),
}

/// One account to audit, with the credentials to do it.
pub struct Scope {
    /// The account ID (`None`: the bastion's own credentials, account not asked).
    pub account: Option<String>,
    /// The assumed role's credentials (`None`: the bastion's own).
    pub credentials: Option<Credentials>,
    /// KMS clients with these credentials (for key references without an
    /// account: key IDs and alias names).
    pub kms: Arc<Regions>,
    /// Why the role could not be assumed (then nothing is listed there).
    pub failed: Option<String>,
}

/// The role ARN for `account` from `template`.
pub fn role_for(template: &str, account: &str) -> Result<String, AccountError> {
    if !template.contains("{account}") {
        return Err(AccountError::NoPlaceholder(template.to_string()));
    }
    if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
        return Err(AccountError::BadAccount(account.to_string()));
    }
    let arn = template.replace("{account}", account);
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6
        || parts[0] != "arn"
        || parts[2] != "iam"
        || parts[4] != account
        || !parts[5].starts_with("role/")
    {
        return Err(AccountError::NotARole(arn));
    }
    Ok(arn)
}

/// Every ACTIVE account of the organization.
async fn organization_accounts(conf: &aws_config::SdkConfig) -> Result<Vec<String>, AccountError> {
    let org = aws_sdk_organizations::Client::new(conf);
    let mut out = Vec::new();
    let mut pages = org.list_accounts().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AccountError::ListAccounts(super::explain_sdk(&e)))?;
        for a in page.accounts() {
            #[allow(deprecated)]
            let active = match (a.state(), a.status()) {
                (Some(s), _) => *s == AccountState::Active,
                (None, Some(s)) => *s == AccountStatus::Active,
                (None, None) => true,
            };
            if let (true, Some(id)) = (active, a.id()) {
                out.push(id.to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The accounts `args` names, each with its assumed role's credentials; with
/// neither `--role-arn` nor accounts, one scope with the bastion's own
/// credentials. `base` is the bastion's own KMS clients.
pub async fn scopes(
    base: Arc<Regions>,
    profile: Option<&str>,
    region: &str,
    args: &AccountArgs,
) -> Result<Vec<Scope>, BastionError> {
    let Some(template) = &args.role_arn else {
        return Ok(vec![Scope {
            account: None,
            credentials: None,
            kms: base,
            failed: None,
        }]);
    };
    endpoint_override("STS")?;
    endpoint_override("ORGANIZATIONS")?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()));
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    let conf = loader.load().await;
    let accounts = if args.organization {
        organization_accounts(&conf).await?
    } else {
        args.accounts.clone()
    };
    if accounts.is_empty() {
        return Err(AccountError::NoAccounts.into());
    }
    let roles: Vec<(String, String)> = accounts
        .iter()
        .map(|a| role_for(template, a).map(|r| (a.clone(), r)))
        .collect::<Result<_, _>>()?;
    let sts = aws_sdk_sts::Client::new(&conf);
    let mut out = Vec::new();
    for (account, role) in roles {
        let assumed = sts
            .assume_role()
            .role_arn(&role)
            .role_session_name("byok-ceremony-audit")
            .duration_seconds(3600)
            .send()
            .await;
        let scope = match assumed.as_ref().map(|o| o.credentials()) {
            Ok(Some(c)) => {
                let creds = Credentials::new(
                    c.access_key_id(),
                    c.secret_access_key(),
                    Some(c.session_token().to_string()),
                    std::time::SystemTime::try_from(*c.expiration()).ok(),
                    "byok-assume-role",
                );
                Scope {
                    account: Some(account),
                    kms: Arc::new(base.for_credentials(creds.clone())),
                    credentials: Some(creds),
                    failed: None,
                }
            }
            Ok(None) => Scope {
                account: Some(account),
                credentials: None,
                kms: base.clone(),
                failed: Some(format!("AssumeRole {role} returned no credentials")),
            },
            Err(e) => Scope {
                account: Some(account),
                credentials: None,
                kms: base.clone(),
                failed: Some(format!(
                    "cannot assume {role} ({}): the role must trust the bastion's principal and allow the audit's read calls",
                    super::explain_sdk(e)
                )),
            },
        };
        out.push(scope);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_template() {
        assert_eq!(
            role_for("arn:aws:iam::{account}:role/byok-audit", "111122223333").unwrap(),
            "arn:aws:iam::111122223333:role/byok-audit"
        );
        assert!(matches!(
            role_for("arn:aws:iam::111122223333:role/x", "111122223333"),
            Err(AccountError::NoPlaceholder(_))
        ));
        assert!(matches!(
            role_for("arn:aws:iam::{account}:role/x", "1111"),
            Err(AccountError::BadAccount(_))
        ));
        assert!(matches!(
            role_for("arn:aws:iam::{account}:role/x", "11112222333a"),
            Err(AccountError::BadAccount(_))
        ));
        assert!(matches!(
            role_for("arn:aws:iam::{account}:user/x", "111122223333"),
            Err(AccountError::NotARole(_))
        ));
        assert!(matches!(
            role_for("arn:aws:iam::999988887777:role/{account}", "111122223333"),
            Err(AccountError::NotARole(_))
        ));
    }
}
