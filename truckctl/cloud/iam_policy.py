"""Reading AWS policy documents (IAM and IoT share the grammar): statements, wildcards, what a
document allows, and which grants are too broad. Pure functions; the rules in policy.py use them.

Action and resource patterns follow AWS's matching: `*` any run of characters (`/` included),
`?` one character, actions case-insensitively, resources case-sensitively.
"""

from __future__ import annotations

import json
import re
from fnmatch import fnmatchcase
from functools import cache
from typing import Any

from truckctl.jsondoc import JsonObject

# Services whose grants read data or secrets, or hand out identities: no prefix wildcard (`s3:Get*`) there.
SENSITIVE_SERVICES = frozenset({"iam", "sts", "kms", "ssm", "secretsmanager", "s3", "iot", "ec2", "lambda",
                                "dynamodb", "organizations", "cloudformation"})

# What reads secrets or data, decrypts, or passes, assumes or rewrites identities and policies: such an
# action must name its resources. Every action of the identity, key and secret services but their
# listings (a new IAM action is sensitive until shown otherwise); S3's object reads and writes.
SENSITIVE_ACTIONS = ("iam:*", "sts:*", "kms:*", "ssm:*", "secretsmanager:*",
                     "s3:GetObject*", "s3:PutObject*", "s3:DeleteObject*",
                     "lambda:InvokeFunction", "iot:Connect", "iot:Publish")
# Listings return names and metadata, not the secrets or data themselves.
LISTING_PREFIXES = ("list", "describe")
# Actions of those services that take no resource and read nothing: granting them on "*" is how AWS
# documents them. Each says why. (`ssmmessages:*`, the Session Manager channels, is another service.)
UNSCOPABLE_ACTIONS = {
    "sts:getcalleridentity": "has no resource, needs no permission, and tells the caller only who it is",
}

# AWS-managed policies are written for every account: they grant on Resource "*". Named ones say why.
AWS_MANAGED_POLICY = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/(?:.*/)?(?P<name>[^/]+)$")
BROAD_MANAGED_POLICIES = {
    "AdministratorAccess": "every action on every resource",
    "PowerUserAccess": "every action but IAM's on every resource",
    "IAMFullAccess": "every IAM action: it can make itself an administrator",
    "ReadOnlyAccess": "reads every resource of the account, secrets and data included",
    "ViewOnlyAccess": "lists every resource of the account",
    "AmazonSSMManagedInstanceCore": "ssm:GetParameter(s) on every SSM parameter of the account",
    "AmazonEC2RoleforSSM": "ssm:GetParameter(s) and s3:GetObject on every resource",
    "AmazonSSMReadOnlyAccess": "reads every SSM parameter of the account",
}


