"""The `Target` protocol: what the lifecycle asks of the place a stage runs, and the choices of the CLI.

A target owns how the nodes are reached (connection, pinned host keys), the cloud tier's
plan / apply (the race's one cloud moved to the stage) / drift / end of the day / destroy / outputs,
revoking the trucks' identities, reading the cloud side
for status, and what its teardown keeps. The lifecycle never asks which target it has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.jsondoc import JsonObject

if TYPE_CHECKING:
    from truckctl.cloud.engine import CloudEvent, OperationResult
    from truckctl.cloud.outputs import CloudOutputs
    from truckctl.config.model import Stage
    from truckctl.lifecycle.steps import StepResult
    from truckctl.lifecycle.webhttp import ClientTls
    from truckctl.project import Project
    from truckctl.remote import Connection


class TargetKind(StrEnum):
    """`--target`: lab (simulated trucks, offline cloud plan, cloud stand-in) or aws (real trucks, Pulumi)."""

    lab = "lab"
    aws = "aws"


class Tier(StrEnum):
    """`--tier`: which tier `up` converges."""

    cloud = "cloud"
    truck = "truck"
    all = "all"

    @property
    def wants_cloud(self) -> bool:
        return self is not Tier.truck

    @property
    def wants_truck(self) -> bool:
        return self is not Tier.cloud


def parse_kind(value: TargetKind | str) -> TargetKind:
    try:
        return TargetKind(value)
    except ValueError:
        raise TruckctlError.single("unknown-target", f"expected --target {' or '.join(TargetKind)}, got {value!r}",
                                   "--target", ExitCode.USAGE) from None


def parse_tier(value: Tier | str) -> Tier:
    try:
        return Tier(value)
    except ValueError:
        raise TruckctlError.single("unknown-tier", f"expected --tier cloud, truck or all, got {value!r}", "--tier",
                                   ExitCode.USAGE) from None


OnCloudEvent = Callable[["CloudEvent"], None]
Record = Callable[..., None]  # journal.event(kind, step, **fields)


@dataclass(frozen=True)
class TruckIdentity:
    """A truck's identity at the cloud side, as it may be shown: its thing and its certificate's reference."""

    thing: str
    certificate: str


@dataclass(frozen=True)
class PublicOutputs:
    """CloudOutputs without anything secret (the trucks' private keys) or bulky (PEMs)."""

    region: str
    endpoint: str  # host:port of the MQTT broker
    telemetry_stream: str
    datalake_bucket: str
    alert_topic: str
    alert_receiver: str | None  # only where it may be shown (the lab stand-in's; on aws its URL is a secret)
    vpn_endpoint: str
    trucks: dict[str, TruckIdentity]

    @classmethod
    def of(cls, outputs: CloudOutputs, receiver: str | None) -> PublicOutputs:
        return cls(outputs.region, f"{outputs.mqtt_host}:{outputs.mqtt_port}", outputs.telemetry_stream,
                   outputs.datalake_bucket, outputs.alert_topic_arn, receiver, outputs.vpn_endpoint,
                   {name: TruckIdentity(access.thing_name, access.certificate_ref)
                    for name, access in outputs.trucks.items()})

    def to_json(self) -> JsonObject:
        return {"region": self.region, "endpoint": self.endpoint, "telemetry_stream": self.telemetry_stream,
                "datalake_bucket": self.datalake_bucket, "alert_topic": self.alert_topic,
                "alert_receiver": self.alert_receiver, "vpn_endpoint": self.vpn_endpoint,
                "trucks": {name: {"thing": truck.thing, "certificate": truck.certificate}
                           for name, truck in self.trucks.items()}}


@dataclass(frozen=True)
class CloudTier:
    """The cloud tier as `status` shows it: its state, why it is what it is, its public outputs where they
    could be read, and (lab) whether the stand-in answers."""

    state: str
    note: str | None = None
    outputs: PublicOutputs | None = None
    standin: str | None = None  # lab only: "answering", "not answering", "down"

    def to_json(self) -> JsonObject:
        """Only the parts this tier has (the document has no key for the others)."""
        document: JsonObject = {"state": self.state}
        if self.note is not None:
            document["note"] = self.note
        if self.outputs is not None:
            document.update(self.outputs.to_json())
        if self.standin is not None:
            document["standin"] = self.standin
        return document


@dataclass(frozen=True)
class CloudSide:
    """What the cloud side knows: the tier's state and outputs, and (lab) the stand-in's /status."""

    tier: CloudTier
    seen: JsonObject | None  # the stand-in's /status document; None when it cannot be read
    note: str | None = None  # why `seen` is missing, said plainly


@dataclass(frozen=True)
class CloudApplied:
    """The cloud tier of `up`: the step's detail, and the outputs the truck tier takes when they come from
    this apply (aws: the stack's); None: the truck tier takes the target's own (`cloud_outputs`)."""

    step: StepResult
    outputs: CloudOutputs | None = None


@dataclass(frozen=True)
class TeardownStart:
    """What `down` finds before it takes the lock: whether anything is up at all, and the outputs whose
    secrets it scrubs and whose alert receiver it notifies (lab: the stand-in's)."""

    anything_up: bool
    outputs: CloudOutputs | None = None


class Target(Protocol):
    kind: TargetKind
    project: Project
    cloud_beside_truck: bool  # up: the cloud tier runs beside the truck tier (its outputs are not fed to it)
    revoke_first: bool  # down: the trucks' identities are revoked before anything else is touched
    identities_live_the_race: bool  # down: a day's down keeps the trucks' certificates (only --race revokes)
    cloud_side_required: bool  # status: a cloud side that cannot be read is unhealthy

    # -- before the lock and the journal: a missing tool writes nothing
    def preflight(self) -> None: ...

    # -- reaching the nodes and the cloud side
    def connection(self, stage: Stage) -> Connection: ...
    def cloud_outputs(self, stage: Stage) -> CloudOutputs: ...
    def cloud_source(self, stage: Stage) -> str: ...
    def alert_receiver(self, outputs: CloudOutputs) -> str | None: ...
    def receiver_tls(self) -> ClientTls | None: ...
    def read_cloud(self, stage: Stage) -> CloudSide: ...

    # -- up
    def prepare(self, stage: Stage) -> JsonObject | None: ...  # the lab's own `lab up` result; None: no step
    def prepare_message(self, stage: Stage) -> str: ...
    def prechecks(self, stage: Stage) -> dict[str, list[Problem]]: ...
    def cloud_up_message(self, stage: Stage) -> str: ...
    def cloud_up(self, stage: Stage, record: Record) -> CloudApplied: ...
    def smoke(self, stage: Stage, outputs: CloudOutputs, run_id: str) -> StepResult: ...

    # -- drift
    def drift_message(self) -> str: ...
    def cloud_drift(self, stage: Stage) -> StepResult: ...
    def cloud_fix(self, stage: Stage) -> OperationResult | None: ...  # None: no deployed cloud to fix

    # -- down
    def teardown_start(self, stage: Stage) -> TeardownStart: ...
    def revoke_message(self) -> str: ...
    def revoke(self, stage: Stage, record: Record) -> StepResult: ...
    def end_day_message(self, stage: Stage) -> str: ...
    def end_day(self, stage: Stage, record: Record) -> StepResult: ...  # the race's cloud leaves the stage
    def destroy_message(self, stage: Stage, delete_data: bool) -> str: ...
    def destroy(self, stage: Stage, delete_data: bool, record: Record, secret: Callable[[str], None]
                ) -> StepResult: ...
    def kept(self, stage: Stage, delete_data: bool, bucket: str | None, start: TeardownStart,
             cloud_destroyed: bool, race: bool = True) -> list[dict[str, str]]: ...
    def deleted(self, stage: Stage, delete_data: bool, bucket: str | None) -> list[dict[str, str]]: ...
    def delete_data_text(self, delete_data: bool) -> str: ...
    def delete_data_note(self, delete_data: bool) -> str | None: ...
