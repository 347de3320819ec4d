"""Prechecks: everything that must hold before a run changes anything, all reported at once.

Configuration valid (done by loading the stage); tools present and supported; every node
reachable over SSH with a known host key; clocks within bounds; no live address conflict on a
truck LAN; on aws, the pulumi CLI, credentials and the secrets passphrase.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from importlib import metadata

from truckctl.config.model import Node, Stage, Truck
from truckctl.errors import Problem
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle import probe
from truckctl.lifecycle.probe import NodeProbe, NodeTarget
from truckctl.remote import Connection
from truckctl.target import Target

MAX_CLOCK_SKEW_S = 2.0
ANSIBLE_SERIES = "2.19."


# What ARP found on each truck LAN: truck -> address -> the MACs that answered, or why it was not scanned
# (or, without root, {"skipped": why}).
LanAnswers = Mapping[str, str | Mapping[str, list[str]]]


@dataclass(frozen=True)
class HopCheck:
    """One hop of the management path as the prechecks tried it."""

    hop: str
    address: str  # host:port
    user: str
    ok: bool
    detail: str

    def to_json(self) -> JsonObject:
        return {"hop": self.hop, "address": self.address, "user": self.user, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class NodeReach:
    """One node as the SSH probe found it."""

    address: str
    reachable: bool
    detail: str
    clock_skew_s: float | None

    def to_json(self) -> JsonObject:
        return {"address": self.address, "reachable": self.reachable, "detail": self.detail,
                "clock_skew_s": self.clock_skew_s}


@dataclass(frozen=True)
class Check:
    """One precheck: passed or not, and what it saw (a check has at most one of these)."""

    ok: bool = True
    stage: str | None = None  # configuration: the stage loaded
    hops: tuple[HopCheck, ...] | None = None  # management-path
    nodes: Mapping[str, NodeReach] | None = None  # ssh
    max_skew_s: float | None = None  # clock
    answers: LanAnswers | None = None  # address-conflicts

    def to_json(self) -> JsonObject:
        seen: JsonObject = {"ok": self.ok}
        if self.stage is not None:
            seen["stage"] = self.stage
        if self.hops is not None:
            seen["hops"] = [hop.to_json() for hop in self.hops]
        if self.nodes is not None:
            seen["nodes"] = {name: node.to_json() for name, node in self.nodes.items()}
        if self.max_skew_s is not None:
            seen["max_skew_s"] = self.max_skew_s
        if self.answers is not None:
            seen["answers"] = self.answers
        return seen


@dataclass
class PrecheckReport:
    checks: dict[str, Check] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def add(self, name: str, problems: list[Problem], seen: Check | None = None) -> None:
        self.checks[name] = replace(seen or Check(), ok=not problems)
        self.problems += problems

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unreachable(self) -> list[Problem]:
        return [p for p in self.problems if p.code == "node-unreachable"]

    def as_dict(self) -> JsonObject:
        return {"ok": self.ok, "checks": {name: check.to_json() for name, check in self.checks.items()}}


def check_tools() -> list[Problem]:
    problems = []
    try:
        version = metadata.version("ansible-core")
        if not version.startswith(ANSIBLE_SERIES):
            problems.append(Problem("tool-version", f"ansible-core {version} is installed, truckctl supports "
                                    f"{ANSIBLE_SERIES}x", "tools"))
    except metadata.PackageNotFoundError:
        problems.append(Problem("tool-missing", "ansible-core is not installed (pip install -e .)", "tools"))
    from truckctl.truck.paths import ansible_bin

    if not (ansible_bin() / "ansible-playbook").exists():
        problems.append(Problem("tool-missing", f"ansible-playbook not found in {ansible_bin()}", "tools"))
    if shutil.which("ssh") is None:
        problems.append(Problem("tool-missing", "the ssh client is not installed (apt-get install openssh-client)",
                                "tools"))
    return problems


def probe_nodes(nodes: list[tuple[Truck, Node]], access: Connection) -> list[NodeProbe]:
    """SSH to every node at once: host key pinned, clock read, MAC of the interface holding its address."""
    targets = [NodeTarget(node.name, truck.name, node.role, str(node.address), ()) for truck, node in nodes]
    return probe.probe_nodes(targets, access, probe.CLOCK)


def ssh_problems(probes: list[NodeProbe]) -> list[Problem]:
    return [Problem("node-unreachable", f"node {p.name} ({p.address}) is not reachable over SSH: {p.detail}",
                    p.name) for p in probes if not p.reachable]


def clock_problems(probes: list[NodeProbe]) -> list[Problem]:
    return [Problem("clock-skew", f"node {p.name} clock is {p.skew_s:+.2f} s off this host's "
                    f"(at most {MAX_CLOCK_SKEW_S} s allowed)", p.name)
            for p in probes if p.skew_s is not None and abs(p.skew_s) > MAX_CLOCK_SKEW_S]


def scan_lans(stage: Stage) -> dict[str, dict[str, set[str]]]:
    """Raw ARP on each truck LAN attached to this host: truck -> address -> MACs that answered (root only)."""
    from truckctl.lifecycle.arp import arp_scan, route_to

    lans = [(truck, route) for truck in stage.trucks if (route := route_to(str(truck.nodes[0].address)))]

    def scan(lan: tuple[Truck, tuple[str, str]]) -> dict[str, set[str]]:
        truck, (interface, source) = lan
        return arp_scan(interface, source, [str(n.address) for n in truck.nodes])

    # Each scan waits its full window for late or duplicate replies: one truck LAN at a time would
    # cost that window per truck, so the LANs are scanned at once.
    with ThreadPoolExecutor(max_workers=max(1, min(32, len(lans)))) as pool:
        return dict(zip([truck.name for truck, _ in lans], pool.map(scan, lans), strict=True))


def address_conflicts(stage: Stage, probes: list[NodeProbe], scans: dict[str, dict[str, set[str]]] | None = None
                      ) -> tuple[list[Problem], LanAnswers]:
    """Ask each truck LAN who answers for our addresses; anything but the node itself is a conflict.
    `scans` is scan_lans' result when it already ran (beside the SSH probes)."""
    expected = {p.address: p.mac for p in probes if p.mac}
    problems: list[Problem] = []
    seen: dict[str, str | Mapping[str, list[str]]] = {}
    if os.geteuid() != 0:
        return [], {"skipped": "needs root for raw ARP"}
    results = scans if scans is not None else scan_lans(stage)
    for truck in stage.trucks:
        if truck.name not in results:
            seen[truck.name] = "not on a LAN attached to this host"
            continue
        answers = results[truck.name]
        seen[truck.name] = {a: sorted(m) for a, m in answers.items()}
        for node in truck.nodes:
            address = str(node.address)
            macs = answers.get(address, set())
            mine = expected.get(address)
            foreign = sorted(m for m in macs if m != mine) if mine else (sorted(macs) if len(macs) > 1 else [])
            if foreign:
                problems.append(Problem(
                    "address-conflict",
                    f"address {address} of node {node.name} (truck {truck.name}) is also answered by MAC "
                    f"{', '.join(foreign)}" + (f"; the node's own MAC is {mine}" if mine else "")
                    + ": another host on this LAN uses our address", node.name))
    return problems, seen


