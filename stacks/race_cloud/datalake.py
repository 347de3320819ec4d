"""The data lake: one S3 bucket for the whole race (partitioned by stage and day), versioned,
KMS-encrypted, private, with lifecycle rules.

Everything here is protected and retained on delete unless config `deleteData` is set, so a
teardown never loses race data by accident. The bucket's controls are kept too: deleting the
versioning or public-access-block resources would weaken the bucket that stays behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .component import Component
from .config import StackConfig
from .kms import Kms

TELEMETRY_PREFIX = "telemetry/"
ERRORS_PREFIX = "errors/"
ATHENA_RESULTS_PREFIX = "athena-results/"
DATA_TAG = {"truckctl-data": "race-telemetry"}  # marks buckets the retention policy rule applies to


@dataclass(frozen=True)
class DataLake:
    bucket: aws.s3.Bucket


def bucket_name(config: StackConfig, account_id: str) -> str:
    # Bucket names are global: the account id keeps them unique without a random suffix.
    return f"{config.name('datalake')}-{account_id}"[:63]


def tls_only_policy(bucket_arn: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }]}, sort_keys=True)


def lifecycle_rules() -> list[aws.s3.BucketLifecycleConfigurationRuleArgsDict]:
    return [
        {"id": "telemetry-tiering", "status": "Enabled", "filter": {"prefix": TELEMETRY_PREFIX},
         "transitions": [{"days": 30, "storage_class": "STANDARD_IA"},
                         {"days": 180, "storage_class": "GLACIER_IR"}]},
        {"id": "noncurrent-versions", "status": "Enabled", "filter": {},
         "noncurrent_version_expiration": {"noncurrent_days": 90},
         "abort_incomplete_multipart_upload": {"days_after_initiation": 7}},
        {"id": "delivery-errors", "status": "Enabled", "filter": {"prefix": ERRORS_PREFIX},
         "expiration": {"days": 90}},
        {"id": "athena-results", "status": "Enabled", "filter": {"prefix": ATHENA_RESULTS_PREFIX},
         "expiration": {"days": 30}},
    ]


def build(config: StackConfig, provider: pulumi.ProviderResource, kms: Kms,
          account_id: pulumi.Output[str]) -> DataLake:
    component = Component("DataLake", "datalake", provider)
    keep = not config.delete_data

    def opts(*depends_on: pulumi.Resource) -> pulumi.ResourceOptions:
        return component.opts(protect=keep, retain_on_delete=keep, depends_on=list(depends_on))

    bucket = aws.s3.Bucket(
        "datalake",
        bucket=account_id.apply(lambda account: bucket_name(config, account)),
        force_destroy=config.delete_data,  # only an explicit --delete-data may empty a versioned bucket
        tags={"Name": config.name("datalake"), **DATA_TAG},
        opts=opts(),
    )
    ownership = aws.s3.BucketOwnershipControls(
        "datalake-ownership", bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=opts())
    public_block = aws.s3.BucketPublicAccessBlock(
        "datalake-public-access-block", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
        ignore_public_acls=True, restrict_public_buckets=True, opts=opts())
    aws.s3.BucketVersioning(
        "datalake-versioning", bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=opts())
    aws.s3.BucketServerSideEncryptionConfiguration(
        "datalake-encryption", bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms",
                                                             "kms_master_key_id": kms.key.arn},
                "bucket_key_enabled": True}],
        opts=opts())
    aws.s3.BucketLifecycleConfiguration("datalake-lifecycle", bucket=bucket.id, rules=lifecycle_rules(),
                                        opts=opts())
    # Applied after the public access block so S3 judges it against a locked-down bucket.
    aws.s3.BucketPolicy("datalake-tls-only", bucket=bucket.id, policy=bucket.arn.apply(tls_only_policy),
                        opts=opts(public_block, ownership))
    component.register_outputs({"bucket": bucket.bucket})
    return DataLake(bucket)
