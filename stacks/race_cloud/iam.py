"""Least-privilege IAM: role and policy helpers, and the policy documents as pure functions.

Every statement names the exact actions and resources it needs; where an API has no
resource-level permissions (cloudwatch:PutMetricData) a condition scopes it instead.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from truckctl.cloud.policy import OPS_CLIENT_SUFFIX

from .component import Component

Statement = dict[str, Any]

# What the SSM agent needs for Session Manager (AWS's "custom instance profile" list): the channel
# actions have no resource types, so they take "*"; none of them reads data.
SESSION_CHANNEL_ACTIONS = ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
                           "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"]


def allow(actions: list[str], resources: list[str], condition: dict[str, Any] | None = None) -> Statement:
    statement: Statement = {"Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def document(statements: list[Statement]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def trust_policy(service: str, account_id: str) -> str:
    """Only the given service, acting for this account (confused-deputy guard), may assume the role."""
    return document([{
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
    }])


def ec2_trust_policy() -> str:
    # EC2 does not send aws:SourceAccount when an instance profile assumes its role.
    return document([{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}])


def service_role(parent: Component, name: str, role_name: str, assume_role_policy: pulumi.Input[str],
                 policy: pulumi.Input[str], description: str) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
    role = aws.iam.Role(name, name=role_name, description=description, assume_role_policy=assume_role_policy,
                        max_session_duration=3600, opts=parent.opts())
    role_policy = aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=policy, opts=parent.opts())
    return role, role_policy


def iot_ingest_policy(stream_arn: str, key_arn: str, metric_namespace_prefix: str) -> str:
    """IoT topic rules: put records on the one stream, count messages in our own namespaces."""
    return document([
        allow(["kinesis:PutRecord"], [stream_arn]),
        allow(["kms:GenerateDataKey"], [key_arn]),
        allow(["cloudwatch:PutMetricData"], ["*"],
              {"StringLike": {"cloudwatch:namespace": f"{metric_namespace_prefix}/*"}}),
    ])


def firehose_policy(stream_arn: str, bucket_arn: str, key_arn: str, region: str, prefixes: list[str]) -> str:
    """Firehose: read the one stream, write only its prefixes of the lake, use the key only via those services."""
    return document([
        allow(["kinesis:DescribeStream", "kinesis:GetShardIterator", "kinesis:GetRecords", "kinesis:ListShards"],
              [stream_arn]),
        allow(["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"], [bucket_arn]),
        allow(["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
              [f"{bucket_arn}/{prefix}*" for prefix in prefixes]),
        allow(["kms:Decrypt"], [key_arn], {"StringEquals": {"kms:ViaService": f"kinesis.{region}.amazonaws.com"}}),
        allow(["kms:GenerateDataKey", "kms:Decrypt"], [key_arn],
              {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}),
    ])


def vpn_gateway_policy(private_key_parameter_arn: str, peers_path_arn: str, key_arn: str, region: str,
                       vpn_path_arn: str) -> str:
    """The VPN gateway reads its own private key and the peers list, nothing else.

    The key decrypts only SSM parameters under the race's own VPN path (SSM passes the
    parameter's ARN as encryption context), so this role cannot decrypt anything else of the race.
    """
    return document([
        allow(["ssm:GetParameter"], [private_key_parameter_arn]),
        allow(["ssm:GetParametersByPath"], [peers_path_arn]),
        allow(["kms:Decrypt"], [key_arn], {
            "StringEquals": {"kms:ViaService": f"ssm.{region}.amazonaws.com"},
            "StringLike": {"kms:EncryptionContext:PARAMETER_ARN": f"{vpn_path_arn}/*"}}),
    ])


def session_manager_policy(instance_arn: str) -> str:
    """SSM Session Manager on one instance (administration without SSH), instead of the AWS-managed
    AmazonSSMManagedInstanceCore, which also reads every SSM parameter of the account."""
    return document([
        allow(["ssm:UpdateInstanceInformation"], [instance_arn]),
        allow(SESSION_CHANNEL_ACTIONS, ["*"]),
    ])


def iot_thing_policy(region: str, account_id: str, client_id: str, prefix: str) -> str:
    """What a truck's bridge does, nothing more: connect as its own client id (only while the
    certificate is attached to its own thing) and publish under its own topic prefix. The bridge only
    sends (mosquitto `topic ... out`): no Subscribe, no Receive. The truck's gateway agent
    (truck_ops_agent) connects with the same certificate as `<client id>-ops`, so that it never knocks
    the bridge's session off (IoT allows one connection per client id); it publishes under the same prefix."""
    base = f"arn:aws:iot:{region}:{account_id}"
    return document([
        allow(["iot:Connect"], [f"{base}:client/{client_id}", f"{base}:client/{client_id}{OPS_CLIENT_SUFFIX}"],
              {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}),
        allow(["iot:Publish"], [f"{base}:topic/{prefix}/*"]),
    ])
