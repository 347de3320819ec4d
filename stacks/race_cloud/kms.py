"""The race's customer-managed KMS key (rotation on): encrypts the lake, the stream, the topic,
the VPN secret and the gateway's disk."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .component import Component
from .config import StackConfig


@dataclass(frozen=True)
class Kms:
    key: aws.kms.Key
    alias: aws.kms.Alias


def key_policy(account_id: str, region: str) -> str:
    root = f"arn:aws:iam::{account_id}:root"
    return json.dumps({"Version": "2012-10-17", "Statement": [
        # The account administers the key through IAM; no principal is granted use by the key policy alone.
        {"Sid": "AccountAdministersThroughIam", "Effect": "Allow", "Principal": {"AWS": root},
         "Action": "kms:*", "Resource": "*"},
        # CloudWatch alarms publish to the encrypted SNS topic as the CloudWatch service.
        {"Sid": "CloudWatchAlarmsToEncryptedTopic", "Effect": "Allow",
         "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}},
        # Kinesis Firehose and IoT reach the key through their IAM roles (the root statement above).
    ]}, sort_keys=True)


def build(config: StackConfig, provider: pulumi.ProviderResource, account_id: pulumi.Output[str]) -> Kms:
    component = Component("Kms", "kms", provider)
    # The key outlives a teardown with the lake: without it the retained data would be unreadable.
    keep = component.opts(protect=not config.delete_data, retain_on_delete=not config.delete_data)
    key = aws.kms.Key(
        "key",
        description=f"truckctl {config.race_name}: data lake, ingest, alerts, VPN",
        enable_key_rotation=True,
        deletion_window_in_days=30,
        policy=account_id.apply(lambda account: key_policy(account, config.region)),
        opts=keep,
    )
    alias = aws.kms.Alias("key-alias", name=f"alias/{config.name('data')}", target_key_id=key.key_id,
                          opts=component.opts())
    component.register_outputs({"key_arn": key.arn})
    return Kms(key, alias)
