//! DynamoDB tables: `SSEDescription` of DescribeTable. No description (or
//! SSE not enabled) means the AWS-owned key, DynamoDB's default.

use aws_sdk_dynamodb::types::{SseStatus, SseType};

use super::{
    listing_failed, sdk_error, Encryption, Pending, Resource, ResourceType, ServiceClients,
};

/// Every table of the Region, to be described.
pub async fn list(c: &ServiceClients) -> Vec<Pending> {
    let mut out = Vec::new();
    let mut pages = c.dynamodb.list_tables().into_paginator().send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => out.extend(p.table_names().iter().map(|name| Pending::DynamoDbTable {
                name: name.clone(),
                region: c.region.clone(),
            })),
            Err(e) => {
                out.push(Pending::Done(listing_failed(
                    ResourceType::DynamoDbTable,
                    &c.region,
                    "tables",
                    sdk_error("DynamoDB", "ListTables", &e),
                )));
                break;
            }
        }
    }
    out
}

/// What a table's `SSEDescription` means (its `SSEType`, `Status` and
/// `KMSMasterKeyArn`, as DescribeTable or an AWS Config item states them).
/// No description, or SSE not enabled, is the AWS-owned key.
pub fn table_encryption(
    sse_type: Option<&str>,
    status: Option<&str>,
    kms_master_key_arn: Option<&str>,
) -> Encryption {
    let kms = sse_type.is_some_and(|t| t.eq_ignore_ascii_case("KMS"));
    let on = status.is_some_and(|s| {
        ["ENABLED", "ENABLING", "UPDATING"]
            .iter()
            .any(|x| s.eq_ignore_ascii_case(x))
    });
    match (kms && on, kms_master_key_arn.filter(|k| !k.is_empty())) {
        (true, Some(k)) => Encryption::Kms {
            key_ref: k.to_string(),
        },
        (true, None) => Encryption::AwsManagedDefault {
            alias: "alias/aws/dynamodb".into(),
        },
        (false, _) => Encryption::ServiceOwned {
            what: "the AWS-owned key (DynamoDB's default)".into(),
        },
    }
}

/// How one table is encrypted.
pub async fn describe(c: &ServiceClients, name: &str) -> Resource {
    let (arn, encryption) = match c.dynamodb.describe_table().table_name(name).send().await {
        Err(e) => (
            None,
            Encryption::Unreadable {
                why: sdk_error("DynamoDB", "DescribeTable", &e),
            },
        ),
        Ok(r) => {
            let t = r.table();
            let sse = t.and_then(|t| t.sse_description());
            let enc = table_encryption(
                sse.and_then(|s| s.sse_type()).map(SseType::as_str),
                sse.and_then(|s| s.status()).map(SseStatus::as_str),
                sse.and_then(|s| s.kms_master_key_arn()),
            );
            (t.and_then(|t| t.table_arn()).map(String::from), enc)
        }
    };
    Resource {
        kind: ResourceType::DynamoDbTable,
        region: c.region.clone(),
        name: name.to_string(),
        arn,
        config_id: None,
        encryption,
    }
}
