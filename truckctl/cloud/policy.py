"""The project's policy rules: plain functions over planned resources, each returning violations.

Used by the offline plan (over what the mock monitor captured) and by the CrossGuard pack in
policypack/ (over the engine's resources). Inputs are normalised `PlannedResource.inputs`
(snake_case keys). A rule never raises on odd input: what it cannot read, it reports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from truckctl.cloud import iam_policy as iamdoc
from truckctl.cloud.iam_policy import items as _items
from truckctl.cloud.iam_policy import policy_document as _policy_document
from truckctl.cloud.iam_policy import statements as _statements
from truckctl.cloud.replacement import holds, replace_keys
from truckctl.cloud.resources import PlannedResource, by_type
from truckctl.jsondoc import JsonObject

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_V2 = "aws:s3/bucketV2:BucketV2"
SSE_CONFIG = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
              "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
VERSIONING = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_ACL = ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2")
STREAM = "aws:kinesis/stream:Stream"
FIREHOSE = "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream"
TOPIC = "aws:sns/topic:Topic"
KMS_KEY = "aws:kms/key:Key"
IOT_POLICY = "aws:iot/policy:Policy"
INSTANCE = "aws:ec2/instance:Instance"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
IAM_POLICY_DOCS = {  # resource type -> where its policy documents are
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/policy:Policy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
    "aws:iam/role:Role": "inline_policies",
}
IAM_ATTACHMENTS = ("aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                   "aws:iam/policyAttachment:PolicyAttachment",
                   "aws:iam/userPolicyAttachment:UserPolicyAttachment",
                   "aws:iam/groupPolicyAttachment:GroupPolicyAttachment")
RESOURCE_POLICY_DOCS = {  # resource policies parliament reads too (their Principal is part of the grant)
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
    "aws:sns/topicPolicy:TopicPolicy": "policy",
    "aws:kms/key:Key": "policy",
    "aws:sqs/queuePolicy:QueuePolicy": "policy",
}
IOT_BRIDGE_ACTIONS = {"iot:connect": "client", "iot:publish": "topic"}  # what a truck's bridge does
IOT_ATTACHED = "iot:Connection.Thing.IsAttached"
OPS_CLIENT_SUFFIX = "-ops"  # the gateway agent's MQTT client id: the truck's own + this (beside the bridge)
DATA_TAG = "truckctl-data"  # buckets holding race data carry this tag (stacks/race_cloud/datalake.py)
WORLD = ("0.0.0.0/0", "::/0")
AWS_MANAGED_KEYS = ("alias/aws/", "aws/")
STAGE_MENTION = re.compile(r"(?<![A-Za-z0-9])stage[-_][1-9][0-9]?(?![0-9])")


@dataclass(frozen=True)
class Violation:
    rule: str
    resource: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "resource": self.resource, "message": self.message}


Check = Callable[[Sequence[PlannedResource]], list[Violation]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: Check


# --- helpers -----------------------------------------------------------------------------------


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _customer_key(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and not value.startswith(AWS_MANAGED_KEYS)


def _buckets(resources: Sequence[PlannedResource]) -> list[PlannedResource]:
    return [r for r in resources if r.type in (BUCKET, BUCKET_V2)]


def _for_bucket(bucket: PlannedResource, resources: Iterable[PlannedResource],
                types: str | tuple[str, ...]) -> list[PlannedResource]:
    """Resources configuring `bucket`: by its name/id when known, else by dependency (previews)."""
    types = (types,) if isinstance(types, str) else types
    names = {bucket.id, bucket.inputs.get("bucket"), bucket.name} - {None, ""}
    found = []
    for resource in resources:
        if resource.type not in types:
            continue
        target = resource.inputs.get("bucket")
        if target in names or (not isinstance(target, str) and bucket.name in resource.depends_on):
            found.append(resource)
    return found


def _documents(resource: PlannedResource) -> list[Any]:
    field = IAM_POLICY_DOCS[resource.type]
    if field == "inline_policies":
        return [_get(p, "policy") for p in _items(resource.inputs.get("inline_policies"))]
    return [resource.inputs.get(field)]


def _unreadable(rule: str, resource: PlannedResource, what: str) -> Violation:
    return Violation(rule, resource.name, f"{what} is not a readable JSON policy document")


# --- rules -------------------------------------------------------------------------------------


def s3_encryption(resources: Sequence[PlannedResource]) -> list[Violation]:
    """Every bucket is encrypted at rest with a customer-managed KMS key."""
    violations = []
    for bucket in _buckets(resources):
        keys = [_get(rule, "apply_server_side_encryption_by_default")
                for config in _for_bucket(bucket, resources, SSE_CONFIG)
                for rule in _items(config.inputs.get("rules"))]
        keys += [_get(rule, "apply_server_side_encryption_by_default")
                 for rule in _items(_get(bucket.inputs, "server_side_encryption_configuration", "rules"))]
        if not any(isinstance(k, dict) and str(k.get("sse_algorithm", "")).startswith("aws:kms")
                   and _customer_key(k.get("kms_master_key_id")) for k in keys):
            violations.append(Violation("s3-encryption", bucket.name,
                                        "bucket has no default SSE-KMS encryption with a customer key"))
    return violations


def kinesis_encryption(resources: Sequence[PlannedResource]) -> list[Violation]:
    """Kinesis streams use server-side encryption with a customer-managed key."""
    return [Violation("kinesis-encryption", s.name, "stream is not encrypted with a customer KMS key")
            for s in by_type(list(resources), STREAM)
            if s.inputs.get("encryption_type") != "KMS" or not _customer_key(s.inputs.get("kms_key_id"))]


def sns_encryption(resources: Sequence[PlannedResource]) -> list[Violation]:
    """SNS topics are encrypted with a customer-managed key (CloudWatch cannot use the AWS-managed one)."""
    return [Violation("sns-encryption", t.name, "topic is not encrypted with a customer KMS key")
            for t in by_type(list(resources), TOPIC) if not _customer_key(t.inputs.get("kms_master_key_id"))]


def firehose_encryption(resources: Sequence[PlannedResource]) -> list[Violation]:
    """Firehose encrypts what it holds (SSE, or an encrypted stream source) and what it writes (KMS)."""
    violations = []
    for stream in by_type(list(resources), FIREHOSE):
        sse = stream.inputs.get("server_side_encryption") or {}
        in_flight = bool(stream.inputs.get("kinesis_source_configuration")) or (
            sse.get("enabled") is True and sse.get("key_type") == "CUSTOMER_MANAGED_CMK")
        destination = stream.inputs.get("extended_s3_configuration") or {}
        if not in_flight:
            violations.append(Violation("firehose-encryption", stream.name,
                                        "delivery stream has no server-side encryption with a customer key"))
        if not _customer_key(destination.get("kms_key_arn")):
            violations.append(Violation("firehose-encryption", stream.name,
                                        "delivery stream writes to S3 without a customer KMS key"))
    return violations


def s3_no_public_access(resources: Sequence[PlannedResource]) -> list[Violation]:
    """Every bucket blocks public access (all four switches), grants no public ACL, no public policy."""
    violations = []
    flags = ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    for bucket in _buckets(resources):
        blocks = _for_bucket(bucket, resources, PUBLIC_ACCESS_BLOCK)
        if not any(all(b.inputs.get(f) is True for f in flags) for b in blocks):
            violations.append(Violation("s3-no-public-access", bucket.name,
                                        "bucket lacks a public access block with all four settings on"))
        acls = [bucket.inputs.get("acl")] + [a.inputs.get("acl") for a in _for_bucket(bucket, resources, BUCKET_ACL)]
        if any(acl in ("public-read", "public-read-write", "authenticated-read") for acl in acls):
            violations.append(Violation("s3-no-public-access", bucket.name, "bucket has a public ACL"))
        for policy in _for_bucket(bucket, resources, BUCKET_POLICY):
            document = _policy_document(policy.inputs.get("policy"))
            if document is None:
                violations.append(_unreadable("s3-no-public-access", policy, "bucket policy"))
                continue
            for statement in _statements(document):
                principal = statement.get("Principal")
                public = principal == "*" or (isinstance(principal, dict) and "*" in _items(principal.get("AWS")))
                if statement.get("Effect") == "Allow" and public and not statement.get("Condition"):
                    violations.append(Violation("s3-no-public-access", policy.name,
                                                "bucket policy allows anyone (Principal *)"))
    return violations


def _iam_documents(resources: Sequence[PlannedResource], rule: str,
                   violations: list[Violation]) -> list[tuple[PlannedResource, JsonObject]]:
    """Every identity policy document of the plan; an unreadable one is reported as a violation."""
    found = []
    for resource in resources:
        if resource.type not in IAM_POLICY_DOCS:
            continue
        for raw in _documents(resource):
            document = _policy_document(raw)
            if document is None:
                violations.append(_unreadable(rule, resource, "IAM policy"))
            else:
                found.append((resource, document))
    return found


def iam_no_wildcard_actions(resources: Sequence[PlannedResource]) -> list[Violation]:
    """No IAM policy allows `*`, every action of a service (`s3:*`, `iam:*`), or a wildcard of actions
    (`s3:Get*`) on a sensitive service."""
    violations: list[Violation] = []
    for resource, document in _iam_documents(resources, "iam-no-wildcard-actions", violations):
        for statement in iamdoc.allow_statements(document):
            for action in iamdoc.actions(statement):
                problem = iamdoc.wildcard_action_problem(action)
                if problem:
                    violations.append(Violation("iam-no-wildcard-actions", resource.name, problem))
    return violations


def iam_sensitive_resources(resources: Sequence[PlannedResource]) -> list[Violation]:
    """Sensitive actions (every IAM, STS, KMS, SSM and Secrets Manager action but listings; S3 object
    reads and writes) name their resources: never `*`, a wildcard ARN, nor every resource of a kind,
    whatever the condition. `Action` may be one string or a list; actions match case-insensitively."""
    violations: list[Violation] = []
    for resource, document in _iam_documents(resources, "iam-sensitive-resources", violations):
        for statement in iamdoc.allow_statements(document):
            broad = [r for r in iamdoc.resources(statement) if iamdoc.unscoped(r)]
            sensitive = sorted({a for a in iamdoc.actions(statement) if iamdoc.sensitive_action(a)})
            if broad and sensitive:
                violations.append(Violation("iam-sensitive-resources", resource.name,
                                            f"allows {', '.join(sensitive)} on {', '.join(broad)}"))
    return violations


def iam_no_not_grants(resources: Sequence[PlannedResource]) -> list[Violation]:
    """No Allow with NotAction or NotResource: it grants everything but a list, now and as AWS adds more."""
    violations: list[Violation] = []
    for resource, document in _iam_documents(resources, "iam-no-not-grants", violations):
        for statement in iamdoc.allow_statements(document):
            for element in ("NotAction", "NotResource"):
                if element in statement:
                    violations.append(Violation("iam-no-not-grants", resource.name,
                                                f"Allow with {element} grants everything else"))
    return violations


def iam_no_broad_managed_policies(resources: Sequence[PlannedResource]) -> list[Violation]:
    """No AWS-managed policy is attached anywhere (AdministratorAccess, PowerUserAccess, *FullAccess,
    ReadOnlyAccess, AmazonSSMManagedInstanceCore...): they grant on every resource of the account."""
    violations = []
    for resource in resources:
        arns: list[Any] = []
        if resource.type in IAM_ATTACHMENTS:
            arns = [resource.inputs.get("policy_arn")]
        elif resource.type == "aws:iam/role:Role":
            arns = _items(resource.inputs.get("managed_policy_arns"))
        elif resource.type == "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive":
            arns = _items(resource.inputs.get("policy_arns"))
        for arn in arns:
            problem = iamdoc.managed_policy_problem(str(arn))
            if problem:
                violations.append(Violation("iam-no-broad-managed-policies", resource.name, problem))
    return violations


def lintable_documents(resources: Sequence[PlannedResource]) -> list[tuple[PlannedResource, str, Any]]:
    """(resource, kind, raw document) for every policy document parliament reads."""
    found: list[tuple[PlannedResource, str, Any]] = []
    for resource in resources:
        if resource.type in IAM_POLICY_DOCS:
            found += [(resource, "identity", raw) for raw in _documents(resource)]
        elif resource.type == IOT_POLICY:
            found.append((resource, "iot", resource.inputs.get("policy")))
        elif resource.type in RESOURCE_POLICY_DOCS and resource.inputs.get(RESOURCE_POLICY_DOCS[resource.type]):
            found.append((resource, f"resource:{resource.type}", resource.inputs[RESOURCE_POLICY_DOCS[resource.type]]))
    return found


def iam_parliament(resources: Sequence[PlannedResource]) -> list[Violation]:
    """Parliament, an independent IAM policy linter, finds nothing in any policy document (identity,
    IoT, bucket, topic and key policies; role trust policies have no Resource for it to read)."""
    from truckctl.cloud import lint

    violations = []
    for resource, kind, raw in lintable_documents(resources):
        document = _policy_document(raw)
        if document is None:
            violations.append(_unreadable("iam-parliament", resource, "policy"))
            continue
        text = raw if isinstance(raw, str) else json.dumps(raw)
        violations += [Violation("iam-parliament", resource.name, f.message()) for f in lint.lint(text, kind)]
    return violations


def _ingress_rules(resource: PlannedResource) -> list[JsonObject]:
    """Every ingress rule of a resource as {protocol, from_port, to_port, cidrs}."""
    if resource.type == SECURITY_GROUP:
        return [{"protocol": r.get("protocol"), "from_port": r.get("from_port"), "to_port": r.get("to_port"),
                 "cidrs": _items(r.get("cidr_blocks")) + _items(r.get("ipv6_cidr_blocks"))}
                for r in _items(resource.inputs.get("ingress")) if isinstance(r, dict)]
    if resource.type == SG_RULE and resource.inputs.get("type") == "ingress":
        i = resource.inputs
        return [{"protocol": i.get("protocol"), "from_port": i.get("from_port"), "to_port": i.get("to_port"),
                 "cidrs": _items(i.get("cidr_blocks")) + _items(i.get("ipv6_cidr_blocks"))}]
    if resource.type == SG_INGRESS_RULE:
        i = resource.inputs
        return [{"protocol": i.get("ip_protocol"), "from_port": i.get("from_port"), "to_port": i.get("to_port"),
                 "cidrs": _items(i.get("cidr_ipv4")) + _items(i.get("cidr_ipv6"))}]
    return []


def no_world_ssh(resources: Sequence[PlannedResource]) -> list[Violation]:
    """No security group lets the whole internet reach port 22."""
    violations = []
    for resource in resources:
        for rule in _ingress_rules(resource):
            protocol = str(rule["protocol"]).lower()
            all_traffic = protocol in ("-1", "all")
            try:
                low, high = int(rule["from_port"] or 0), int(rule["to_port"] or 0)
            except (TypeError, ValueError):
                low, high = 0, 65535
            covers_ssh = all_traffic or (protocol in ("tcp", "6") and low <= 22 <= high)
            if covers_ssh and any(c in WORLD for c in rule["cidrs"]):
                violations.append(Violation("no-world-ssh", resource.name,
                                            "ingress opens SSH (port 22) to the whole internet"))
    return violations


def kms_rotation(resources: Sequence[PlannedResource]) -> list[Violation]:
    """Symmetric customer keys rotate automatically."""
    return [Violation("kms-rotation", k.name, "key rotation is off")
            for k in by_type(list(resources), KMS_KEY)
            if k.inputs.get("customer_master_key_spec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"
            and k.inputs.get("enable_key_rotation") is not True]


def _iot_problems(document: JsonObject) -> list[str]:
    problems: list[str] = []
    clients: set[str] = set()
    topics: list[str] = []
    for statement in _statements(document):
        if statement.get("Effect") != "Allow":
            continue
        for element in ("NotAction", "NotResource"):
            if element in statement:
                problems.append(f"Allow with {element}")
        actions = iamdoc.actions(statement)
        for action in actions:
            if action.lower() not in IOT_BRIDGE_ACTIONS:
                problems.append(f"action {action} is not one the bridge uses (iot:Connect, iot:Publish)")
        if any(a.lower() == "iot:connect" for a in actions) and \
                str(_get(statement, "Condition", "Bool", IOT_ATTACHED)).lower() != "true":
            problems.append(f"iot:Connect without the condition {IOT_ATTACHED}: any certificate holding the "
                            "policy could connect as its client id")
        wanted = {IOT_BRIDGE_ACTIONS[a.lower()] for a in actions if a.lower() in IOT_BRIDGE_ACTIONS}
        for arn in iamdoc.resources(statement):
            kind, _, path = arn.rpartition(":")[2].partition("/")
            if arn == "*" or not path or not arn.startswith("arn:"):
                problems.append(f"resource {arn} is not scoped")
            elif kind not in wanted:
                problems.append(f"resource {arn} is not a {' or '.join(sorted(wanted)) or 'bridge'} resource")
            elif kind == "client":
                clients.add(path)
                if any(c in path for c in "*?+#"):
                    problems.append(f"client {path} is a wildcard")
            else:
                topics.append(path)
    bridges = {c for c in clients if c + OPS_CLIENT_SUFFIX in clients} or clients
    if len(bridges) != 1 or not clients <= {c + suffix for c in bridges for suffix in ("", OPS_CLIENT_SUFFIX)}:
        problems.append(f"{len(clients)} client ids ({', '.join(sorted(clients))}): expected exactly one, with "
                        f"at most its gateway agent's (the same id + {OPS_CLIENT_SUFFIX})")
    for topic in topics:
        base = topic.removesuffix("/*")
        if any(c in base for c in "*?+#"):
            problems.append(f"topic {topic} has a wildcard before its last level")
        elif len(bridges) == 1 and not _under_own_prefix(base, next(iter(bridges))):
            problems.append(f"topic {topic} is not under the client's own prefix (its id with / for -)")
    return problems


def _under_own_prefix(topic: str, client: str) -> bool:
    levels = topic.split("/")
    return any("-".join(levels[:n]) == client for n in range(1, len(levels) + 1))


def iot_policy_scoped(resources: Sequence[PlannedResource]) -> list[Violation]:
    """An IoT policy serves one truck's bridge and nothing more: iot:Connect as one client id (the
    thing's name, the certificate attached to that thing), and as that id + `-ops` (the truck's own gateway
    agent, beside the bridge's session), and iot:Publish under that client's own topic prefix (race/truck
    for race-truck): no other action, no wildcard across trucks."""
    violations = []
    for policy in by_type(list(resources), IOT_POLICY):
        document = _policy_document(policy.inputs.get("policy"))
        if document is None:
            violations.append(_unreadable("iot-policy-scoped", policy, "IoT policy"))
            continue
        violations += [Violation("iot-policy-scoped", policy.name, p) for p in _iot_problems(document)]
    return violations


def _data_buckets(resources: Sequence[PlannedResource]) -> list[PlannedResource]:
    return [b for b in _buckets(resources) if DATA_TAG in (b.inputs.get("tags") or {})]


def datalake_retained(resources: Sequence[PlannedResource]) -> list[Violation]:
    """Race data survives a teardown: data buckets and their controls are protected and retained."""
    violations = []
    controls = (*SSE_CONFIG, *VERSIONING, PUBLIC_ACCESS_BLOCK, BUCKET_POLICY,
                "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    for bucket in _data_buckets(resources):
        for resource in [bucket, *_for_bucket(bucket, resources, controls)]:
            missing = ["protect"] if not resource.protect else []
            if resource.retain_on_delete is False:  # None: not reported by the engine (CrossGuard)
                missing.append("retain_on_delete")
            if missing:
                violations.append(Violation("datalake-retained", resource.name,
                                            f"race data resource without {' and '.join(missing)}"))
        if bucket.inputs.get("force_destroy") is True:
            violations.append(Violation("datalake-retained", bucket.name, "force_destroy would delete race data"))
    return violations


def datalake_versioned(resources: Sequence[PlannedResource]) -> list[Violation]:
    """Race data buckets keep object versions (an overwrite or delete is recoverable)."""
    return [Violation("datalake-versioned", b.name, "race data bucket without versioning enabled")
            for b in _data_buckets(resources)
            if not any(_get(v.inputs, "versioning_configuration", "status") == "Enabled"
                       for v in _for_bucket(b, resources, VERSIONING))]


def ec2_hardened(resources: Sequence[PlannedResource]) -> list[Violation]:
    """Instances require IMDSv2 and encrypt their root volume."""
    violations = []
    for instance in by_type(list(resources), INSTANCE):
        if _get(instance.inputs, "metadata_options", "http_tokens") != "required":
            violations.append(Violation("ec2-hardened", instance.name, "instance does not require IMDSv2"))
        if _get(instance.inputs, "root_block_device", "encrypted") is not True:
            violations.append(Violation("ec2-hardened", instance.name, "root volume is not encrypted"))
    return violations


def _mentions_stage(value: Any) -> bool:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return bool(STAGE_MENTION.search(text))


def race_long_identity(resources: Sequence[PlannedResource]) -> list[Violation]:
    """Resources holding data or identity (lake, stream, delivery, key, things, certificates, VPN hub,
    its address and key) carry no stage in their logical name nor in any input they are replaced on:
    moving the race to another stage cannot replace them. (The two-plan rule of a move, in
    truckctl/cloud/moves.py, checks the move itself; this one needs only the plan, so CrossGuard runs it.)"""
    violations = []
    for resource in resources:
        if not holds(resource.type):
            continue
        if _mentions_stage(resource.name):
            violations.append(Violation("race-long-identity", resource.name,
                                        "its logical name carries a stage: the next stage would replace it"))
        for key in replace_keys(resource):
            value: Any = resource.inputs
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None and _mentions_stage(value):
                violations.append(Violation("race-long-identity", resource.name,
                                            f"{key} carries a stage: the next stage would replace it"))
    return violations


RULES: tuple[Rule, ...] = tuple(
    Rule(name, (check.__doc__ or "").strip(), check)
    for name, check in (
        ("s3-encryption", s3_encryption),
        ("kinesis-encryption", kinesis_encryption),
        ("sns-encryption", sns_encryption),
        ("firehose-encryption", firehose_encryption),
        ("s3-no-public-access", s3_no_public_access),
        ("iam-no-wildcard-actions", iam_no_wildcard_actions),
        ("iam-sensitive-resources", iam_sensitive_resources),
        ("iam-no-not-grants", iam_no_not_grants),
        ("iam-no-broad-managed-policies", iam_no_broad_managed_policies),
        ("iam-parliament", iam_parliament),
        ("no-world-ssh", no_world_ssh),
        ("kms-rotation", kms_rotation),
        ("iot-policy-scoped", iot_policy_scoped),
        ("datalake-retained", datalake_retained),
        ("datalake-versioned", datalake_versioned),
        ("ec2-hardened", ec2_hardened),
        ("race-long-identity", race_long_identity),
    )
)


def evaluate(resources: Sequence[PlannedResource], rules: Sequence[Rule] = RULES) -> list[Violation]:
    return [v for rule in rules for v in rule.check(resources)]