def check_hops(access: Connection, first_node: str) -> tuple[list[Problem], tuple[HopCheck, ...]]:
    """The management path hop by hop, in order: the first that fails is named (unreachable, host key
    changed, auth refused, forwarding refused); the hops after it are not tried."""
    from truckctl.management import probe_hops

    probes = probe_hops(access, first_node)
    rows = tuple(HopCheck(p.hop.name, f"{p.hop.host}:{p.hop.port}", p.hop.user, p.ok, p.detail) for p in probes)
    problems = [Problem("hop-failed", f"management path: {p.hop.describe()} failed: {p.detail}", p.hop.name)
                for p in probes if not p.ok]
    return problems, rows


def run_prechecks(stage: Stage, target: Target, access: Connection | None,
                  nodes: list[tuple[Truck, Node]] | None = None) -> PrecheckReport:
    report = PrecheckReport()
    report.add("configuration", [], Check(stage=stage.name))
    own = target.prechecks(stage)  # the target's: its tools (aws: pulumi), its credentials
    report.add("tools", check_tools() + own.pop("tools", []))
    for name, problems in own.items():
        report.add(name, problems)
    chosen = nodes if nodes is not None else stage.nodes()
    if access is not None and access.hops and chosen:
        hop_problems, hops = check_hops(access, str(chosen[0][1].address))
        report.add("management-path", hop_problems, Check(hops=hops))
        if hop_problems:  # every node is behind the hop that failed: that hop is the problem
            return report
    if access is not None and chosen:
        with ThreadPoolExecutor(max_workers=1) as pool:  # the ARP window overlaps the SSH probes
            scans = pool.submit(scan_lans, stage) if os.geteuid() == 0 else None
            probes = probe_nodes(chosen, access)
            scanned = scans.result() if scans is not None else None
        by_node = {p.name: NodeReach(p.address, p.reachable, p.detail, p.skew_s) for p in probes}
        report.add("ssh", ssh_problems(probes), Check(nodes=by_node))
        report.add("clock", clock_problems(probes), Check(max_skew_s=MAX_CLOCK_SKEW_S))
        conflicts, seen = address_conflicts(stage, probes, scanned)
        report.add("address-conflicts", conflicts, Check(answers=seen))
    return report
