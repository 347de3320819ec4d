"""Each policy rule: a passing and a failing case over small hand-made resource sets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from truckctl.cloud import policy
from truckctl.cloud.resources import PlannedResource, normalise

KEY = "arn:aws:kms:eu-south-1:123456789012:key/abc"


def res(type_: str, name: str, depends_on: list[str] | None = None, protect: bool = False,
        retain: bool | None = False, **inputs: Any) -> PlannedResource:
    return PlannedResource(type_, name, inputs, depends_on or [], "test", "", protect, retain)


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def bucket(**inputs: Any) -> PlannedResource:
    return res(policy.BUCKET, "lake", bucket="lake-bucket", **inputs)


def sse(key: str = KEY, algorithm: str = "aws:kms") -> PlannedResource:
    return res(policy.SSE_CONFIG[0], "lake-sse", bucket="lake-bucket",
               rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": algorithm,
                                                                    "kms_master_key_id": key}}])


def block(on: bool = True) -> PlannedResource:
    return res(policy.PUBLIC_ACCESS_BLOCK, "lake-pab", bucket="lake-bucket", block_public_acls=True,
               block_public_policy=True, ignore_public_acls=on, restrict_public_buckets=True)


def rules_of(violations: list[policy.Violation]) -> set[tuple[str, str]]:
    return {(v.rule, v.resource) for v in violations}


# --- encryption at rest ------------------------------------------------------------------------------


def test_s3_encryption() -> None:
    assert policy.s3_encryption([bucket(), sse()]) == []
    assert rules_of(policy.s3_encryption([bucket()])) == {("s3-encryption", "lake")}
    assert rules_of(policy.s3_encryption([bucket(), sse(algorithm="AES256")])) == {("s3-encryption", "lake")}
    assert rules_of(policy.s3_encryption([bucket(), sse(key="alias/aws/s3")])) == {("s3-encryption", "lake")}


def test_s3_encryption_links_by_dependency_when_the_bucket_name_is_unknown() -> None:
    unknown = res(policy.SSE_CONFIG[0], "sse", depends_on=["lake"], bucket=None,
                  rules=sse().inputs["rules"])
    assert policy.s3_encryption([bucket(), unknown]) == []


def test_kinesis_encryption() -> None:
    good = res(policy.STREAM, "s", encryption_type="KMS", kms_key_id=KEY)
    assert policy.kinesis_encryption([good]) == []
    bad = [res(policy.STREAM, "plain", encryption_type="NONE"),
           res(policy.STREAM, "aws-key", encryption_type="KMS", kms_key_id="alias/aws/kinesis")]
    assert rules_of(policy.kinesis_encryption(bad)) == {("kinesis-encryption", "plain"),
                                                         ("kinesis-encryption", "aws-key")}


def test_sns_encryption() -> None:
    assert policy.sns_encryption([res(policy.TOPIC, "t", kms_master_key_id=KEY)]) == []
    assert rules_of(policy.sns_encryption([res(policy.TOPIC, "t")])) == {("sns-encryption", "t")}


def test_firehose_encryption() -> None:
    from_stream = res(policy.FIREHOSE, "f", kinesis_source_configuration={"kinesis_stream_arn": "x"},
                      extended_s3_configuration={"kms_key_arn": KEY})
    direct = res(policy.FIREHOSE, "d", server_side_encryption={"enabled": True, "key_type": "CUSTOMER_MANAGED_CMK"},
                 extended_s3_configuration={"kms_key_arn": KEY})
    assert policy.firehose_encryption([from_stream, direct]) == []
    unencrypted = res(policy.FIREHOSE, "u", extended_s3_configuration={})
    messages = [v.message for v in policy.firehose_encryption([unencrypted])]
    assert len(messages) == 2 and all("customer" in m for m in messages)


# --- public access -----------------------------------------------------------------------------------


def test_s3_no_public_access() -> None:
    tls_only = res(policy.BUCKET_POLICY, "tls", bucket="lake-bucket", policy=doc(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}}))
    assert policy.s3_no_public_access([bucket(), block(), tls_only]) == []


@pytest.mark.parametrize("extra", [
    [],  # no public access block at all
    [block(on=False)],
    [block(), res(policy.BUCKET_ACL[0], "acl", bucket="lake-bucket", acl="public-read")],
    [block(), res(policy.BUCKET_POLICY, "open", bucket="lake-bucket",
                  policy=doc({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:GetObject",
                              "Resource": "*"}))],
])
def test_s3_public_access_is_refused(extra: list[PlannedResource]) -> None:
    assert {v.rule for v in policy.s3_no_public_access([bucket(), *extra])} == {"s3-no-public-access"}


# --- IAM ---------------------------------------------------------------------------------------------


def test_iam_no_wildcard_admin_passes_scoped_policies() -> None:
    scoped = res("aws:iam/rolePolicy:RolePolicy", "ok", policy=doc(
        {"Effect": "Allow", "Action": ["kinesis:PutRecord"], "Resource": ["arn:aws:kinesis:::stream/s"]},
        {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringLike": {"cloudwatch:namespace": "truckctl/*"}}},
        {"Effect": "Deny", "Action": "*", "Resource": "*"}))
    managed = res("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "ssm",
                  policy_arn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
    assert policy.iam_no_wildcard_admin([scoped, managed]) == []


def test_iam_no_wildcard_admin_refuses_wildcards_on_everything() -> None:
    resources = [
        res("aws:iam/rolePolicy:RolePolicy", "star", policy=doc({"Effect": "Allow", "Action": "*", "Resource": "*"})),
        res("aws:iam/policy:Policy", "s3-star", policy=doc({"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]})),
        res("aws:iam/role:Role", "inline", inline_policies=[{"name": "p", "policy": doc(
            {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})}]),
        res("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "admin",
            policy_arn="arn:aws:iam::aws:policy/AdministratorAccess"),
        res("aws:iam/rolePolicy:RolePolicy", "garbled", policy="{not json"),
    ]
    assert {v.resource for v in policy.iam_no_wildcard_admin(resources)} == {
        "star", "s3-star", "inline", "admin", "garbled"}


# --- network -----------------------------------------------------------------------------------------


def test_no_world_ssh_allows_the_vpn_port_and_private_ssh() -> None:
    sg = res(policy.SECURITY_GROUP, "vpn", ingress=[
        {"protocol": "udp", "from_port": 51820, "to_port": 51820, "cidr_blocks": ["0.0.0.0/0"]},
        {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr_blocks": ["10.0.0.0/8"]}])
    assert policy.no_world_ssh([sg]) == []


@pytest.mark.parametrize("resource", [
    res(policy.SECURITY_GROUP, "bad", ingress=[{"protocol": "tcp", "from_port": 0, "to_port": 1024,
                                                "cidr_blocks": ["0.0.0.0/0"]}]),
    res(policy.SECURITY_GROUP, "bad", ingress=[{"protocol": "-1", "from_port": 0, "to_port": 0,
                                                "ipv6_cidr_blocks": ["::/0"]}]),
    res(policy.SG_RULE, "bad", type="ingress", protocol="tcp", from_port=22, to_port=22, cidr_blocks=["0.0.0.0/0"]),
    res(policy.SG_INGRESS_RULE, "bad", ip_protocol="tcp", from_port=22, to_port=22, cidr_ipv4="0.0.0.0/0"),
])
def test_no_world_ssh_refuses_ssh_from_anywhere(resource: PlannedResource) -> None:
    assert rules_of(policy.no_world_ssh([resource])) == {("no-world-ssh", "bad")}


# --- keys, IoT, data, instances -----------------------------------------------------------------------


def test_kms_rotation() -> None:
    asymmetric = res(policy.KMS_KEY, "sign", customer_master_key_spec="ECC_NIST_P256")  # cannot rotate
    assert policy.kms_rotation([res(policy.KMS_KEY, "k", enable_key_rotation=True), asymmetric]) == []
    assert rules_of(policy.kms_rotation([res(policy.KMS_KEY, "k")])) == {("kms-rotation", "k")}


def iot_doc(*resources: str, action: str = "iot:Publish") -> str:
    base = "arn:aws:iot:eu-south-1:123456789012"
    return doc({"Effect": "Allow", "Action": [action], "Resource": [f"{base}:{r}" for r in resources]})


def test_iot_policy_scoped_to_one_truck() -> None:
    scoped = res(policy.IOT_POLICY, "a", policy=iot_doc("client/race-truck-a", "topic/race/truck-a/*",
                                                        "topicfilter/race/truck-a/*"))
    assert policy.iot_policy_scoped([scoped]) == []


@pytest.mark.parametrize(("document", "fragment"), [
    (iot_doc("topic/race/truck-a/*", "topic/race/truck-b/*"), "topics of 2 trucks"),
    (iot_doc("topic/race/*"), "not under a race/truck/ prefix"),
    (iot_doc("client/*"), "wildcard"),
    (iot_doc("client/a", "client/b"), "2 client ids"),
    (iot_doc("topic/race/truck-a/x", action="iot:*"), "wildcard action"),
    (doc({"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}), "not scoped"),
])
def test_iot_policy_not_scoped(document: str, fragment: str) -> None:
    violations = policy.iot_policy_scoped([res(policy.IOT_POLICY, "p", policy=document)])
    assert violations and any(fragment in v.message for v in violations), violations


def lake_set(protect: bool, retain: bool | None, versioned: bool = True) -> list[PlannedResource]:
    tagged = res(policy.BUCKET, "lake", protect=protect, retain=retain, bucket="lake-bucket",
                 tags={policy.DATA_TAG: "race-telemetry"})
    status = "Enabled" if versioned else "Suspended"
    return [tagged, res(policy.VERSIONING[0], "lake-versioning", protect=protect, retain=retain, bucket="lake-bucket",
                        versioning_configuration={"status": status})]


def test_datalake_retained() -> None:
    assert policy.datalake_retained(lake_set(True, True)) == []
    assert policy.datalake_retained(lake_set(True, None)) == []  # CrossGuard does not report retain_on_delete
    assert policy.datalake_retained([bucket()]) == []  # untagged buckets are not race data
    assert rules_of(policy.datalake_retained(lake_set(False, True))) == {
        ("datalake-retained", "lake"), ("datalake-retained", "lake-versioning")}
    assert all(v.message.endswith("retain_on_delete") for v in policy.datalake_retained(lake_set(True, False)))


def test_datalake_versioned() -> None:
    assert policy.datalake_versioned(lake_set(True, True)) == []
    assert rules_of(policy.datalake_versioned(lake_set(True, True, versioned=False))) == {
        ("datalake-versioned", "lake")}


def test_ec2_hardened() -> None:
    good = res(policy.INSTANCE, "vpn", metadata_options={"http_tokens": "required"},
               root_block_device={"encrypted": True})
    assert policy.ec2_hardened([good]) == []
    bad = res(policy.INSTANCE, "old", metadata_options={"http_tokens": "optional"})
    assert [v.message for v in policy.ec2_hardened([bad])] == ["instance does not require IMDSv2",
                                                               "root volume is not encrypted"]


# --- the rule set ------------------------------------------------------------------------------------


def test_rule_set_is_complete_and_named_once() -> None:
    names = [rule.name for rule in policy.RULES]
    assert len(names) == len(set(names)) >= 8
    assert all(rule.description for rule in policy.RULES)
    everything_wrong = [res(policy.STREAM, "s"), res(policy.TOPIC, "t"), res(policy.KMS_KEY, "k")]
    assert {v.rule for v in policy.evaluate(everything_wrong)} == {"kinesis-encryption", "sns-encryption",
                                                                   "kms-rotation"}


def test_normalise_engine_inputs() -> None:
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "k"}
    raw = {"encryptionType": "KMS", "shardCount": 1.0, "tags": {"Name": "x", "truckctl-data": "y"},
           "retentionPeriod": 24.5, "value": secret}
    assert normalise(raw, lambda v: isinstance(v, dict) and "4dabf18193072939515e22adb298388d" in v) == {
        "encryption_type": "KMS", "shard_count": 1, "tags": {"Name": "x", "truckctl-data": "y"},
        "retention_period": 24.5, "value": "[secret]"}
