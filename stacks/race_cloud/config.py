"""The race stack's configuration, derived from the validated race and the day's `Stage` (never a
hand-edited twin). What lives the race (trucks, names) carries no stage; the day is `stage` and `today`."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from ipaddress import IPv4Network

import pulumi

from truckctl.cloud.outputs import heartbeat_topic, telemetry_topic, topic_prefix
from truckctl.config.addressing import CloudLayout, cloud_layout
from truckctl.config.model import Race, Stage

MQTT_PORT = 8883  # AWS IoT Core MQTT over TLS with client certificates


@dataclass(frozen=True)
class TruckSpec:
    """A truck of the race: its identity at the ingest lasts the race (no stage in any of it)."""

    name: str
    thing_name: str  # also the MQTT client id: one connection per truck bridge
    topic_prefix: str  # race/truck: the thing name with "/" for "-" (the IoT policy rule checks it)
    telemetry_topic: str
    heartbeat_topic: str
    vpn_address: str
    metric_namespace: str  # per-truck CloudWatch namespace (IoT metric actions carry no dimensions)
    certificate_generation: int = 0  # raised on purpose by `truckctl rotate-cert`, never by a stage move


@dataclass(frozen=True)
class DayTruck:
    """A truck in the day's tech zone, with the day's LAN (a stage may move a truck to another LAN)."""

    name: str
    lan: IPv4Network


@dataclass(frozen=True)
class StackConfig:
    race_id: str
    race_name: str
    region: str
    layout: CloudLayout
    vpn_port: int
    trucks: tuple[TruckSpec, ...]  # every truck of the race
    stages: tuple[str, ...]  # every stage of the race (the lake's stage partitions)
    alert_emails: tuple[str, ...]
    delete_data: bool
    vpn_private_key: pulumi.Output[str]  # always a Pulumi secret
    stage: str | None = None  # the day: None between stages (the race cloud without a tech zone)
    today: tuple[DayTruck, ...] = ()  # the trucks in the day's tech zone

    def name(self, suffix: str) -> str:
        """Physical names carry the race, never the stage: the resources live the whole race."""
        return f"{self.race_id}-{suffix}"

    def ident(self, suffix: str) -> str:
        """Names for services that allow only [A-Za-z0-9_] (Glue, IoT rules)."""
        return self.name(suffix).replace("-", "_")

    @property
    def tags(self) -> dict[str, str]:
        # No stage tag: a default tag on every resource would make each morning's move touch them all.
        return {"truckctl-race": self.race_id, "managed-by": "truckctl"}


def truck_spec(race: Race, truck: str, layout: CloudLayout, generation: int = 0) -> TruckSpec:
    """`race.trucks` order gives each truck its tunnel address for the whole race."""
    index = [t.name for t in race.trucks].index(truck)
    return TruckSpec(
        name=truck,
        thing_name=f"{race.race.id}-{truck}",
        topic_prefix=topic_prefix(race.race.id, truck),
        telemetry_topic=telemetry_topic(race.race.id, truck),
        heartbeat_topic=heartbeat_topic(race.race.id, truck),
        vpn_address=str(layout.vpn_truck_address(index)),
        metric_namespace=f"truckctl/{race.race.id}/{truck}",
        certificate_generation=generation,
    )


def from_race(race: Race, stage_names: list[str], *, stage: Stage | None, delete_data: bool,
              vpn_private_key: pulumi.Output[str], generations: dict[str, int] | None = None) -> StackConfig:
    """The race stack's configuration; `stage` is the day it is moved to (None: no tech zone today)."""
    layout = cloud_layout(race.cloud.cidr)
    generations = generations or {}
    return StackConfig(
        race_id=race.race.id,
        race_name=race.race.name,
        region=race.cloud.region,
        layout=layout,
        vpn_port=race.cloud.vpn_port,
        trucks=tuple(truck_spec(race, t.name, layout, generations.get(t.name, 0)) for t in race.trucks),
        stages=tuple(stage_names),
        alert_emails=tuple(race.alerts.email),
        delete_data=delete_data,
        vpn_private_key=pulumi.Output.secret(vpn_private_key),
        stage=stage.name if stage is not None else None,
        today=tuple(DayTruck(t.name, t.lan) for t in stage.trucks) if stage is not None else (),
    )


def parse_generations(raw: str | None) -> dict[str, int]:
    """Config `certificateGenerations`: a JSON object truck -> generation (0, or absent, is the first)."""
    import json

    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                             and v >= 0 for k, v in data.items()):
        raise pulumi.RunError("config certificateGenerations: expected a JSON object of truck name -> "
                              "generation (a whole number >= 0)")
    return dict(data)


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