def policy_document(raw: Any) -> JsonObject | None:
    """A document from a dict or its JSON text; None when it is neither."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def items(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def statements(document: JsonObject) -> list[JsonObject]:
    return [s for s in items(document.get("Statement")) if isinstance(s, dict)]


def allow_statements(document: JsonObject) -> list[JsonObject]:
    return [s for s in statements(document) if s.get("Effect") == "Allow"]


def actions(statement: JsonObject) -> list[str]:
    return [str(a) for a in items(statement.get("Action"))]


def resources(statement: JsonObject) -> list[str]:
    return [str(r) for r in items(statement.get("Resource"))]


def action_matches(pattern: str, action: str) -> bool:
    return fnmatchcase(action.lower(), pattern.lower().replace("[", "[[]"))


def resource_matches(pattern: str, resource: str) -> bool:
    return fnmatchcase(resource, pattern.replace("[", "[[]"))


def wildcard_action_problem(action: str) -> str | None:
    """Why an allowed action pattern is too broad, or None: `*`, `SERVICE:*` of any service, and
    prefix wildcards (`s3:Get*`) on a sensitive service."""
    if action.strip() == "*":
        return "allows every action (*)"
    service, _, name = action.partition(":")
    if not any(c in action for c in "*?"):
        return None
    if name.strip("*?") == "" or "*" in service or "?" in service:
        return f"allows every action of a service ({action})"
    if service.lower() in SENSITIVE_SERVICES:
        return f"allows a wildcard of actions on the sensitive service {service} ({action})"
    return None


def unscoped(resource: str) -> bool:
    """True where a resource pattern does not name what it grants on: `*`; a wildcard that is not an ARN
    of 6 parts (`arn:*`, `arn:aws:*`); a wildcard in the partition, service, region or account
    (`arn:aws:iam::*:role/x`) or in the resource type (`arn:aws:ssm:r:a:parameter*`, for S3 the
    bucket: `arn:aws:s3:::lake*/x`); or a resource part of wildcards alone, or of a type and wildcards
    (`arn:aws:s3:::*`, `arn:aws:ssm:r:a:*`, `arn:aws:ssm:r:a:parameter/*`). Under one named parent
    (`arn:aws:s3:::bucket/prefix*`, `arn:aws:ssm:r:a:parameter/truckctl/*`) it is scoped."""
    resource = resource.strip()
    parts = resource.split(":", 5)
    if resource == "*" or (len(parts) < 6 and _wild(resource)):
        return True
    if len(parts) < 6:
        return False
    service, name = parts[2], parts[5]
    if any(_wild(part) for part in parts[1:5]) or name.strip("*?/:") == "":
        return True
    if service == "s3":  # bucket/key: the bucket is the named parent
        return _wild(name.split("/", 1)[0])
    cut = re.search(r"[/:]", name)
    if cut is None:  # no type, or a name alone
        return _wild(name)
    return _wild(name[:cut.start()]) or name[cut.end():].strip("*?/:") == ""


def sensitive_action(action: str) -> bool:
    """Whether an allowed action pattern covers a sensitive action (case-insensitively, as AWS matches
    them): some action both it and a SENSITIVE_ACTIONS pattern match, unless every action it matches
    is a listing or it is one of UNSCOPABLE_ACTIONS."""
    pattern = action.strip().lower()
    if pattern in UNSCOPABLE_ACTIONS:
        return False
    service, _, name = pattern.partition(":")
    if not _wild(service) and re.split(r"[*?]", name, maxsplit=1)[0].startswith(LISTING_PREFIXES):
        return False
    return any(patterns_overlap(pattern, sensitive.lower()) for sensitive in SENSITIVE_ACTIONS)


def patterns_overlap(first: str, second: str) -> bool:
    """Whether some string matches both patterns (`*` any run, `?` one character, the rest literal)."""

    @cache
    def overlap(i: int, j: int) -> bool:
        if i == len(first) and j == len(second):
            return True
        if i < len(first) and first[i] == "*":  # the star matches nothing, or the next character of `second`
            return overlap(i + 1, j) or (j < len(second) and overlap(i, j + 1))
        if j < len(second) and second[j] == "*":
            return overlap(i, j + 1) or (i < len(first) and overlap(i + 1, j))
        if i == len(first) or j == len(second):
            return False
        same = first[i] == second[j] or "?" in (first[i], second[j])
        return same and overlap(i + 1, j + 1)

    return overlap(0, 0)


def _wild(text: str) -> bool:
    return "*" in text or "?" in text


def managed_policy_problem(arn: str) -> str | None:
    """Why attaching this policy ARN is too broad, or None for a customer-managed policy (its own
    document is checked where it is defined)."""
    match = AWS_MANAGED_POLICY.match(arn)
    if match is None:
        return None
    name = match.group("name")
    if name in BROAD_MANAGED_POLICIES:
        return f"attaches the AWS-managed {name}: {BROAD_MANAGED_POLICIES[name]}"
    if name.endswith("FullAccess"):
        return f"attaches the AWS-managed {name}: every action of a service on every resource"
    return f"attaches the AWS-managed {name}: written for every account, it grants on Resource *; " \
           "write the few statements the role needs instead"


def allows(document: JsonObject, action: str, resource: str) -> bool:
    """Whether the document lets `action` on `resource` (conditions taken as met, so this errs on the
    side of allowing): some Allow matches and no Deny does."""

    def matches(statement: JsonObject) -> bool:
        if "NotAction" in statement:
            acted = not any(action_matches(str(p), action) for p in items(statement["NotAction"]))
        else:
            acted = any(action_matches(p, action) for p in actions(statement))
        if "NotResource" in statement:
            placed = not any(resource_matches(str(p), resource) for p in items(statement["NotResource"]))
        else:
            placed = any(resource_matches(p, resource) for p in resources(statement))
        return acted and placed

    listed = statements(document)
    if any(s.get("Effect") == "Deny" and matches(s) for s in listed):
        return False
    return any(s.get("Effect") == "Allow" and matches(s) for s in listed)
