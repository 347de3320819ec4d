"""The stack configuration, derived from the validated `Stage` (never a hand-edited twin)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from ipaddress import IPv4Network

import pulumi

from truckctl.cloud.outputs import heartbeat_topic, telemetry_topic, topic_prefix
from truckctl.config.addressing import CloudLayout, cloud_layout
from truckctl.config.model import Stage

MQTT_PORT = 8883  # AWS IoT Core MQTT over TLS with client certificates


@dataclass(frozen=True)
class TruckSpec:
    name: str
    thing_name: str  # also the MQTT client id: one connection per truck bridge
    topic_prefix: str  # race/stage/truck: the thing name with "/" for "-" (the IoT policy rule checks it)
    telemetry_topic: str
    heartbeat_topic: str
    lan: IPv4Network
    vpn_address: str
    metric_namespace: str  # per-truck CloudWatch namespace (IoT metric actions carry no dimensions)


@dataclass(frozen=True)
class StackConfig:
    race_id: str
    race_name: str
    stage: str
    region: str
    layout: CloudLayout
    vpn_port: int
    trucks: tuple[TruckSpec, ...]
    alert_emails: tuple[str, ...]
    delete_data: bool
    vpn_private_key: pulumi.Output[str]  # always a Pulumi secret

    def name(self, suffix: str) -> str:
        """Physical names carry race and stage: several stages' stacks may share one account."""
        return f"{self.race_id}-{self.stage}-{suffix}"

    def ident(self, suffix: str) -> str:
        """Names for services that allow only [A-Za-z0-9_] (Glue, IoT rules)."""
        return self.name(suffix).replace("-", "_")

    @property
    def tags(self) -> dict[str, str]:
        return {"truckctl-race": self.race_id, "truckctl-stage": self.stage, "managed-by": "truckctl"}


def from_stage(stage: Stage, *, race_trucks: list[str], delete_data: bool,
               vpn_private_key: pulumi.Output[str]) -> StackConfig:
    """`race_trucks` is the race file's truck order: a truck keeps its tunnel address all race long."""
    layout = cloud_layout(stage.cloud.cidr)
    trucks = tuple(
        TruckSpec(
            name=truck.name,
            thing_name=f"{stage.race.id}-{stage.name}-{truck.name}",
            topic_prefix=topic_prefix(stage.race.id, truck.name, stage.name),
            telemetry_topic=telemetry_topic(stage.race.id, truck.name, stage.name),
            heartbeat_topic=heartbeat_topic(stage.race.id, truck.name, stage.name),
            lan=truck.lan,
            vpn_address=str(layout.vpn_truck_address(race_trucks.index(truck.name))),
            metric_namespace=f"truckctl/{stage.race.id}/{stage.name}/{truck.name}",
        )
        for truck in stage.trucks
    )
    return StackConfig(
        race_id=stage.race.id,
        race_name=stage.race.name,
        stage=stage.name,
        region=stage.cloud.region,
        layout=layout,
        vpn_port=stage.cloud.vpn_port,
        trucks=trucks,
        alert_emails=tuple(stage.alerts.email),
        delete_data=delete_data,
        vpn_private_key=pulumi.Output.secret(vpn_private_key),
    )


def check_wireguard_key(value: str) -> str:
    """A WireGuard key is 32 bytes, base64-encoded (44 characters)."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise pulumi.RunError("config vpnPrivateKey: expected a WireGuard private key (`wg genkey`)")
    return value


def wireguard_public_key(private_key: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    key = X25519PrivateKey.from_private_bytes(base64.b64decode(check_wireguard_key(private_key)))
    return base64.b64encode(key.public_key().public_bytes_raw()).decode()
