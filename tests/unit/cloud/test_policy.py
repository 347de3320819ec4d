"""Each policy rule: a passing and a failing case over small hand-made resource sets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from truckctl.cloud import iam_policy, policy
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


ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
PARAMETER = "arn:aws:ssm:eu-south-1:123456789012:parameter/truckctl/gdf27/stage-1/vpn/private-key"


def role_policy(*statements: dict[str, Any], name: str = "p") -> PlannedResource:
    return res(ROLE_POLICY, name, policy=doc(*statements))


def grant(action: str | list[str], resource: str | list[str] = PARAMETER, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


SCOPED_STATEMENTS = (
    grant(["kinesis:PutRecord"], ["arn:aws:kinesis:eu-south-1:123456789012:stream/s"]),
    grant("ssm:GetParameter"),
    grant("kms:Decrypt", KEY, Condition={"StringEquals": {"kms:ViaService": "ssm.eu-south-1.amazonaws.com"}}),
    grant("iam:PassRole", "arn:aws:iam::123456789012:role/gdf27-stage-1-firehose"),
    grant("s3:GetObject", "arn:aws:s3:::lake-bucket/telemetry/*"),
    grant("cloudwatch:PutMetricData", "*", Condition={"StringLike": {"cloudwatch:namespace": "truckctl/*"}}),
    {"Effect": "Deny", "Action": "*", "Resource": "*"},  # a Deny is never too broad
    {"Effect": "Deny", "NotAction": "s3:GetObject", "NotResource": PARAMETER})
SCOPED = role_policy(*SCOPED_STATEMENTS)


@pytest.mark.parametrize("check", [policy.iam_no_wildcard_actions, policy.iam_sensitive_resources,
                                   policy.iam_no_not_grants, policy.iam_no_broad_managed_policies])
def test_iam_rules_pass_scoped_policies(check: policy.Check) -> None:
    customer = res("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "own",
                   policy_arn="arn:aws:iam::123456789012:policy/gdf27-reader")  # its document is checked itself
    # A prefix wildcard on a service that reads no data passes the project's rules (parliament still
    # wants its resources named, below).
    cloudwatch = role_policy(grant("cloudwatch:Put*", "*"), name="cw")
    assert check([SCOPED, customer, cloudwatch]) == []


@pytest.mark.parametrize("action", ["*", "s3:*", "iam:*", "kms:*", "sts:*", "logs:*", "cloudwatch:*",
                                    "s3:Get*", "ssm:GetParameter*", "kms:Re*", "iam:Pass?ole", "*:GetObject",
                                    "S3:*", "IAM:*", "S3:get*", "Ssm:GetParameter*"])
def test_iam_wildcard_actions_of_any_service_are_refused(action: str) -> None:
    # ...on a named resource too: the wildcard grants actions nobody reviewed, now and as AWS adds them
    assert rules_of(policy.iam_no_wildcard_actions([role_policy(grant(action))])) == {("iam-no-wildcard-actions",
                                                                                    "p")}


@pytest.mark.parametrize(("action", "resource"), [
    ("iam:PassRole", "*"), ("iam:PassRole", "arn:aws:iam::123456789012:role/*"),
    ("kms:Decrypt", "*"), ("kms:Decrypt", "arn:aws:kms:eu-south-1:123456789012:key/*"),
    ("ssm:GetParameter", "*"), ("ssm:GetParameters", "arn:aws:ssm:eu-south-1:123456789012:parameter/*"),
    ("ssm:GetParametersByPath", "arn:aws:ssm:*:*:*"),
    ("s3:GetObject", "*"), ("s3:GetObject", "arn:aws:s3:::*"), ("s3:GetObject", "arn:aws:s3:::*/*"),
    ("secretsmanager:GetSecretValue", "*"), ("sts:AssumeRole", "*"),
    ("ssm:GetParameter*", "*"),  # a pattern covering a sensitive action counts as that action
])
def test_iam_sensitive_actions_on_every_resource_are_refused(action: str, resource: str) -> None:
    # A condition does not make it acceptable: the rule wants the resource named.
    statement = grant(action, resource, Condition={"StringEquals": {"aws:RequestedRegion": "eu-south-1"}})
    violations = policy.iam_sensitive_resources([role_policy(statement)])
    assert rules_of(violations) == {("iam-sensitive-resources", "p")}
    assert resource in violations[0].message


ACCOUNT = "eu-south-1:123456789012"


@pytest.mark.parametrize(("action", "resource"), [
    ("ssm:GetParameter", "arn:*"), ("ssm:GetParameter", "arn:aws:*"), ("ssm:GetParameter", "arn:aws:ssm:*"),
    ("ssm:GetParameter", "arn:?"), ("ssm:GetParameter", f"arn:aws:ssm:{ACCOUNT}:parameter*"),
    ("ssm:GetParameter", f"arn:aws:ssm:{ACCOUNT}:param?ter/truckctl/x"),
    ("ssm:GetParameter", f"arn:aws:ssm:{ACCOUNT}:*/truckctl/x"), ("ssm:GetParameter", f"arn:aws:ssm:{ACCOUNT}:*"),
    ("ssm:GetParameter", f"arn:aws:ssm:{ACCOUNT}:parameter/*/*"),
    ("ssm:GetParameter", "arn:aws:ssm:*:123456789012:parameter/truckctl/x"),  # every region
    ("ssm:GetParameter", "arn:aws:ssm:eu-south-1:*:parameter/truckctl/x"),  # every account
    ("ssm:GetParameter", f"arn:aws:*:{ACCOUNT}:parameter/truckctl/x"),  # every service
    ("ssm:GetParameter", f"arn:*:ssm:{ACCOUNT}:parameter/truckctl/x"),  # every partition
    ("iam:PassRole", "arn:aws:iam::*:role/*"), ("iam:PassRole", "arn:aws:iam::*:role/gdf27-stage-1-firehose"),
    ("kms:Decrypt", f"arn:aws:kms:{ACCOUNT}:key*"),
    ("s3:GetObject", "arn:aws:s3:::*"), ("s3:GetObject", "arn:aws:s3:::lake*/telemetry/x"),  # any account's bucket
    ("s3:GetObject", "arn:aws:s3:::?ake-bucket/x"),
])
@pytest.mark.parametrize("as_list", [False, True])
def test_iam_sensitive_actions_on_wildcard_arn_shapes_are_refused(action: str, resource: str, as_list: bool) -> None:
    statement = grant([action] if as_list else action, [resource] if as_list else resource)
    violations = policy.iam_sensitive_resources([role_policy(statement)])
    assert rules_of(violations) == {("iam-sensitive-resources", "p")}
    assert resource in violations[0].message


@pytest.mark.parametrize("action", [
    "iam:AttachUserPolicy", "iam:CreatePolicyVersion", "iam:UpdateAssumeRolePolicy", "iam:PutUserPolicy",
    "iam:SetDefaultPolicyVersion", "iam:CreateLoginProfile", "iam:GetRole", "sts:AssumeRoleWithWebIdentity",
    "sts:GetSessionToken", "kms:Sign", "kms:ReEncryptTo", "kms:PutKeyPolicy", "ssm:GetParameterHistory",
    "ssm:PutParameter", "ssm:GetCommandInvocation", "secretsmanager:GetResourcePolicy",
    "secretsmanager:PutSecretValue", "s3:GetObjectVersion", "s3:GetObjectAcl", "s3:PutObjectAcl",
    "s3:DeleteObjectVersion",
    # IAM action names are case-insensitive: so is the rule
    "IAM:PassRole", "Iam:passrole", "KMS:DECRYPT", "S3:GetObject", "SSM:getParameter", "iam:AttachUserPolicy ",
    # patterns covering a sensitive action (the wildcard rule refuses them too)
    "s3:*", "S3:*", "*", "*:GetObject", "s?m:GetParameter", "iam:*Policy", "ss*:Get*", "kms:*crypt",
])
@pytest.mark.parametrize("as_list", [False, True])
def test_iam_every_sensitive_action_is_refused_on_every_resource(action: str, as_list: bool) -> None:
    statement = grant([action] if as_list else action, "*")
    violations = policy.iam_sensitive_resources([role_policy(statement)])
    assert rules_of(violations) == {("iam-sensitive-resources", "p")}
    assert action in violations[0].message


@pytest.mark.parametrize("action", [
    "iam:ListRoles", "IAM:ListPolicies", "kms:ListAliases", "ssm:DescribeParameters", "ssm:DescribeInstance*",
    "secretsmanager:ListSecrets", "sts:GetCallerIdentity", "STS:getcalleridentity", "s3:ListAllMyBuckets",
    "s3:GetBucketLocation", "cloudwatch:PutMetricData", "ec2:DescribeInstances",
    # Session Manager's channels: another service (ssmmessages), which the stack grants on "*"
    "ssmmessages:CreateControlChannel", "ssmmessages:OpenDataChannel",
])
def test_iam_listings_and_resourceless_actions_may_take_every_resource(action: str) -> None:
    assert policy.iam_sensitive_resources([role_policy(grant(action, "*"), grant([action], ["*"]))]) == []


@pytest.mark.parametrize("resource", [
    PARAMETER, KEY, "arn:aws:ssm:eu-south-1:123456789012:parameter/truckctl/gdf27/stage-1/vpn/peers/*",
    "arn:aws:iam::123456789012:role/gdf27-stage-1-firehose", "arn:aws:iam::123456789012:role/gdf27-*",
    "arn:aws:s3:::lake-bucket/telemetry/*", "arn:aws:s3:::lake-bucket/*", "arn:aws:s3:::lake-bucket",
    "arn:aws:iot:eu-south-1:123456789012:topic/gdf27/stage-1/truck-a/*",
    "arn:aws:logs:eu-south-1:123456789012:log-group:/truckctl/gdf27:*",
    "arn:aws:ec2:eu-south-1:123456789012:instance/i-0123456789abcdef0",
    "04da6b54-80e4-46f7-96ec-b56ff0331ba9",  # an output Pulumi does not know yet
])
def test_iam_named_resources_are_scoped(resource: str) -> None:
    assert not iam_policy.unscoped(resource)
    assert policy.iam_sensitive_resources([role_policy(grant(["ssm:GetParameter", "s3:GetObject"], resource))]) == []


@pytest.mark.parametrize(("first", "second", "overlap"), [
    ("ssm:get*", "ssm:*", True), ("*:getobject", "s3:getobject*", True), ("s?m:x", "ssm:*", True),
    ("ssmmessages:*", "ssm:*", False), ("s3:list*", "s3:getobject*", False), ("*a", "b*", True),
    ("a*", "*b", True), ("a*c", "*b*", True), ("a?", "ab", True), ("a?", "a", False), ("*x*", "*y*", True),
    ("abc", "abd", False), ("", "*", True), ("", "?", False),
])
def test_action_patterns_overlap(first: str, second: str, overlap: bool) -> None:
    assert iam_policy.patterns_overlap(first, second) is overlap
    assert iam_policy.patterns_overlap(second, first) is overlap


@pytest.mark.parametrize("statement", [
    {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
    {"Effect": "Allow", "Action": "ssm:GetParameter", "NotResource": PARAMETER},
])
def test_iam_not_action_and_not_resource_grants_are_refused(statement: dict[str, Any]) -> None:
    inline = res("aws:iam/role:Role", "inline", inline_policies=[{"name": "p", "policy": doc(statement)}])
    assert rules_of(policy.iam_no_not_grants([inline])) == {("iam-no-not-grants", "inline")}


@pytest.mark.parametrize("arn", [
    "arn:aws:iam::aws:policy/AdministratorAccess", "arn:aws:iam::aws:policy/PowerUserAccess",
    "arn:aws:iam::aws:policy/IAMFullAccess", "arn:aws:iam::aws:policy/AmazonS3FullAccess",
    "arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
    "arn:aws:iam::aws:policy/service-role/AmazonEC2RoleforSSM", "arn:aws-us-gov:iam::aws:policy/AdministratorAccess",
    "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy",  # any AWS-managed one: written for every account
])
@pytest.mark.parametrize("how", ["attachment", "role", "policy-attachment"])
def test_iam_broad_managed_policies_are_refused_wherever_attached(arn: str, how: str) -> None:
    resource = {"attachment": res("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "x", policy_arn=arn),
                "role": res("aws:iam/role:Role", "x", managed_policy_arns=[arn]),
                "policy-attachment": res("aws:iam/policyAttachment:PolicyAttachment", "x", policy_arn=arn)}[how]
    violations = policy.iam_no_broad_managed_policies([resource])
    assert rules_of(violations) == {("iam-no-broad-managed-policies", "x")}
    assert arn.rsplit("/", 1)[1] in violations[0].message


def test_iam_rules_report_unreadable_documents() -> None:
    garbled = res(ROLE_POLICY, "garbled", policy="{not json")
    for check in (policy.iam_no_wildcard_actions, policy.iam_sensitive_resources, policy.iam_no_not_grants):
        assert [v.resource for v in check([garbled])] == ["garbled"]


def test_parliament_passes_a_scoped_policy() -> None:
    assert policy.iam_parliament([SCOPED]) == []


@pytest.mark.parametrize(("statement", "issue"), [
    (grant("s3:GetObject", "arn:aws:s3:::lake-bucket"), "RESOURCE_MISMATCH"),  # an object action on a bucket
    (grant("ssm:GetParameters", "*"), "RESOURCE_STAR"),
    (grant("iam:PassRole", "*"), "RESOURCE_STAR"),
    (grant("s3:GetObjct", "arn:aws:s3:::lake-bucket/*"), "UNKNOWN_ACTION"),
    (grant("cloudwatch:Put*", "*"), "RESOURCE_STAR"),  # where the project's own rules let it through
    (grant(["iam:CreateAccessKey"], "arn:aws:iam::123456789012:user/*"), "CREDENTIALS_EXPOSURE"),
])
def test_parliament_fails_a_bad_policy(statement: dict[str, Any], issue: str) -> None:
    violations = policy.iam_parliament([role_policy(statement, name="bad")])
    assert violations and {v.rule for v in violations} == {"iam-parliament"}
    assert any(f"parliament {issue} " in v.message for v in violations), violations


def test_parliament_allow_list_is_narrow() -> None:
    """The allow-listed findings are allowed only where their reason holds: a key policy's Resource *
    is its own key, but the same statement in a role's policy is every key of the account."""
    from truckctl.cloud import lint

    assert all(a.reason for a in lint.ALLOWED)
    statement = grant("kms:Decrypt", "*", Principal={"AWS": "arn:aws:iam::123456789012:root"})
    key = res(policy.KMS_KEY, "key", policy=doc(statement), enable_key_rotation=True)
    assert policy.iam_parliament([key]) == []
    role = role_policy(grant("kms:Decrypt", "*"), name="role")
    assert [v.resource for v in policy.iam_parliament([role])] == ["role"]
    unknown = iot_doc("client/race-stage-1-truck-a", action="iot:Connect").replace(
        '"Resource"', '"Condition": {"Bool": {"iot:Nonsense": "true"}}, "Resource"')
    assert [v.resource for v in policy.iam_parliament([res(policy.IOT_POLICY, "iot", policy=unknown)])] == ["iot"]


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


