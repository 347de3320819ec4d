"""What a target provides to the lifecycle: how to reach the nodes and where the cloud side is.

`lab`: the lab's nodes (its SSH key and known_hosts) and its cloud stand-in's CloudOutputs.
`aws`: the real trucks (ops key and the known_hosts recorded for the race) and the Pulumi stack's
CloudOutputs. The truck tier and status cannot tell the two apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from truckctl.errors import ExitCode, TruckctlError
from truckctl.project import Project
from truckctl.remote import Connection

if TYPE_CHECKING:
    from truckctl.cloud.outputs import CloudOutputs
    from truckctl.config.model import Stage

TARGETS = ("lab", "aws")
SSH_USER_ENV = "TRUCKCTL_SSH_USER"
SSH_KEY_ENV = "TRUCKCTL_SSH_KEY"


@dataclass(frozen=True)
class TargetInputs:
    target: str
    connection: Connection
    cloud: CloudOutputs
    cloud_source: str  # said plainly in the output: where the cloud side comes from


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise TruckctlError.single("unknown-target", f"expected --target lab or aws, got {target!r}", "--target",
                                   ExitCode.USAGE)
    return target


def known_hosts_file(project: Project, stage: Stage) -> Path:
    """The real trucks' pinned host keys (one file per race, kept in the state directory)."""
    return project.state_dir / "known_hosts" / f"{stage.race.id}"


def connection(project: Project, stage: Stage, target: str) -> Connection:
    """How this operator reaches the nodes: directly, or through the management path when chosen."""
    from truckctl.management import apply

    return apply(project, stage, _direct_connection(project, stage, target))


def _direct_connection(project: Project, stage: Stage, target: str) -> Connection:
    if target == "lab":
        from truckctl.lab import api as lab_api

        return lab_api.connection(project)
    user = os.environ.get(SSH_USER_ENV) or (stage.ops_users[0].name if stage.ops_users else "root")
    key = Path(os.environ.get(SSH_KEY_ENV) or Path.home() / ".ssh" / "id_ed25519")
    known = known_hosts_file(project, stage)
    if not known.is_file():
        raise TruckctlError.single(
            "no-known-hosts", f"no pinned host keys for the trucks: put the nodes' host keys in {known} "
            "(ssh-keyscan over a trusted link) so host-key checking can stay on", project.display(known))
    return Connection(user, key, known)


def cloud_outputs(project: Project, stage: Stage, target: str) -> CloudOutputs:
    if target == "lab":
        from truckctl.lab import api as lab_api

        return lab_api.cloud_outputs(project, stage)
    from truckctl.cloud.engine import AwsEngine

    return AwsEngine(project, stage).outputs()


def inputs(project: Project, stage: Stage, target: str, cloud: CloudOutputs | None = None) -> TargetInputs:
    check_target(target)
    outputs = cloud if cloud is not None else cloud_outputs(project, stage, target)
    if target == "aws" and outputs.placeholder:
        raise TruckctlError.single("placeholder-outputs", "refusing to apply placeholder cloud outputs from an "
                                   "offline plan to real trucks")
    source = ("the lab's cloud stand-in (the cloud tier itself is the offline plan on this target)"
              if target == "lab" else f"Pulumi stack {stage.name} in {stage.cloud.region}")
    return TargetInputs(target, connection(project, stage, target), outputs, source)
