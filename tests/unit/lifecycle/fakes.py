"""Results the faked truck tier returns in the lifecycle's unit tests (shared by several test modules),
and the stage's gateways as directories for the team lock."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from truckctl.lifecycle.prechecks import PrecheckReport
from truckctl.lifecycle.probe import NodeProbe, NodeTarget
from truckctl.lifecycle.steps import StepResult
from truckctl.lifecycle.teamlock import Gateway, bounded_run
from truckctl.truck.events import Change, HostEvent, HostStats, TruckRunResult


def truck_result(check: bool, changes: list[Change], unreachable: bool = False) -> TruckRunResult:
    """A run over truck-a-gw (changed once per change) and truck-a-hv1 (unreachable if asked)."""
    hosts = {"truck-a-gw": HostStats(ok=30, changed=len(changes)),
             "truck-a-hv1": HostStats(ok=17, unreachable=int(unreachable))}
    return TruckRunResult(status="successful", rc=4 if unreachable else 0, check=check, hosts=hosts,
                          changes=changes, duration_s=1.0, artifacts_dir="/a",
                          failures=[HostEvent("truck-a-hv1", "Gathering", "unreachable", "timed out")]
                          if unreachable else [])


class GatewayDirs:
    """The team lock's node script run here, one directory per gateway standing for its /var/lib/truckctl
    (only the SSH hop is faked). `down` gateways answer as unreachable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, str]] = []
        self.down: set[str] = set()

    def dir(self, node: str) -> Path:
        return self.root / node

    def __call__(self, gateway: Gateway, argv: list[str], stdin: bytes) -> tuple[int, str]:
        self.calls.append((gateway.node, argv[4]))
        if gateway.node in self.down:
            return 255, "ssh: connect to host: No route to host"
        return bounded_run([*argv[:8], str(self.dir(gateway.node)), *argv[9:]], stdin)

    def answer_team(self, node: NodeTarget) -> tuple[int, str] | None:
        """What a gateway's status probe brings back of its team read: the command line it was given, run
        by the node script on this gateway's directory."""
        if node.team_read is None:
            return None
        argv = shlex.split(node.team_read.command)
        return self(Gateway(node.truck, node.name, node.address), argv[2:] if argv[:2] == ["sudo", "-n"] else argv,
                    b"")

    def answering_team(self, prober: Callable[[list[NodeTarget], Any], list[NodeProbe]]
                       ) -> Callable[[list[NodeTarget], Any], list[NodeProbe]]:
        """`prober`'s answers, each reachable gateway's with its team read answered from here."""
        def probe(nodes: list[NodeTarget], access: Any) -> list[NodeProbe]:
            targets = {node.name: node for node in nodes}
            return [replace(p, team=self.answer_team(targets[p.name])) if p.reachable else p
                    for p in prober(nodes, access)]
        return probe


def passed_prechecks(stage: Any, options: Any, connection: Any, target: Any, reports: list[PrecheckReport]
                     ) -> StepResult:
    """orchestrator.prechecks with every check passed (nothing probed)."""
    report = PrecheckReport()
    reports.append(report)
    return StepResult(report.as_dict())
