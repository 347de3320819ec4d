"""Prechecks: everything that must hold before a run changes anything, all reported at once.

Configuration valid (done by loading the stage); tools present and supported; every node
reachable over SSH with a known host key; clocks within bounds; no live address conflict on a
truck LAN; on aws, the pulumi CLI, credentials and the secrets passphrase.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from truckctl.config.model import Node, Stage, Truck
from truckctl.errors import Problem
from truckctl.lifecycle import probe
from truckctl.lifecycle.probe import NodeProbe, NodeTarget
from truckctl.remote import Connection
from truckctl.target import Target

MAX_CLOCK_SKEW_S = 2.0
ANSIBLE_SERIES = "2.19."


@dataclass
class PrecheckReport:
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def add(self, name: str, problems: list[Problem], **detail: Any) -> None:
        self.checks[name] = {"ok": not problems, **detail}
        self.problems += problems

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": self.checks}


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
                      ) -> tuple[list[Problem], dict[str, Any]]:
    """Ask each truck LAN who answers for our addresses; anything but the node itself is a conflict.
    `scans` is scan_lans' result when it already ran (beside the SSH probes)."""
    expected = {p.address: p.mac for p in probes if p.mac}
    problems: list[Problem] = []
    seen: dict[str, Any] = {}
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


def check_hops(access: Connection, first_node: str) -> tuple[list[Problem], list[dict[str, Any]]]:
    """The management path hop by hop, in order: the first that fails is named (unreachable, host key
    changed, auth refused, forwarding refused); the hops after it are not tried."""
    from truckctl.management import probe_hops

    probes = probe_hops(access, first_node)
    rows = [{"hop": p.hop.name, "address": f"{p.hop.host}:{p.hop.port}", "user": p.hop.user, "ok": p.ok,
             "detail": p.detail} for p in probes]
    problems = [Problem("hop-failed", f"management path: {p.hop.describe()} failed: {p.detail}", p.hop.name)
                for p in probes if not p.ok]
    return problems, rows


def run_prechecks(stage: Stage, target: Target, access: Connection | None,
                  nodes: list[tuple[Truck, Node]] | None = None) -> PrecheckReport:
    report = PrecheckReport()
    report.add("configuration", [], stage=stage.name)
    own = target.prechecks(stage)  # the target's: its tools (aws: pulumi), its credentials
    report.add("tools", check_tools() + own.pop("tools", []))
    for name, problems in own.items():
        report.add(name, problems)
    chosen = nodes if nodes is not None else stage.nodes()
    if access is not None and access.hops and chosen:
        hop_problems, hops = check_hops(access, str(chosen[0][1].address))
        report.add("management-path", hop_problems, hops=hops)
        if hop_problems:  # every node is behind the hop that failed: that hop is the problem
            return report
    if access is not None and chosen:
        with ThreadPoolExecutor(max_workers=1) as pool:  # the ARP window overlaps the SSH probes
            scans = pool.submit(scan_lans, stage) if os.geteuid() == 0 else None
            probes = probe_nodes(chosen, access)
            scanned = scans.result() if scans is not None else None
        by_node = {p.name: {"address": p.address, "reachable": p.reachable, "detail": p.detail,
                            "clock_skew_s": p.skew_s} for p in probes}
        report.add("ssh", ssh_problems(probes), nodes=by_node)
        report.add("clock", clock_problems(probes), max_skew_s=MAX_CLOCK_SKEW_S)
        conflicts, seen = address_conflicts(stage, probes, scanned)
        report.add("address-conflicts", conflicts, answers=seen)
    return report
