"""What tests share (import it; never import another package's conftest): the repository, lab-shaped
cloud outputs with throwaway private keys, and a fake connection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from tests.keys import throwaway_private_key
from truckctl.cloud.outputs import CloudOutputs, TruckAccess, topic_prefix
from truckctl.config.model import Stage

REPO = Path(__file__).resolve().parents[1]  # the repository under test
# A throwaway key per truck, made for this test session (distinct, so a test can tell which key went
# where); KEY_BODY is the line of each that must never show up in any output.
KEYS = {truck: throwaway_private_key() for truck in ("truck-a", "truck-b")}
KEY_BODY = {truck: key.splitlines()[1] for truck, key in KEYS.items()}


def fake_key(truck: str) -> str:
    return KEYS[truck]


@dataclass(frozen=True)
class FakeConnection:
    user: str = "root"
    private_key: Path = Path("/lab/ssh/id_ed25519")
    known_hosts: Path = Path("/lab/known_hosts")


def make_cloud(stage: Stage, **changes: object) -> CloudOutputs:
    trucks = {
        t.name: TruckAccess(thing_name=f"gdf27-{t.name}", client_id=f"gdf27-{t.name}",
                            topic_prefix=topic_prefix(stage.race.id, t.name),
                            certificate_pem=f"-----BEGIN CERTIFICATE-----\ncert-{t.name}\n-----END CERTIFICATE-----\n",
                            private_key_pem=SecretStr(fake_key(t.name)), certificate_ref=f"lab-serial:{t.name}")
        for t in stage.trucks
    }
    values: dict[str, object] = dict(
        target="lab", region="lab", mqtt_host="100.64.10.2", mqtt_port=8883,
        ca_pem="-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n", trucks=trucks,
        telemetry_stream="lab:standin/telemetry", datalake_bucket="lab:standin/datalake",
        alert_topic_arn="lab:standin/alerts", vpn_endpoint="100.64.10.2:51820",
        vpn_public_key="xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",
    )
    values.update(changes)
    return CloudOutputs.model_validate(values)
