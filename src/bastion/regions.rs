//! One KMS client per AWS Region, connected on first use, so one invocation
//! can work on keys in several Regions (a key ARN names its Region).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use super::client::Bastion;
use super::errors::{BastionError, UsageError};

/// Called once per Region when its client is first connected (the binary
/// prints the endpoint there).
pub type OnConnect = Box<dyn Fn(&Bastion) + Send + Sync>;

/// KMS clients by Region, sharing the profile and the endpoint override.
pub struct Regions {
    default_region: Option<String>,
    profile: Option<String>,
    endpoint_url: Option<String>,
    credentials: Option<aws_sdk_kms::config::Credentials>,
    clients: Mutex<BTreeMap<String, Arc<Bastion>>>,
    default_client: Mutex<Option<Arc<Bastion>>>,
    on_connect: OnConnect,
}

/// The Region of a KMS ARN (`arn:PARTITION:kms:REGION:ACCOUNT:key/ID`), if `key` is one.
pub fn region_of(key: &str) -> Option<&str> {
    if !key.starts_with("arn:") {
        return None;
    }
    key.split(':').nth(3).filter(|r| !r.is_empty())
}

impl Regions {
    /// Clients for `profile`; keys that do not name a Region use
    /// `default_region` (or the standard chain's Region).
    pub fn new(
        default_region: Option<String>,
        profile: Option<String>,
        on_connect: OnConnect,
    ) -> Self {
        Regions {
            default_region,
            profile,
            endpoint_url: None,
            credentials: None,
            clients: Mutex::new(BTreeMap::new()),
            default_client: Mutex::new(None),
            on_connect,
        }
    }

    /// Send every request to `url` (`--endpoint-url`), still subject to the endpoint check.
    pub fn with_endpoint_url(mut self, url: Option<String>) -> Self {
        self.endpoint_url = url;
        self
    }

    /// Use these credentials instead of the standard chain's (a role assumed
    /// in another account).
    pub fn with_credentials(mut self, credentials: aws_sdk_kms::config::Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Clients with the same Region, profile and endpoint, but these
    /// credentials (a role assumed in another account); connecting prints nothing.
    pub fn for_credentials(&self, credentials: aws_sdk_kms::config::Credentials) -> Self {
        Regions {
            default_region: self.default_region.clone(),
            profile: self.profile.clone(),
            endpoint_url: self.endpoint_url.clone(),
            credentials: Some(credentials),
            clients: Mutex::new(BTreeMap::new()),
            default_client: Mutex::new(None),
            on_connect: Box::new(|_| {}),
        }
    }

    /// The client of the configured Region (`--region` or the standard chain).
    pub async fn default_region(&self) -> Result<Arc<Bastion>, BastionError> {
        let mut slot = self.default_client.lock().await;
        if let Some(b) = slot.as_ref() {
            return Ok(b.clone());
        }
        let b = match &self.default_region {
            Some(r) => self.region(r).await?,
            None => {
                let b = Arc::new(
                    Bastion::connect_with_credentials(
                        None,
                        self.profile.as_deref(),
                        self.endpoint_url.as_deref(),
                        self.credentials.clone(),
                    )
                    .await?,
                );
                let mut clients = self.clients.lock().await;
                match clients.get(&b.region) {
                    Some(existing) => existing.clone(),
                    None => {
                        (self.on_connect)(&b);
                        clients.insert(b.region.clone(), b.clone());
                        b
                    }
                }
            }
        };
        *slot = Some(b.clone());
        Ok(b)
    }

    /// The client of `region`.
    pub async fn region(&self, region: &str) -> Result<Arc<Bastion>, BastionError> {
        if region.is_empty()
            || region.len() > 32
            || !region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(UsageError::Region(region.to_string()).into());
        }
        let mut clients = self.clients.lock().await;
        if let Some(b) = clients.get(region) {
            return Ok(b.clone());
        }
        let b = Arc::new(
            Bastion::connect_with_credentials(
                Some(region),
                self.profile.as_deref(),
                self.endpoint_url.as_deref(),
                self.credentials.clone(),
            )
            .await?,
        );
        (self.on_connect)(&b);
        clients.insert(region.to_string(), b.clone());
        Ok(b)
    }

    /// The client for `key`: its ARN's Region, else `region`, else the
    /// configured Region.
    pub async fn for_key(
        &self,
        key: &str,
        region: Option<&str>,
    ) -> Result<Arc<Bastion>, BastionError> {
        match (region_of(key), region) {
            (Some(a), Some(r)) if a != r => Err(UsageError::KeyInOtherRegion {
                key: key.to_string(),
                key_region: a.to_string(),
                region: r.to_string(),
            }
            .into()),
            (Some(r), _) | (None, Some(r)) => self.region(r).await,
            (None, None) => self.default_region().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_from_arn_only() {
        assert_eq!(
            region_of("arn:aws:kms:eu-west-1:111122223333:key/abc"),
            Some("eu-west-1")
        );
        assert_eq!(region_of("alias/x"), None);
        assert_eq!(region_of("1234abcd-12ab-34cd-56ef-1234567890ab"), None);
        assert_eq!(region_of("arn:aws:kms::1:key/x"), None);
    }
}
