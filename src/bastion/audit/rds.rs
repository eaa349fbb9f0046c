//! RDS DB instances and DB clusters: `StorageEncrypted` and `KmsKeyId`.
//! An instance that belongs to a cluster stores its data in the cluster's
//! volume: it is NOT_APPLICABLE, and the cluster is judged.

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

/// Every DB instance and DB cluster of the Region, already described.
pub async fn list(c: &ServiceClients) -> Vec<Pending> {
    let mut out = Vec::new();
    let mut pages = c.rds.describe_db_instances().into_paginator().send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => {
                for d in p.db_instances() {
                    let Some(name) = d.db_instance_identifier() else {
                        continue;
                    };
                    let encryption = match d.db_cluster_identifier() {
                        Some(cluster) => Encryption::NotApplicable {
                            why: format!(
                                "member of DB cluster {cluster}: its storage is the cluster's, judged there"
                            ),
                        },
                        None => encryption(d.storage_encrypted(), d.kms_key_id()),
                    };
                    out.push(Pending::Done(Resource {
                        kind: ResourceType::RdsInstance,
                        region: c.region.clone(),
                        name: name.to_string(),
                        arn: d.db_instance_arn().map(String::from),
                        encryption,
                    }));
                }
            }
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
            Ok(p) => {
                for d in p.db_clusters() {
                    let Some(name) = d.db_cluster_identifier() else {
                        continue;
                    };
                    out.push(Pending::Done(Resource {
                        kind: ResourceType::RdsCluster,
                        region: c.region.clone(),
                        name: name.to_string(),
                        arn: d.db_cluster_arn().map(String::from),
                        encryption: encryption(d.storage_encrypted(), d.kms_key_id()),
                    }));
                }
            }
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
