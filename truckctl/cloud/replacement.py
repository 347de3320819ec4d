"""Which input changes make the provider replace a resource, and which resources hold data or identity.

Offline there is no provider to ask (Pulumi's mocks do no diff), so the move between two stages is
decided from this table: a resource with the same URN in both plans is *replaced* when one of the
inputs listed for its type differs, *updated* in place when only other inputs differ. The entries
are the provider's replace-on (ForceNew) arguments of pulumi-aws 7 for the types the race stack
uses; a type missing from the table is replaced when its `name` changes (the physical name, the
one input every AWS resource is replaced on). A dotted key reaches into a nested input.

Pure (no pulumi import): the offline plan, the policy rules and the CrossGuard pack share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from truckctl.cloud.resources import PlannedResource

_S3_CONTROL = ("bucket", "expected_bucket_owner")

REPLACE_ON: dict[str, tuple[str, ...]] = {
    "aws:s3/bucket:Bucket": ("bucket", "bucket_prefix", "object_lock_enabled"),
    "aws:s3/bucketV2:BucketV2": ("bucket", "bucket_prefix", "object_lock_enabled"),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": ("bucket",),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": ("bucket",),
    "aws:s3/bucketVersioning:BucketVersioning": _S3_CONTROL,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": _S3_CONTROL,
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": _S3_CONTROL,
    "aws:s3/bucketPolicy:BucketPolicy": ("bucket",),
    "aws:kinesis/stream:Stream": ("name",),
    "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": ("name", "destination",
                                                                  "kinesis_source_configuration"),
    "aws:kms/key:Key": ("customer_master_key_spec", "key_usage", "multi_region", "custom_key_store_id",
                        "xks_key_id"),
    "aws:kms/alias:Alias": ("name", "name_prefix"),
    "aws:iot/thing:Thing": ("name",),
    "aws:iot/certificate:Certificate": ("csr", "ca_pem", "certificate_pem"),
    "aws:iot/policy:Policy": ("name",),
    "aws:iot/policyAttachment:PolicyAttachment": ("policy", "target"),
    "aws:iot/thingPrincipalAttachment:ThingPrincipalAttachment": ("thing", "principal"),
    "aws:iot/topicRule:TopicRule": ("name",),
    "aws:ec2/vpc:Vpc": ("cidr_block", "ipv4_ipam_pool_id"),
    "aws:ec2/subnet:Subnet": ("vpc_id", "cidr_block", "availability_zone", "availability_zone_id"),
    "aws:ec2/securityGroup:SecurityGroup": ("name", "name_prefix", "description", "vpc_id"),
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": ("vpc_id",),
    "aws:ec2/internetGateway:InternetGateway": (),
    "aws:ec2/routeTable:RouteTable": ("vpc_id",),
    "aws:ec2/route:Route": ("route_table_id", "destination_cidr_block", "destination_ipv6_cidr_block",
                            "destination_prefix_list_id"),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": ("subnet_id", "gateway_id"),
    "aws:ec2/vpcEndpoint:VpcEndpoint": ("vpc_id", "service_name", "vpc_endpoint_type"),
    "aws:ec2/instance:Instance": ("ami", "availability_zone", "subnet_id", "private_ip", "key_name", "tenancy",
                                  "root_block_device.encrypted", "root_block_device.kms_key_id"),
    "aws:ec2/eip:Eip": ("domain", "address", "customer_owned_ipv4_pool", "network_border_group",
                        "public_ipv4_pool"),
    "aws:iam/role:Role": ("name", "name_prefix", "path"),
    "aws:iam/rolePolicy:RolePolicy": ("name", "name_prefix", "role"),
    "aws:iam/instanceProfile:InstanceProfile": ("name", "name_prefix", "path"),
    "aws:sns/topic:Topic": ("name", "name_prefix", "fifo_topic"),
    "aws:sns/topicPolicy:TopicPolicy": ("arn",),
    "aws:sns/topicSubscription:TopicSubscription": ("topic", "protocol", "endpoint"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("name",),
    "aws:glue/catalogDatabase:CatalogDatabase": ("name", "catalog_id"),
    "aws:glue/catalogTable:CatalogTable": ("name", "database_name", "catalog_id"),
    "aws:athena/workgroup:Workgroup": ("name",),
    "aws:ssm/parameter:Parameter": ("name",),
}
DEFAULT_REPLACE_ON = ("name",)

# An instance with user_data_replace_on_change is replaced when its user data changes too.
CONDITIONAL_REPLACE_ON: dict[str, tuple[tuple[str, str], ...]] = {
    "aws:ec2/instance:Instance": (("user_data_replace_on_change", "user_data"),),
}

# What a resource of these types holds: replacing or deleting one in a stage move loses it.
HOLDS: dict[str, str] = {
    "aws:s3/bucket:Bucket": "race data (the data lake)",
    "aws:s3/bucketV2:BucketV2": "race data (the data lake)",
    "aws:kinesis/stream:Stream": "ingested records not yet delivered (the ingest stream)",
    "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": "records buffered for the lake (the delivery)",
    "aws:kms/key:Key": "the key the race's data is encrypted with",
    "aws:iot/thing:Thing": "a truck's identity at the ingest",
    "aws:iot/certificate:Certificate": "a truck's certificate (its bridge's credentials)",
    "aws:ec2/instance:Instance": "the VPN hub (the trucks' management tunnels)",
    "aws:ec2/eip:Eip": "the VPN hub's address (every truck's peer endpoint)",
    "aws:ssm/parameter:Parameter": "a secret of the race (the VPN hub's private key)",
}


def _lookup(inputs: Mapping[str, Any], key: str) -> Any:
    value: Any = inputs
    for part in key.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def replace_keys(resource: PlannedResource) -> tuple[str, ...]:
    """The inputs of this resource whose change replaces it (its type's entry, plus conditional ones)."""
    keys = REPLACE_ON.get(resource.type, DEFAULT_REPLACE_ON)
    for switch, key in CONDITIONAL_REPLACE_ON.get(resource.type, ()):
        if resource.inputs.get(switch) is True:
            keys = (*keys, key)
    return keys


def changed_keys(before: PlannedResource, after: PlannedResource) -> tuple[str, ...]:
    """Top-level inputs that differ, plus any dotted replace-on key that differs."""
    keys = sorted(k for k in set(before.inputs) | set(after.inputs) if before.inputs.get(k) != after.inputs.get(k))
    dotted = [k for k in replace_keys(after) if "." in k and _lookup(before.inputs, k) != _lookup(after.inputs, k)]
    return tuple(keys + dotted)


def replacing_keys(before: PlannedResource, after: PlannedResource) -> tuple[str, ...]:
    """The changed inputs that make the provider replace the resource (empty: updated in place)."""
    changed = set(changed_keys(before, after))
    return tuple(k for k in replace_keys(after) if k in changed)


def holds(resource_type: str) -> str:
    """What a resource of this type holds ("" when nothing a move may not lose)."""
    return HOLDS.get(resource_type, "")
