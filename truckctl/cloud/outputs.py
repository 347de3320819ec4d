"""CloudOutputs: everything the truck tier needs from the cloud tier, one typed model.

On the `aws` target it is built from the Pulumi stack outputs; on the `lab` target from the
lab's cloud stand-in. The truck tier cannot tell the difference. Private keys are SecretStr:
they never render in reprs, JSON dumps or logs unless explicitly revealed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


def topic_prefix(race_id: str, truck: str) -> str:
    """The MQTT topic space of one truck: only this truck's certificate may publish under it.

    The same on aws and on the lab: a truck's identity lasts the race, so its topics carry no stage
    (the topic rule stamps the day's stage on every record instead).
    """
    return f"{race_id}/{truck}"


def telemetry_topic(race_id: str, truck: str) -> str:
    return f"{topic_prefix(race_id, truck)}/telemetry"


def heartbeat_topic(race_id: str, truck: str) -> str:
    return f"{topic_prefix(race_id, truck)}/heartbeat"


class TruckAccess(BaseModel):
    """One truck's identity at the cloud ingest (an IoT thing on aws, a client cert on lab)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    thing_name: str
    client_id: str
    topic_prefix: str
    certificate_pem: str
    private_key_pem: SecretStr
    certificate_ref: str  # IoT certificate ARN on aws; certificate serial on lab


class CloudOutputs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    target: Literal["aws", "lab"]
    placeholder: bool = False  # True for values from an offline plan: never fed to a real apply
    region: str
    mqtt_host: str
    mqtt_port: int
    ca_pem: str
    trucks: dict[str, TruckAccess]
    telemetry_stream: str
    datalake_bucket: str
    alert_topic_arn: str
    # lab stand-in's alert receiver; on aws from the race secrets (a URL that may carry a token: no repr)
    alert_webhook_url: str | None = Field(default=None, repr=False)
    # lab only: truckctl's client certificate and key (files) for the stand-in's HTTPS API
    standin_client_files: tuple[str, str] | None = None
    vpn_endpoint: str  # host:port of the management VPN gateway
    vpn_public_key: str

    def secret_values(self) -> list[str]:
        """Every secret carried here, so scanners and redaction know what must never appear."""
        return [t.private_key_pem.get_secret_value() for t in self.trucks.values()]
