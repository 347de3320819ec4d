"""What a truck-tier run will do, decided without running anything (tests assert on this)."""

from __future__ import annotations

import copy
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from truckctl.cloud.outputs import CloudOutputs
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.inventory import render_inventory
from truckctl.truck.vars import admin_vars, check_cloud_outputs, cloud_vars, secret_vars, target_vars

PLAYBOOK = "site.yml"


class Connection(Protocol):
    """How to reach the nodes (the lab's LabConnection has this shape)."""

    @property
    def user(self) -> str: ...

    @property
    def private_key(self) -> Path | str: ...

    @property
    def known_hosts(self) -> Path | str: ...


@dataclass(frozen=True)
class RunPlan:
    """One ansible-playbook run: everything but the secrets' values is inspectable here."""

    project_dir: Path
    playbook: str
    inventory: dict[str, Any]
    extravars: dict[str, Any]
    limit: str | None
    check: bool
    forks: int
    hosts: list[str]
    secret_vars: dict[str, Any] = field(repr=False)

    def cmdline(self, secrets_file: Path | None) -> str:
        """ansible-playbook options. Check mode only works this way (not via extra vars)."""
        args = ["--check", "--diff"] if self.check else []
        if secrets_file is not None:
            args += ["--ask-vault-pass", "--extra-vars", f"@{secrets_file}"]
        return shlex.join(args)


def connection_vars(connection: Connection) -> dict[str, Any]:
    """Inventory vars to reach the nodes with host-key checking on against the given known_hosts."""
    return {
        "ansible_user": connection.user,
        "ansible_ssh_private_key_file": str(connection.private_key),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={connection.known_hosts} -o StrictHostKeyChecking=yes",
    }


def resolve_limit(stage: Stage, limit: str | None) -> list[str]:
    """The nodes a run touches; an unknown --limit is an error, never an empty run."""
    names = [node.name for _, node in stage.nodes()]
    if limit is None:
        return names
    if limit not in names:
        from truckctl.config.rules import suggest

        shown = repr(limit if len(limit) <= 40 else limit[:40] + "...")
        raise TruckctlError.single("unknown-node", f"no node {shown} in {stage.name}"
                                   + suggest(limit[:100], names), "--limit", ExitCode.USAGE)
    return [limit]


def build_plan(project_dir: Path, stage: Stage, cloud: CloudOutputs, connection: Connection, target: str,
               limit: str | None = None, check: bool = False, exclude: tuple[str, ...] = ()) -> RunPlan:
    """`exclude`: nodes to leave out (known unreachable); the run is then limited to the others."""
    check_cloud_outputs(stage, cloud, target)
    hosts = [h for h in resolve_limit(stage, limit) if h not in exclude]
    if not hosts:
        raise TruckctlError.single("no-nodes", "every node of the run is excluded: nothing to converge")
    if exclude:
        limit = ",".join(hosts)
    inventory = copy.deepcopy(render_inventory(stage))
    inventory["all"]["vars"].update(connection_vars(connection))
    return RunPlan(
        project_dir=project_dir,
        playbook=PLAYBOOK,
        inventory=inventory,
        extravars={**cloud_vars(stage, cloud), **target_vars(target), **admin_vars(connection.private_key)},
        limit=limit,
        check=check,
        forks=max(1, len(hosts)),
        hosts=hosts,
        secret_vars=secret_vars(stage, cloud),
    )
