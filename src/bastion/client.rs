//! The KMS client: the standard AWS credential and endpoint chain, and the
//! endpoint check (HTTPS, or HTTP only on loopback) applied to the endpoint
//! the SDK will actually use.
//!
//! The endpoint is resolved from the SDK's own loaded configuration (the same
//! lookups `aws_sdk_kms::Config::from(&SdkConfig)` makes: `AWS_ENDPOINT_URL_KMS`,
//! the profile's `services` section, `AWS_ENDPOINT_URL`, the profile's
//! `endpoint_url`), or `--endpoint-url`, or KMS's own endpoint rules for the
//! Region; it is parsed with a real URL parser, checked, and then set
//! explicitly on the client, and an interceptor refuses any request whose URL
//! is not on that endpoint.

use std::fmt;

use aws_config::BehaviorVersion;
use aws_sdk_kms::config::endpoint::ResolveEndpoint as _;
use aws_sdk_kms::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_kms::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_kms::error::BoxError;

use super::errors::BastionError;

/// Where the endpoint in use came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointSource {
    /// `--endpoint-url`.
    Flag,
    /// The environment variable `AWS_ENDPOINT_URL_KMS`.
    EnvKms,
    /// A `services` section of the shared config file (`kms = endpoint_url = …`).
    ProfileServices,
    /// The environment variable `AWS_ENDPOINT_URL`.
    EnvShared,
    /// `endpoint_url` in the profile of the shared config file.
    ProfileShared,
    /// KMS's own endpoint for the Region (no override anywhere).
    Default,
}

impl fmt::Display for EndpointSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointSource::Flag => "from --endpoint-url",
            EndpointSource::EnvKms => "from AWS_ENDPOINT_URL_KMS",
            EndpointSource::ProfileServices => {
                "from the profile's services section (shared config file)"
            }
            EndpointSource::EnvShared => "from AWS_ENDPOINT_URL",
            EndpointSource::ProfileShared => "from the profile's endpoint_url (shared config file)",
            EndpointSource::Default => "KMS's endpoint for the Region",
        })
    }
}

/// Where requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL, as parsed and normalized (this exact URL is set on the client).
    pub url: String,
    /// Where it came from.
    pub source: EndpointSource,
}

impl Endpoint {
    /// Whether something other than KMS's own endpoint rules chose it.
    pub fn overridden(&self) -> bool {
        self.source != EndpointSource::Default
    }
}

/// Why an endpoint URL is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointProblem {
    /// Not a URL at all.
    #[error("it is not a URL ({0})")]
    NotAUrl(String),
    /// Neither `https` nor `http`.
    #[error("scheme {0:?} is neither https nor http")]
    Scheme(String),
    /// `user:password@` in the URL: the real host is after the `@`.
    #[error("it has a user name or password (user:pass@host): the host is what follows the @, so this is refused")]
    Userinfo,
    /// A query or fragment, which no KMS endpoint has.
    #[error("it has a query or fragment")]
    QueryOrFragment,
    /// No host.
    #[error("it names no host")]
    NoHost,
    /// Plain HTTP to a host that is not loopback.
    #[error("plain HTTP to {0}, which is not a loopback IP address or localhost")]
    PlainHttp(String),
}

/// Check an endpoint URL: HTTPS anywhere, HTTP only to a loopback IP literal
/// or `localhost`; no user information, query or fragment. Returns the parsed URL.
pub fn check_endpoint(raw: &str) -> Result<url::Url, EndpointProblem> {
    let u = url::Url::parse(raw.trim()).map_err(|e| EndpointProblem::NotAUrl(e.to_string()))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(EndpointProblem::Userinfo);
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(EndpointProblem::QueryOrFragment);
    }
    let host = u.host().ok_or(EndpointProblem::NoHost)?;
    match u.scheme() {
        "https" => Ok(u),
        "http" => {
            let loopback = match &host {
                url::Host::Ipv4(a) => a.is_loopback(),
                url::Host::Ipv6(a) => a.is_loopback(),
                url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
            };
            if loopback {
                Ok(u)
            } else {
                Err(EndpointProblem::PlainHttp(host.to_string()))
            }
        }
        other => Err(EndpointProblem::Scheme(other.to_string())),
    }
}

