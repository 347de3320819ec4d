"""What a truck-tier run will do, decided without running anything (tests assert on this)."""

from __future__ import annotations

import copy
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from truckctl.cloud.outputs import CloudOutputs
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.remote import Hop
from truckctl.target import TargetKind
from truckctl.truck.inventory import render_inventory
from truckctl.truck.vars import admin_vars, check_cloud_outputs, cloud_vars, secret_vars, target_vars

PLAYBOOK = "site.yml"
ANSIBLE_TIMEOUT_S = 15  # playbooks/ansible.cfg's `timeout`; each jump of the management path adds as much


class Connection(Protocol):
    """How to reach the nodes (the lab's LabConnection has this shape)."""

    @property
    def user(self) -> str: ...

    @property
    def private_key(self) -> Path | str: ...

    @property
    def known_hosts(self) -> Path | str: ...

    @property
    def hops(self) -> tuple[Hop, ...]: ...  # the management path's jumps (truckctl.management), or none

    @property
    def ssh_config(self) -> Path | None: ...  # the management path's ssh_config, or None: -F /dev/null



# The extra var that holds back what would interrupt telemetry (playbooks/site.yml).
HOLD_CUTS_VAR = "hold_telemetry_cuts"


@dataclass(frozen=True)
class RunPlan:
    """One ansible-playbook run: everything but the secrets' values is inspectable here."""

    project_dir: Path
    playbook: str
    inventory: JsonObject
    extravars: JsonObject
    limit: str | None
    check: bool
    forks: int
    hosts: list[str]
    secret_vars: JsonObject = field(repr=False)
    hold_cuts: bool = False  # the race is live: skip what would interrupt telemetry (extra var HOLD_CUTS_VAR)

    def cmdline(self, secrets_file: Path | None, extravars_file: Path | None = None) -> str:
        """ansible-playbook options. Check mode only works this way (not via extra vars). The extra vars
        come from a file written by `ansible_data.dump` (every string `!unsafe`), never inline."""
        args = ["--check", "--diff"] if self.check else []
        if extravars_file is not None:
            args += ["--extra-vars", f"@{extravars_file}"]
        if secrets_file is not None:
            args += ["--ask-vault-pass", "--extra-vars", f"@{secrets_file}"]
        return shlex.join(args)


def connection_vars(connection: Connection) -> JsonObject:
    """Inventory vars to reach the nodes the way truckctl's own SSH does (remote.py): no ssh_config (the
    user's or the system's), host keys checked against truckctl's known_hosts only, only the given key.
    Ansible's ssh plugin and Mitogen both split ansible_ssh_common_args with shlex, then ssh splits an
    option's value on spaces: each path is quoted for both (see `ssh_path_option`)."""
    key = ssh_path(connection.private_key, "the SSH private key")
    extra = {"ansible_timeout": ANSIBLE_TIMEOUT_S * (1 + len(connection.hops))} if connection.hops else {}
    return {**extra,
        "ansible_user": connection.user,
        "ansible_ssh_private_key_file": key,
        "ansible_ssh_common_args": " ".join([
            ssh_config_option(connection.ssh_config),
            ssh_path_option("UserKnownHostsFile", connection.known_hosts),
            "-o GlobalKnownHostsFile=/dev/null", "-o StrictHostKeyChecking=yes", "-o IdentitiesOnly=yes",
        ]),
    }


def ssh_config_option(config: Path | None) -> str:
    """`-F /dev/null` (no ssh_config at all), or the run's management-path file truckctl wrote."""
    return "-F /dev/null" if config is None else "-F " + shlex.quote(ssh_path(config, "the run's ssh_config"))


def ssh_path(path: Path | str, what: str) -> str:
    """A path ssh can take in an option. A double quote or a control character has no safe spelling there,
    and ssh expands %-tokens in key and known_hosts paths (but checks `-i`'s path unexpanded): refused."""
    text = str(path)
    if '"' in text or "%" in text or not text.isprintable():
        raise TruckctlError.single("unusable-path", f"{what} path {text!r} holds a double quote, a % or a control "
                                   "character, which SSH options cannot carry: move it", what)
    return text


def ssh_path_option(name: str, path: Path | str) -> str:
    """`-o 'Name="path"'`: double quotes for ssh's own option parser, shlex quoting for Ansible's split."""
    value = ssh_path(path, name).replace("\\", "\\\\")
    return "-o " + shlex.quote(f'{name}="{value}"')


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


def build_plan(project_dir: Path, stage: Stage, cloud: CloudOutputs, connection: Connection, target: TargetKind | str,
               limit: str | None = None, check: bool = False, exclude: tuple[str, ...] = (),
               hold_cuts: bool = False) -> RunPlan:
    """`exclude`: nodes to leave out (known unreachable); the run is then limited to the others.
    `hold_cuts`: the race is live, what would interrupt telemetry waits (playbooks/site.yml)."""
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
        extravars={**cloud_vars(stage, cloud), **target_vars(target), **admin_vars(connection.private_key),
                   **({HOLD_CUTS_VAR: True} if hold_cuts else {})},
        limit=limit,
        check=check,
        forks=max(1, len(hosts)),
        hosts=hosts,
        secret_vars=secret_vars(stage, cloud),
        hold_cuts=hold_cuts,
    )
