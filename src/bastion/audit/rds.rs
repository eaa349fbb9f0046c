//! RDS DB instances and DB clusters: `StorageEncrypted` and `KmsKeyId`.
//! An instance that belongs to a cluster stores its data in the cluster's
//! volume: it is NOT_APPLICABLE, and the cluster is judged.

use aws_sdk_rds::types::{DbCluster, DbInstance};

use super::{
    listing_failed, sdk_error, Encryption, Pending, Resource, ResourceType, ServiceClients,
};

/// The encryption an RDS resource reports.
pub fn encryption(storage_encrypted: Option<bool>, kms_key_id: Option<&str>) -> Encryption {
    match (storage_encrypted, kms_key_id.filter(|k| !k.is_empty())) {
        (Some(true), Some(k)) => Encryption::Kms {
            key_ref: k.to_string(),
        },
        (Some(true), None) => Encryption::AwsManagedDefault {
            alias: "alias/aws/rds".into(),
        },
        _ => Encryption::None,
    }
}

/// The encryption of a DB instance: a member of a DB cluster is judged on
/// the cluster (NOT_APPLICABLE here), any other by its own storage.
pub fn instance_encryption(
    cluster: Option<&str>,
    storage_encrypted: Option<bool>,
    kms_key_id: Option<&str>,
) -> Encryption {
    match cluster.filter(|c| !c.is_empty()) {
        Some(cluster) => Encryption::NotApplicable {
            why: format!(
                "member of DB cluster {cluster}: its storage is the cluster's, judged there"
            ),
        },
        None => encryption(storage_encrypted, kms_key_id),
    }
}

fn instance(region: &str, d: &DbInstance) -> Option<Resource> {
    Some(Resource {
        kind: ResourceType::RdsInstance,
        region: region.to_string(),
        name: d.db_instance_identifier()?.to_string(),
        arn: d.db_instance_arn().map(String::from),
        config_id: d.dbi_resource_id().map(String::from),
        encryption: instance_encryption(
            d.db_cluster_identifier(),
            d.storage_encrypted(),
            d.kms_key_id(),
        ),
    })
}

fn cluster(region: &str, d: &DbCluster) -> Option<Resource> {
    Some(Resource {
        kind: ResourceType::RdsCluster,
        region: region.to_string(),
        name: d.db_cluster_identifier()?.to_string(),
        arn: d.db_cluster_arn().map(String::from),
        config_id: d.db_cluster_resource_id().map(String::from),
        encryption: encryption(d.storage_encrypted(), d.kms_key_id()),
    })
}

/// Every DB instance and DB cluster of the Region, already described.
pub async fn list(c: &ServiceClients) -> Vec<Pending> {
    let mut out = Vec::new();
    let mut pages = c.rds.describe_db_instances().into_paginator().send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => out.extend(
                p.db_instances()
                    .iter()
                    .filter_map(|d| instance(&c.region, d))
                    .map(Pending::Done),
            ),
            Err(e) => {
                out.push(Pending::Done(listing_failed(
                    ResourceType::RdsInstance,
                    &c.region,
                    "DB instances",
                    sdk_error("RDS", "DescribeDBInstances", &e),
                )));
                break;
            }
        }
    }
    let mut pages = c.rds.describe_db_clusters().into_paginator().send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => out.extend(
                p.db_clusters()
                    .iter()
                    .filter_map(|d| cluster(&c.region, d))
                    .map(Pending::Done),
            ),
            Err(e) => {
                out.push(Pending::Done(listing_failed(
                    ResourceType::RdsCluster,
                    &c.region,
                    "DB clusters",
                    sdk_error("RDS", "DescribeDBClusters", &e),
                )));
                break;
            }
        }
    }
    out
}

/// One DB instance (or cluster, `kind`), described by its identifier, as
/// `list` would report it; UNKNOWN (`Unreadable`) when RDS does not answer.
pub async fn describe(c: &ServiceClients, kind: ResourceType, identifier: &str) -> Resource {
    let unreadable = |why: String| Resource {
        kind,
        region: c.region.clone(),
        name: identifier.to_string(),
        arn: None,
        config_id: None,
        encryption: Encryption::Unreadable { why },
    };
    let missing = || unreadable(format!("RDS does not report {identifier}"));
    if kind == ResourceType::RdsCluster {
        match c
            .rds
            .describe_db_clusters()
            .db_cluster_identifier(identifier)
            .send()
            .await
        {
            Ok(r) => r
                .db_clusters()
                .first()
                .and_then(|d| cluster(&c.region, d))
                .unwrap_or_else(missing),
            Err(e) => unreadable(sdk_error("RDS", "DescribeDBClusters", &e)),
        }
    } else {
        match c
            .rds
            .describe_db_instances()
            .db_instance_identifier(identifier)
            .send()
            .await
        {
            Ok(r) => r
                .db_instances()
                .first()
                .and_then(|d| instance(&c.region, d))
                .unwrap_or_else(missing),
            Err(e) => unreadable(sdk_error("RDS", "DescribeDBInstances", &e)),
        }
    }
}
