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
            let enc = match sse {
                Some(s)
                    if s.sse_type() == Some(&SseType::Kms)
                        && matches!(
                            s.status(),
                            Some(SseStatus::Enabled | SseStatus::Enabling | SseStatus::Updating)
                        ) =>
                {
                    match s.kms_master_key_arn() {
                        Some(k) => Encryption::Kms {
                            key_ref: k.to_string(),
                        },
                        None => Encryption::AwsManagedDefault {
                            alias: "alias/aws/dynamodb".into(),
                        },
                    }
                }
                _ => Encryption::ServiceOwned {
                    what: "the AWS-owned key (DynamoDB's default)".into(),
                },
            };
            (t.and_then(|t| t.table_arn()).map(String::from), enc)
        }
    };
    Resource {
        kind: ResourceType::DynamoDbTable,
        region: c.region.clone(),
        name: name.to_string(),
        arn,
        encryption,
    }
}
