//! The KMS client: the standard AWS credential and endpoint chain, and the
//! endpoint check (HTTPS, or HTTP only on loopback).

use aws_config::BehaviorVersion;

use super::errors::BastionError;

/// Where requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL.
    pub url: String,
    /// Whether it came from `AWS_ENDPOINT_URL_KMS` / `AWS_ENDPOINT_URL`.
    pub overridden: bool,
}

/// Check an endpoint URL: HTTPS anywhere, HTTP only to a loopback host.
pub fn check_endpoint(url: &str) -> Result<(), BastionError> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    if let Some(rest) = lower.strip_prefix("http://") {
        let authority = rest.split('/').next().unwrap_or("");
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().unwrap_or("")
        } else {
            authority.split(':').next().unwrap_or("")
        };
        let loopback = host == "localhost"
            || host == "::1"
            || host
                .parse::<std::net::Ipv4Addr>()
                .map(|a| a.is_loopback())
                .unwrap_or(false);
        if loopback {
            return Ok(());
        }
    }
    Err(BastionError::Endpoint(url.to_string()))
}

/// A configured KMS client.
pub struct Bastion {
    /// The SDK client.
    pub kms: aws_sdk_kms::Client,
    /// The Region in use.
    pub region: String,
    /// The endpoint in use.
    pub endpoint: Endpoint,
}

impl Bastion {
    /// Load configuration the standard way (environment, profiles, SSO,
    /// instance role), with optional Region and profile overrides.
    pub async fn connect(
        region: Option<&str>,
        profile: Option<&str>,
    ) -> Result<Self, BastionError> {
        // The SDK sets no read timeout by default: a dead peer would hang the
        // bastion forever. Throttling and transient errors are retried with
        // backoff (standard mode).
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(10))
                    .operation_attempt_timeout(std::time::Duration::from_secs(30))
                    .operation_timeout(std::time::Duration::from_secs(120))
                    .build(),
            )
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(6));
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r.to_string()));
        }
        if let Some(p) = profile {
            loader = loader.profile_name(p);
        }
        let conf = loader.load().await;
        let region = conf.region().map(|r| r.to_string()).ok_or_else(|| {
            BastionError::Local("no AWS Region configured: pass --region or set AWS_REGION".into())
        })?;
        let overridden = std::env::var("AWS_ENDPOINT_URL_KMS")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .ok()
            .filter(|s| !s.is_empty());
        let endpoint = match overridden {
            Some(url) => Endpoint {
                url,
                overridden: true,
            },
            None => Endpoint {
                url: format!("https://kms.{region}.amazonaws.com"),
                overridden: false,
            },
        };
        check_endpoint(&endpoint.url)?;
        Ok(Bastion {
            kms: aws_sdk_kms::Client::new(&conf),
            region,
            endpoint,
        })
    }
}

impl Bastion {
    /// DescribeKey's metadata for `key` (ID, ARN or alias).
    pub async fn describe(
        &self,
        key: &str,
    ) -> Result<aws_sdk_kms::types::KeyMetadata, BastionError> {
        self.kms
            .describe_key()
            .key_id(key)
            .send()
            .await
            .map_err(|e| super::errors::kms("DescribeKey", e))?
            .key_metadata
            .ok_or_else(|| {
                BastionError::Local(format!("DescribeKey returned no metadata for {key}"))
            })
    }

    /// Every alias in the account and Region as `(alias name, target key ID)`.
    pub async fn aliases(&self) -> Result<Vec<(String, String)>, BastionError> {
        let mut out = Vec::new();
        let mut pages = self.kms.list_aliases().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| super::errors::kms("ListAliases", e))?;
            for a in page.aliases() {
                if let (Some(name), Some(target)) = (a.alias_name(), a.target_key_id()) {
                    out.push((name.to_string(), key_id_of(target).to_string()));
                }
            }
        }
        Ok(out)
    }
}

/// The key ID in a key ID or key ARN (emulators may report either).
pub fn key_id_of(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The account of a key ARN (`arn:PARTITION:kms:REGION:ACCOUNT:key/ID`).
pub fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http() {
        for ok in [
            "https://kms.eu-west-1.amazonaws.com",
            "http://127.0.0.1:4566",
            "http://localhost:1",
            "http://[::1]:80/",
            "http://127.9.9.9",
        ] {
            assert!(check_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://kms.eu-west-1.amazonaws.com",
            "http://10.0.0.1:4566",
            "http://localhost.evil.example",
            "ftp://x",
            "http://128.0.0.1",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
        assert_eq!(
            account_of("arn:aws:kms:us-east-1:111122223333:key/abc"),
            Some("111122223333")
        );
    }
}
