"""Deactivate the trucks' AWS IoT certificates: the first thing `down --target aws` does.

A certificate that is not ACTIVE cannot authenticate, and AWS IoT Core disconnects the devices
that used it within minutes: a truck that cannot be stopped (unreachable, stolen) is refused at
the cloud side before anything else is torn down. INACTIVE, not REVOKED: AWS allows no way back
from REVOKED, and the Pulumi destroy that later deletes each certificate first sets it INACTIVE.

Idempotent: each certificate is described first and updated only while ACTIVE, so a resumed
`down` changes nothing twice; a certificate already deleted (an earlier destroy) counts as done.
Works on a boto3 IoT client (`iot_client`); boto3 is imported there only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from truckctl.errors import Problem

TARGET_STATUS = "INACTIVE"
NOT_TRUSTED = ("INACTIVE", "REVOKED")


@dataclass(frozen=True)
class CertificateState:
    truck: str
    certificate_id: str
    before: str  # ACTIVE, INACTIVE, ..., or "absent" (already deleted)
    after: str
    changed: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def iot_client(region: str) -> Any:
    import boto3

    return boto3.client("iot", region_name=region)


def _error_text(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', '')}".strip().rstrip(":")
    return f"{type(exc).__name__}: {exc}"[:300]


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(((response or {}).get("Error") or {}).get("Code", "")) if isinstance(response, dict) else ""


def deactivate(client: Any, truck: str, certificate_id: str) -> CertificateState:
    """One certificate to INACTIVE (unless it is no longer trusted already); raises the client's error."""
    from botocore.exceptions import ClientError

    try:
        status = str(client.describe_certificate(certificateId=certificate_id)["certificateDescription"]["status"])
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return CertificateState(truck, certificate_id, "absent", "absent", False)
        raise
    if status in NOT_TRUSTED:
        return CertificateState(truck, certificate_id, status, status, False)
    client.update_certificate(certificateId=certificate_id, newStatus=TARGET_STATUS)
    return CertificateState(truck, certificate_id, status, TARGET_STATUS, True)


def deactivate_all(client: Any, certificates: Mapping[str, str]) -> tuple[list[CertificateState], list[Problem]]:
    """Every truck's certificate, each tried whatever happened to the others: what was done, and one
    problem per truck still trusted, saying what to do."""
    from botocore.exceptions import BotoCoreError, ClientError

    done: list[CertificateState] = []
    problems: list[Problem] = []
    for truck, certificate_id in sorted(certificates.items()):
        try:
            done.append(deactivate(client, truck, certificate_id))
        except (ClientError, BotoCoreError) as exc:
            problems.append(Problem(
                "revoke-failed", f"truck {truck}'s IoT certificate {certificate_id} is still trusted: "
                f"{_error_text(exc)}. Nothing else was torn down: fix the AWS access (iot:DescribeCertificate, "
                f"iot:UpdateCertificate) and re-run `truckctl down`, or deactivate it by hand: aws iot "
                f"update-certificate --certificate-id {certificate_id} --new-status {TARGET_STATUS}", truck))
    return done, problems