/// Refuses any request that is not addressed to the checked endpoint (scheme,
/// host and port), so the URL checked is the URL used.
#[derive(Debug)]
struct EndpointGuard {
    allowed: url::Url,
}

impl EndpointGuard {
    fn admits(&self, uri: &str) -> Result<(), String> {
        let u = url::Url::parse(uri).map_err(|e| format!("request URL {uri:?}: {e}"))?;
        if u.scheme() == self.allowed.scheme()
            && u.host() == self.allowed.host()
            && u.port_or_known_default() == self.allowed.port_or_known_default()
            && u.username().is_empty()
            && u.password().is_none()
        {
            Ok(())
        } else {
            Err(format!(
                "refusing to send a request to {uri}: the checked KMS endpoint is {}",
                self.allowed
            ))
        }
    }
}

impl Intercept for EndpointGuard {
    fn name(&self) -> &'static str {
        "byok-endpoint-guard"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.admits(context.request().uri()).map_err(BoxError::from)
    }
}

/// The endpoint the SDK would use with `conf` (and `flag`, `--endpoint-url`),
/// and where it came from: the same lookups `aws_sdk_kms::Config::from(&SdkConfig)`
/// makes, asked of the SDK's own loaded configuration.
pub async fn resolve_endpoint(
    conf: &aws_config::SdkConfig,
    region: &str,
    flag: Option<&str>,
) -> Result<(String, EndpointSource), BastionError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(u) = flag {
        return Ok((u.to_string(), EndpointSource::Flag));
    }
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id("KMS")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .map_err(|_| BastionError::Internal("the SDK refused the KMS service config key"))?;
    // The SDK's lookup falls back from the service-specific settings to the
    // shared ones; which one answered is told by comparing values.
    if let Some(u) = conf.service_config().and_then(|c| c.load_config(key)) {
        let source = if env("AWS_ENDPOINT_URL_KMS").as_deref() == Some(u.as_str()) {
            EndpointSource::EnvKms
        } else if env("AWS_ENDPOINT_URL").as_deref() == Some(u.as_str()) {
            EndpointSource::EnvShared
        } else if conf.endpoint_url() == Some(u.as_str()) {
            EndpointSource::ProfileShared
        } else {
            EndpointSource::ProfileServices
        };
        return Ok((u, source));
    }
    if let Some(u) = conf.endpoint_url() {
        let source = if env("AWS_ENDPOINT_URL").as_deref() == Some(u) {
            EndpointSource::EnvShared
        } else {
            EndpointSource::ProfileShared
        };
        return Ok((u.to_string(), source));
    }
    let params = aws_sdk_kms::config::endpoint::Params::builder()
        .region(region)
        .use_fips(conf.use_fips().unwrap_or(false))
        .use_dual_stack(conf.use_dual_stack().unwrap_or(false))
        .build()
        .map_err(|_| BastionError::Internal("the SDK refused the KMS endpoint parameters"))?;
    let resolved = aws_sdk_kms::config::endpoint::DefaultResolver::new()
        .resolve_endpoint(&params)
        .await
        .map_err(|source| BastionError::NoEndpoint {
            region: region.to_string(),
            source,
        })?;
    Ok((resolved.url().to_string(), EndpointSource::Default))
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
    /// instance role), with optional Region, profile and endpoint overrides;
    /// refuse the endpoint before any request unless it passes [`check_endpoint`].
    pub async fn connect(
        region: Option<&str>,
        profile: Option<&str>,
        endpoint_url: Option<&str>,
    ) -> Result<Self, BastionError> {
        Self::connect_with_credentials(region, profile, endpoint_url, None).await
    }

    /// [`Bastion::connect`] with these credentials instead of the standard
    /// chain's (for example a role assumed in another account).
    pub async fn connect_with_credentials(
        region: Option<&str>,
        profile: Option<&str>,
        endpoint_url: Option<&str>,
        credentials: Option<aws_sdk_kms::config::Credentials>,
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
        if let Some(c) = credentials {
            loader = loader.credentials_provider(c);
        }
        let conf = loader.load().await;
        let region = conf
            .region()
            .map(|r| r.to_string())
            .ok_or(BastionError::NoRegion)?;
        let (raw, source) = resolve_endpoint(&conf, &region, endpoint_url).await?;
        let url = check_endpoint(&raw).map_err(|problem| BastionError::Endpoint {
            url: raw.clone(),
            origin: source,
            problem,
        })?;
        let kms_conf = aws_sdk_kms::config::Builder::from(&conf)
            .endpoint_url(url.as_str())
            .interceptor(EndpointGuard {
                allowed: url.clone(),
            })
            .build();
        Ok(Bastion {
            kms: aws_sdk_kms::Client::from_conf(kms_conf),
            region,
            endpoint: Endpoint {
                url: url.to_string(),
                source,
            },
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
            .ok_or_else(|| BastionError::IncompleteAnswer {
                operation: "DescribeKey",
                missing: "the key's metadata",
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
            "https://kms-fips.us-east-1.amazonaws.com/",
            "http://127.0.0.1:4566",
            "http://localhost:1",
            "http://LOCALHOST:1/",
            "http://[::1]:80/",
            "http://127.9.9.9",
        ] {
            assert!(check_endpoint(ok).is_ok(), "{ok}");
        }
        for (bad, problem) in [
            (
                "http://kms.eu-west-1.amazonaws.com",
                EndpointProblem::PlainHttp("kms.eu-west-1.amazonaws.com".into()),
            ),
            (
                "http://10.0.0.1:4566",
                EndpointProblem::PlainHttp("10.0.0.1".into()),
            ),
            (
                "http://localhost.evil.example",
                EndpointProblem::PlainHttp("localhost.evil.example".into()),
            ),
            (
                "http://127.0.0.1.evil.example/",
                EndpointProblem::PlainHttp("127.0.0.1.evil.example".into()),
            ),
            (
                "http://localhost:1@evil.example/",
                EndpointProblem::Userinfo,
            ),
            ("https://user@kms.example.com", EndpointProblem::Userinfo),
            (
                "http://127.0.0.1:4566/?x=1",
                EndpointProblem::QueryOrFragment,
            ),
            ("ftp://x", EndpointProblem::Scheme("ftp".into())),
            (
                "http://128.0.0.1",
                EndpointProblem::PlainHttp("128.0.0.1".into()),
            ),
        ] {
            assert_eq!(check_endpoint(bad).err(), Some(problem), "{bad}");
        }
        assert!(matches!(
            check_endpoint("127.0.0.1:4566"),
            Err(EndpointProblem::Scheme(_) | EndpointProblem::NotAUrl(_))
        ));
        assert_eq!(
            account_of("arn:aws:kms:us-east-1:111122223333:key/abc"),
            Some("111122223333")
        );
    }

    #[test]
    fn the_guard_admits_only_the_checked_endpoint() {
        let g = EndpointGuard {
            allowed: check_endpoint("http://127.0.0.1:4566").unwrap(),
        };
        assert!(g.admits("http://127.0.0.1:4566/").is_ok());
        assert!(g.admits("http://127.0.0.1:4567/").is_err());
        assert!(g.admits("https://127.0.0.1:4566/").is_err());
        assert!(g.admits("http://localhost:4566/").is_err());
        assert!(g.admits("http://x@127.0.0.1:4566/").is_err());
        let g = EndpointGuard {
            allowed: check_endpoint("https://kms.eu-west-1.amazonaws.com").unwrap(),
        };
        assert!(g.admits("https://kms.eu-west-1.amazonaws.com/").is_ok());
        assert!(g.admits("https://kms.eu-west-1.amazonaws.com:443/").is_ok());
        assert!(g
            .admits("https://kms.eu-west-1.amazonaws.com.evil.example/")
            .is_err());
    }
}
