//! S3 buckets: the default encryption of each bucket (GetBucketEncryption).
//!
//! ListBuckets is global: each bucket's Region comes from the listing
//! (`BucketRegion`) or GetBucketLocation, and only buckets in the audited
//! Regions are judged, with that Region's client.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_s3::error::ProvideErrorMetadata;

use super::{
    listing_failed, sdk_error, Encryption, Pending, Resource, ResourceType, ServiceClients,
};

/// The Region a GetBucketLocation constraint means (empty: us-east-1, `EU`: eu-west-1).
pub fn region_of_location(constraint: Option<&str>) -> String {
    match constraint.unwrap_or("") {
        "" => "us-east-1".into(),
        "EU" => "eu-west-1".into(),
        r => r.to_string(),
    }
}

/// Every bucket in the audited Regions (`clients` by Region), to be described.
/// Buckets whose Region ListBuckets does not report (older APIs, emulators)
/// are located with GetBucketLocation, `jobs` at a time.
pub async fn list(
    clients: &Arc<BTreeMap<String, Arc<ServiceClients>>>,
    jobs: usize,
    stop: &crate::bastion::batch::StopFlag,
) -> Vec<Pending> {
    let Some(any) = clients.values().next().cloned() else {
        return Vec::new();
    };
    let mut buckets = Vec::new();
    let mut pages = any.s3.list_buckets().into_paginator().send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => buckets.extend(p.buckets().iter().filter_map(|b| {
                Some((b.name()?.to_string(), b.bucket_region().map(String::from)))
            })),
            Err(e) => {
                return vec![Pending::Done(listing_failed(
                    ResourceType::S3Bucket,
                    &any.region,
                    "buckets",
                    sdk_error("S3", "ListBuckets", &e),
                ))]
            }
        }
    }
    let unreadable = |name: &str, why: String| {
        Box::new(Resource {
            kind: ResourceType::S3Bucket,
            region: any.region.clone(),
            name: name.to_string(),
            arn: None,
            config_id: None,
            encryption: Encryption::Unreadable { why },
        })
    };
    // A bucket that could not be located is boxed: it is the rare case.
    let located: Vec<Result<(String, String), Box<Resource>>> = crate::bastion::batch::map_bounded(
        buckets,
        jobs,
        |(name, region)| {
            let any = any.clone();
            async move {
                match region {
                    Some(r) => Ok((name, r)),
                    None => match any.s3.get_bucket_location().bucket(&name).send().await {
                        Ok(l) => Ok((
                            name,
                            region_of_location(l.location_constraint().map(|c| c.as_str())),
                        )),
                        Err(e) => Err(Box::new(Resource {
                            kind: ResourceType::S3Bucket,
                            region: any.region.clone(),
                            name,
                            arn: None,
                            config_id: None,
                            encryption: Encryption::Unreadable {
                                why: sdk_error("S3", "GetBucketLocation", &e),
                            },
                        })),
                    },
                }
            }
        },
        |_, _| {},
        |(name, _)| Err(unreadable(name, "internal error: the task panicked".into())),
        stop,
        |(name, _)| {
            Err(unreadable(
                name,
                "not located: interrupted before its turn; run the audit again".into(),
            ))
        },
    )
    .await;
    let mut out = Vec::new();
    for l in located {
        match l {
            Ok((name, region)) if clients.contains_key(&region) => {
                out.push(Pending::S3Bucket { name, region })
            }
            Ok(_) => {}
            Err(r) => out.push(Pending::Done(*r)),
        }
    }
    out
}

/// A bucket outside the audited Regions (not expected: `list` filters them).
pub fn outside(name: &str, region: &str) -> Resource {
    Resource {
        kind: ResourceType::S3Bucket,
        region: region.to_string(),
        name: name.to_string(),
        arn: Some(format!("arn:aws:s3:::{name}")),
        config_id: None,
        encryption: Encryption::NotApplicable {
            why: format!("bucket is in {region}, which is not audited"),
        },
    }
}

/// What a bucket's default encryption rule means: its SSE algorithm
/// (`AES256`, `aws:kms`, `aws:kms:dsse`) and KMS key, as GetBucketEncryption
/// or an AWS Config item states them.
pub fn default_encryption(sse_algorithm: &str, kms_master_key_id: Option<&str>) -> Encryption {
    match sse_algorithm {
        "AES256" => Encryption::ServiceOwned {
            what: "SSE-S3 (AES256)".into(),
        },
        "aws:kms" | "aws:kms:dsse" => match kms_master_key_id.filter(|k| !k.is_empty()) {
            Some(k) => Encryption::Kms {
                key_ref: k.to_string(),
            },
            None => Encryption::AwsManagedDefault {
                alias: "alias/aws/s3".into(),
            },
        },
        other => Encryption::Unreadable {
            why: format!("unknown SSE algorithm {other}"),
        },
    }
}

/// How one bucket's default encryption reads.
pub async fn describe(c: &ServiceClients, name: &str) -> Resource {
    let encryption = match c.s3.get_bucket_encryption().bucket(name).send().await {
        Ok(r) => {
            let rule = r
                .server_side_encryption_configuration()
                .and_then(|conf| conf.rules().first())
                .and_then(|rule| rule.apply_server_side_encryption_by_default());
            match rule {
                None => Encryption::None,
                Some(d) => default_encryption(d.sse_algorithm().as_str(), d.kms_master_key_id()),
            }
        }
        Err(e) if e.code() == Some("ServerSideEncryptionConfigurationNotFoundError") => {
            Encryption::None
        }
        Err(e) => Encryption::Unreadable {
            why: sdk_error("S3", "GetBucketEncryption", &e),
        },
    };
    Resource {
        kind: ResourceType::S3Bucket,
        region: c.region.clone(),
        name: name.to_string(),
        arn: Some(format!("arn:aws:s3:::{name}")),
        config_id: None,
        encryption,
    }
}
