"""Parliament (duo-labs' IAM policy linter) over policy documents, beside the project's own rules.

Imported lazily by the `iam-parliament` rule: parliament loads AWS's whole action catalogue at
import (about half a second), so `truckctl --help` never pays for it; the offline plan imports it
while its worker evaluates the stacks (truckctl/cloud/offline.py).

A finding we judge a false positive is allowed only through ALLOWED, each with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Allowed:
    kind: str  # which documents: "identity", "iot", "resource:<resource type>"
    issue: str  # parliament's issue code
    reason: str
    detail: str = ""  # when set, only findings whose detail contains it

    def covers(self, kind: str, finding: Finding) -> bool:
        return self.kind == kind and self.issue == finding.issue and self.detail in finding.detail


KEY_POLICY = "resource:aws:kms/key:Key"
ALLOWED: tuple[Allowed, ...] = (
    Allowed(KEY_POLICY, "RESOURCE_STAR",
            "in a KMS key policy, Resource \"*\" means the one key the policy is attached to (AWS requires it)"),
    Allowed(KEY_POLICY, "PERMISSIONS_MANAGEMENT_ACTIONS",
            "the account root administers the key through IAM (AWS's default key policy statement); without it "
            "the key, and the race data it encrypts, would become unmanageable"),
    Allowed("iot", "UNKNOWN_CONDITION_FOR_ACTION",
            "iot:Connection.Thing.IsAttached is an AWS IoT Core policy variable (IoT policies only), absent from "
            "the IAM catalogue parliament reads; it ties the client id to the certificate's own thing",
            detail="Unknown condition iot:Connection.Thing.IsAttached for action iot:Connect"),
)


@dataclass(frozen=True)
class Finding:
    issue: str
    severity: str
    title: str
    detail: str

    def message(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"parliament {self.issue} ({self.severity}) {self.title.strip()}{detail}"


def _detail(value: Any) -> str:
    if isinstance(value, list | tuple):
        shown = ", ".join(str(v) for v in value[:6])
        return shown + (f" and {len(value) - 6} more" if len(value) > 6 else "")
    text = str(value or "")
    return text if len(text) <= 200 else text[:200] + "..."


# As parliament's CLI: findings below LOW (INFO, MUTE) are not shown.
SEVERITIES = ("MUTE", "INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL")
MINIMUM_SEVERITY = "LOW"


def _parliament() -> Any:
    """The module, with the community auditors' finding types known (as `parliament --include-community-auditors`)."""
    import parliament

    if not getattr(parliament, "_truckctl_ready", False):
        from pathlib import Path

        parliament.override_config(Path(parliament.__file__).parent / "community_auditors" / "config_override.yaml")
        parliament._truckctl_ready = True
    return parliament


def lint(document: str, kind: str) -> list[Finding]:
    """Parliament's findings on one policy document (JSON text), community auditors included,
    less the ALLOWED ones for this kind of document."""
    parliament = _parliament()
    policy = parliament.analyze_policy_string(document, include_community_auditors=True)
    findings = []
    for raw in policy.findings:
        enhanced = parliament.enhance_finding(raw)
        severity = str(enhanced.severity)
        rank = SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)
        finding = Finding(str(enhanced.issue), severity, str(enhanced.title), _detail(enhanced.detail))
        if rank >= SEVERITIES.index(MINIMUM_SEVERITY) and not any(a.covers(kind, finding) for a in ALLOWED):
            findings.append(finding)
    return findings


def warm() -> None:
    """Import parliament now (for a caller that has time to spare while it waits for something else)."""
    _parliament()
