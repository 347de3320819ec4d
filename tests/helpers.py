"""What tests share (import it; never import another package's conftest): the repository, lab-shaped
cloud outputs with throwaway private keys, and a fake connection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from tests.keys import throwaway_private_key
from truckctl.cloud.outputs import CloudOutputs, TruckAccess, topic_prefix
from truckctl.config.model import Stage
from truckctl.errors import TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle.plan import OfflineMove
from truckctl.lifecycle.steps import StepResult, StepSummary
from truckctl.project import Project
from truckctl.remote import Hop
from truckctl.targets.lab import LabTarget

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
    hops: tuple[Hop, ...] = ()  # direct, as inside the truck
    ssh_config: Path | None = None
    kept_in: Path | None = None


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


class FakeLabTarget(LabTarget):
    """The one fake target of the lifecycle's tests: the lab target with the lab itself faked. No node
    is built (`prepare` records "lab"), SSH goes through FakeConnection, the stand-in's outputs are
    `make_cloud`'s, and the offline plan, the smoke check, the stand-in's /status and the revocation
    answer from this object. `calls` records the steps in order."""

    def __init__(self, project: Project, *, lab_up: bool = True) -> None:
        super().__init__(project)
        self.calls: list[str] = []
        self.policy: list[dict[str, Any]] = []
        self.lab_up = lab_up
        self.standin: dict[str, Any] | None = None  # the stand-in's /status; None: it does not answer
        self.revoked: list[str] = []
        self.smoked: list[str] = []  # the trucks smoke-checked

    def prepare(self, stage: Stage) -> JsonObject | None:
        self.calls.append("lab")
        return {"stage": stage.name, "reused": True}

    def connection(self, stage: Stage) -> FakeConnection:  # type: ignore[override]
        return FakeConnection()

    def cloud_outputs(self, stage: Stage) -> CloudOutputs:
        if not self.lab_up:
            raise TruckctlError.single("lab-not-up", "no lab is up: run `truckctl lab up STAGE` first")
        return make_cloud(stage)

    def receiver_tls(self) -> None:
        return None

    def offline_plan(self, stage: Stage) -> OfflineMove:
        self.calls.append("cloud")
        return OfflineMove({"policy": self.policy, "policy_rules": ["s3-encrypted"],
                            "counts": {"total": 67, "by_component": {"network": 20}}})

    def smoke(self, stage: Stage, outputs: CloudOutputs, run_id: str) -> StepResult:
        self.calls.append("verify")
        self.smoked += [t.name for t in stage.trucks]
        return StepResult({"checked": True, "arrived_s": {t.name: 1.0 for t in stage.trucks}},
                          summary=StepSummary(trucks=len(stage.trucks)))

    def standin_status(self, outputs: CloudOutputs) -> dict[str, Any]:
        if self.standin is None:
            raise TruckctlError.single("standin-unreachable", "the cloud stand-in does not answer")
        return self.standin

    def revoke_truck(self, truck: str) -> dict[str, Any]:
        self.calls.append(f"revoke {truck}")
        self.revoked.append(truck)
        return {"truck": truck, "revoked": True}