IOT_BASE = "arn:aws:iot:eu-south-1:123456789012"
ATTACHED = {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}


def iot_doc(*resources: str, action: str = "iot:Publish", condition: dict[str, Any] | None = None) -> str:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": [action],
                                 "Resource": [f"{IOT_BASE}:{r}" for r in resources]}
    if condition:
        statement["Condition"] = condition
    return doc(statement)


def bridge_doc(*topics: str, client: str = "gdf27-stage-1-truck-a", action: str = "iot:Publish",
               also: tuple[str, ...] = ()) -> str:
    connect = {"Effect": "Allow", "Action": "iot:Connect",
               "Resource": [f"{IOT_BASE}:client/{c}" for c in (client, *also)], "Condition": ATTACHED}
    return doc(connect, {"Effect": "Allow", "Action": action, "Resource": [f"{IOT_BASE}:{t}" for t in topics]})


def test_iot_policy_scoped_to_one_truck_of_one_stage() -> None:
    scoped = res(policy.IOT_POLICY, "a", policy=bridge_doc("topic/gdf27/stage-1/truck-a/*",
                                                           "topic/gdf27/stage-1/truck-a/telemetry"))
    assert policy.iot_policy_scoped([scoped]) == []


def test_iot_policy_may_let_the_trucks_gateway_agent_connect_beside_its_bridge() -> None:
    """truck_ops_agent connects as `<client id>-ops` (never knocking the bridge's session off): allowed for
    the policy's own truck only."""
    with_agent = bridge_doc("topic/gdf27/stage-1/truck-a/*", also=("gdf27-stage-1-truck-a-ops",))
    assert policy.iot_policy_scoped([res(policy.IOT_POLICY, "a", policy=with_agent)]) == []
    for others in (("gdf27-stage-1-truck-b-ops",), ("gdf27-stage-1-truck-a-ops", "gdf27-stage-1-truck-b"),
                   ("gdf27-stage-1-truck-a-ops", "gdf27-stage-1-truck-b", "gdf27-stage-1-truck-b-ops"),
                   ("gdf27-stage-1-truck-a-ops-ops",)):
        document = bridge_doc("topic/gdf27/stage-1/truck-a/*", also=others)
        violations = policy.iot_policy_scoped([res(policy.IOT_POLICY, "a", policy=document)])
        assert any("expected exactly one" in v.message for v in violations), (others, violations)


