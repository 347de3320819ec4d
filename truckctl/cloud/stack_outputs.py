"""Map the Pulumi stack outputs (stacks/race_cloud/program.py) onto `CloudOutputs`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from truckctl.cloud.outputs import CloudOutputs, TruckAccess
from truckctl.errors import TruckctlError

REQUIRED = ("region", "mqttHost", "mqttPort", "caPem", "trucks", "truckPrivateKeys", "telemetryStream",
            "datalakeBucket", "alertTopicArn", "vpnEndpoint", "vpnPublicKey")


def _plain(value: Any) -> Any:
    """Automation API outputs are OutputValue(value, secret); offline plans give plain values."""
    return value.value if hasattr(value, "value") and hasattr(value, "secret") else value


def cloud_outputs_from_stack(outputs: Mapping[str, Any], placeholder: bool = False,
                             alert_webhook_url: str | None = None) -> CloudOutputs:
    """`alert_webhook_url` comes from the race's secrets (the environment), not from the stack."""
    values = {name: _plain(value) for name, value in outputs.items()}
    missing = [name for name in REQUIRED if values.get(name) in (None, "")]
    if missing:
        raise TruckctlError.single(
            "cloud-outputs-missing",
            f"the cloud stack has no output {', '.join(missing)}: bring the cloud tier up first",
        )
    keys = values["truckPrivateKeys"]
    try:
        trucks = {
            name: TruckAccess(
                thing_name=truck["thingName"],
                client_id=truck["clientId"],
                topic_prefix=truck["topicPrefix"],
                certificate_pem=truck["certificatePem"],
                private_key_pem=keys[name],
                certificate_ref=truck["certificateRef"],
            )
            for name, truck in values["trucks"].items()
        }
        return CloudOutputs(
            target="aws",
            placeholder=placeholder,
            region=values["region"],
            mqtt_host=values["mqttHost"],
            mqtt_port=int(values["mqttPort"]),
            ca_pem=values["caPem"],
            trucks=trucks,
            telemetry_stream=values["telemetryStream"],
            datalake_bucket=values["datalakeBucket"],
            alert_topic_arn=values["alertTopicArn"],
            alert_webhook_url=alert_webhook_url,
            vpn_endpoint=values["vpnEndpoint"],
            vpn_public_key=values["vpnPublicKey"],
        )
    except (KeyError, TypeError, AttributeError, ValidationError) as exc:
        # Never echo values here: the private keys are among them.
        detail = f"missing {exc}" if isinstance(exc, KeyError) else type(exc).__name__
        raise TruckctlError.single("cloud-outputs-invalid",
                                   f"the cloud stack outputs do not match what truckctl expects ({detail})") from None


def truck_certificates(outputs: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The region and each truck's IoT certificate id, from the stack outputs alone (nothing else of
    them needs to be readable: `down` revokes even a stack whose other outputs are missing).

    No `trucks` output (never deployed, or destroyed): no certificate. Stacks deployed before the
    `certificateId` output carry the id at the end of `certificateRef` (arn:...:cert/ID).
    """
    values = {name: _plain(value) for name, value in outputs.items()}
    trucks = values.get("trucks") or {}
    region = values.get("region")
    if not isinstance(trucks, dict) or (trucks and not isinstance(region, str)):
        raise TruckctlError.single("cloud-outputs-invalid", "the cloud stack's trucks or region output is not "
                                   "what truckctl expects: cannot find the certificates to revoke")
    certificates = {}
    for name, truck in trucks.items():
        ident = truck.get("certificateId") if isinstance(truck, dict) else None
        ref = truck.get("certificateRef") if isinstance(truck, dict) else None
        if not ident and isinstance(ref, str) and ":cert/" in ref:
            ident = ref.rsplit(":cert/", 1)[1]
        if not isinstance(ident, str) or not ident:
            raise TruckctlError.single("cloud-outputs-invalid", f"the cloud stack names no certificate for truck "
                                       f"{name}: cannot revoke it", name)
        certificates[str(name)] = ident
    return str(region or ""), certificates
