//! A KMS client that answers every request from a fixed table of HTTP
//! responses, one per KMS operation, and never touches the network: how
//! `fuzzing::kms_answers` feeds arbitrary bytes to the SDK's deserializers
//! and to the decisions this bastion takes on what KMS says.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_kms::config::http::{HttpRequest, HttpResponse};
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

use super::client::{Bastion, Endpoint, EndpointSource};

/// One canned answer: an HTTP status and a body.
#[derive(Clone, Debug)]
pub struct Answer {
    /// HTTP status (200 for success; 400 for a KMS error body).
    pub status: u16,
    /// The response body, as KMS would send it (JSON 1.1).
    pub body: Vec<u8>,
}

/// Answers by operation name (`DescribeKey`, `GenerateMac`, …); an operation
/// without one gets KMS's `NotFoundException`.
#[derive(Clone, Debug, Default)]
pub struct Answers(Arc<BTreeMap<String, Answer>>);

impl Answers {
    /// The table.
    pub fn new(table: BTreeMap<String, Answer>) -> Self {
        Self(Arc::new(table))
    }

    fn answer(&self, request: &HttpRequest) -> Answer {
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or_default();
        self.0.get(operation).cloned().unwrap_or_else(|| Answer {
            status: 400,
            body: br#"{"__type":"NotFoundException","message":"no canned answer"}"#.to_vec(),
        })
    }
}

impl HttpConnector for Answers {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let a = self.answer(&request);
        let status = StatusCode::try_from(a.status)
            .unwrap_or_else(|_| StatusCode::try_from(500).expect("500 is a valid HTTP status"));
        let mut response = HttpResponse::new(status, SdkBody::from(a.body));
        response
            .headers_mut()
            .insert("content-type", "application/x-amz-json-1.1");
        HttpConnectorFuture::ready(Ok(response))
    }
}

impl HttpClient for Answers {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

/// A [`Bastion`] whose KMS client gets every answer from `answers`: fixed
/// credentials and Region, no retries, no network.
pub fn bastion(answers: Answers) -> Bastion {
    let url = "https://kms.us-east-1.amazonaws.com".to_string();
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDFUZZ", "fuzz", None, None, "fuzz"))
        .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
        .http_client(answers)
        .build();
    Bastion {
        kms: aws_sdk_kms::Client::from_conf(config),
        region: "us-east-1".into(),
        endpoint: Endpoint {
            url,
            source: EndpointSource::Default,
        },
    }
}