@pytest.mark.parametrize(("document", "fragment"), [
    (bridge_doc("topic/gdf27/stage-1/truck-a/*", "topic/gdf27/stage-1/truck-b/*"), "not under the client's own"),
    (bridge_doc("topic/gdf27/stage-2/truck-a/*"), "not under the client's own"),  # another stage's prefix
    (bridge_doc("topic/gdf27/truck-a/*"), "not under the client's own"),  # a prefix shared by every stage
    (bridge_doc("topic/gdf27/*"), "not under the client's own"),
    (bridge_doc("topic/gdf27/stage-1/*/telemetry"), "wildcard before its last level"),
    (bridge_doc("topic/gdf27/stage-1/truck-a/*", client="*"), "wildcard"),
    (bridge_doc("topic/gdf27/stage-1/truck-a/*", action="iot:*"), "not one the bridge uses"),
    (bridge_doc("topicfilter/gdf27/stage-1/truck-a/*", action="iot:Subscribe"), "not one the bridge uses"),
    (bridge_doc("topic/gdf27/stage-1/truck-a/*", action="iot:Receive"), "not one the bridge uses"),
    (bridge_doc("client/other"), "not a topic resource"),
    (iot_doc("client/a", "client/b", action="iot:Connect", condition=ATTACHED), "2 client ids"),
    (iot_doc("client/gdf27-stage-1-truck-a", action="iot:Connect"), "IsAttached"),
    (doc({"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "Condition": ATTACHED}), "not scoped"),
    (doc({"Effect": "Allow", "NotAction": "iot:Connect", "Resource": f"{IOT_BASE}:client/x"}), "NotAction"),
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
