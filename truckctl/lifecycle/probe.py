"""The one node probe: one SSH call per node, all nodes at once, host keys pinned.

Two questions are asked with it: the prechecks' (the node's clock and the MAC of the interface that
holds its address) and status' (`systemctl is-active` of the node's key units). Each is a `Query`:
its command, its timeouts and how its answer is read. A node's answer is data: it is parsed, never
trusted as a format (a compromised node may answer anything).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from truckctl.lifecycle.teamlock_node import REPLY_MAX
from truckctl.remote import Connection, end_kept, explain_ssh_failure, kept_master, read_bounded, ssh_argv

if TYPE_CHECKING:
    from truckctl.config.model import Stage

# The units the roles run (roles/hardening, time, monitoring on every node; telemetry and the
# gateway half of network on gateways). Debian names sshd's unit `ssh`.
NODE_SERVICES = ("ssh", "nftables", "chrony", "prometheus-node-exporter", "truck-heartbeat")
GATEWAY_SERVICES = ("mosquitto", "dnsmasq")
UNKNOWN = "unknown"
_SYSTEMD_STATE = re.compile(r"[a-z-]{1,20}")


@dataclass(frozen=True)
class NodeTarget:
    """One node to probe: where it is and which units it must run."""

    name: str
    truck: str
    role: str
    address: str
    services: tuple[str, ...]
    gateway: bool = False  # status' probe also reads the gateway agent's evidence (issue 14)
    team_read: TeamRead | None = None  # status' probe of a gateway also reads the team lock and history there


@dataclass(frozen=True)
class TeamRead:
    """The team lock's read on a gateway (teamlock_node's command line), asked in the same SSH call as the
    gateway's probe; its answer is framed by `mark`, fresh for each status, which no node can know ahead."""

    command: str
    mark: str


@dataclass(frozen=True)
class NodeProbe:
    """What one probe found. `services` (status): unit -> systemctl is-active answer; `skew_s` and
    `mac` (prechecks): the node's clock against this host's, the MAC holding its address."""

    name: str
    reachable: bool
    detail: str
    services: dict[str, str] = field(default_factory=dict)
    address: str = ""
    skew_s: float | None = None
    mac: str | None = None
    evidence: str | None = None  # a gateway's evidence document as read (untrusted; None: none there)
    team: tuple[int, str] | None = None  # the team read's exit code and output (None: not asked, not answered)
    read_at: float | None = None  # when the answer came (the evidence's age is taken then)


@dataclass(frozen=True)
class Query:
    """One question asked of every node: the command, SSH's connect timeout and the whole call's."""

    command: Callable[[NodeTarget], str]
    answer: Callable[[NodeTarget, str, float, float], NodeProbe]  # (node, stdout, sent at, answered at)
    connect_timeout_s: int
    timeout_s: float
    timeout_detail: str


def node_targets(stage: Stage) -> list[NodeTarget]:
    targets = []
    for truck, node in stage.nodes():
        gateway = stage.roles[node.role].gateway
        services = NODE_SERVICES + (GATEWAY_SERVICES if gateway else ())
        targets.append(NodeTarget(node.name, truck.name, node.role, str(node.address), services, gateway))
    return targets


# Over a kept master an answer takes tens of ms; one that has not come in this time (or an SSH failure) ends
# that master and the node is asked again on a fresh connection, whose answer (or ssh's reason) is the one
# reported: a cut link reads as it does without kept connections, at most this much later.
KEPT_ANSWER_S = 1.5


def probe_nodes(nodes: list[NodeTarget], access: Connection, query: Query) -> list[NodeProbe]:
    """Ask every node at once; a node that cannot be reached is said so, with ssh's own reason."""

    timeout_s = query.timeout_s * (1 + len(access.hops))  # each jump: one more handshake first

    def ask(node: NodeTarget, timeout: float) -> NodeProbe | None:
        before = time.time()
        said = read_bounded(ssh_argv(access, node.address, query.command(node), query.connect_timeout_s), b"",
                            ANSWER_MAX_BYTES, timeout)
        if said.too_long:
            return NodeProbe(node.name, True, f"answer longer than {ANSWER_MAX_BYTES} bytes",
                             dict.fromkeys(node.services, UNKNOWN), node.address)
        if said.rc is None:
            return None
        if said.rc == 255:  # ssh's own failure; the commands end with `true`
            return NodeProbe(node.name, False, explain_ssh_failure(said.stderr), address=node.address)
        return query.answer(node, said.stdout, before, time.time())

    def probe(node: NodeTarget) -> NodeProbe:
        if kept_master(access, node.address):
            answer = ask(node, KEPT_ANSWER_S)
            if answer is not None and answer.reachable:
                return answer
            end_kept(access, node.address)
        return ask(node, timeout_s) or NodeProbe(node.name, False, query.timeout_detail, address=node.address)

    if not nodes:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(nodes))) as pool:
        return list(pool.map(probe, nodes))


# ---- status: the key units -------------------------------------------------------------------

EVIDENCE_FILE = "/run/truck-ops/evidence.json"  # the gateway agent's (CONTRACT-14)
EVIDENCE_MARK = "--truck-ops-evidence--"
EVIDENCE_MAX_BYTES = 256 * 1024  # truckctl.ops.evidence.MAX_BYTES: one byte more is read, to see it is too big


# The most a probe's answer may be: the units' states, a gateway's team read and its agent's evidence.
ANSWER_MAX_BYTES = 4096 + REPLY_MAX + EVIDENCE_MAX_BYTES + 1


def _services_command(node: NodeTarget) -> str:
    command = "systemctl is-active " + " ".join(node.services) + "; true"
    if node.team_read is not None:  # the team lock and history in the same call: no handshake of their own
        command += (f"; echo {node.team_read.mark}; {node.team_read.command}; "
                    f"printf '\\n%s %s\\n' {node.team_read.mark} \"$?\"")
    if node.gateway:  # the agent's evidence in the same call: no extra round trip
        command += f"; echo {EVIDENCE_MARK}; head -c {EVIDENCE_MAX_BYTES + 1} {EVIDENCE_FILE} 2>/dev/null; true"
    return command


def _team_answer(read: TeamRead | None, stdout: str) -> tuple[str, tuple[int, str] | None]:
    """The team read's (exit code, output) cut out of a gateway's answer, and what is left of the answer
    (None: not asked, or its frame is not whole: the node never got to it or ended it early)."""
    if read is None:
        return stdout, None
    units, opened, rest = stdout.partition(read.mark + "\n")
    text, closed, tail = rest.partition("\n" + read.mark + " ")
    code, _, after = tail.partition("\n")
    if not opened or not closed or not code.isdigit():
        return units + (after if closed else ""), None
    return units + after, (int(code), text)


def _services_answer(node: NodeTarget, stdout: str, before: float, after: float) -> NodeProbe:
    stdout, team = _team_answer(node.team_read, stdout)
    units, marked, evidence = stdout.partition(EVIDENCE_MARK + "\n")
    found = evidence if marked and evidence.strip() else None
    answers = units.split()
    if len(answers) != len(node.services):
        return NodeProbe(node.name, True, f"unexpected answer from systemctl: {units.strip()[:120]!r}",
                         dict.fromkeys(node.services, UNKNOWN), node.address, evidence=found, read_at=after,
                         team=team)
    # a state systemd could give (active, failed, activating...) or "unknown"
    return NodeProbe(node.name, True, "ok", {unit: answer if _SYSTEMD_STATE.fullmatch(answer) else UNKNOWN
                                             for unit, answer in zip(node.services, answers, strict=True)},
                     node.address, evidence=found, read_at=after, team=team)


SERVICES_TIMEOUT_S = 4.0
SERVICES = Query(_services_command, _services_answer, connect_timeout_s=2, timeout_s=SERVICES_TIMEOUT_S,
                 timeout_detail=f"no answer within {SERVICES_TIMEOUT_S:.0f} s")


# ---- prechecks: the clock and the MAC holding the node's address -----------------------------

def _clock_command(node: NodeTarget) -> str:
    return ("date +%s.%N; for i in /sys/class/net/*; do "
            f"ip -4 -o addr show dev ${{i##*/}} 2>/dev/null | grep -q ' {node.address}/' && cat $i/address; "
            "done; true")


def skew_beyond(node_time: float, before: float, after: float) -> float:
    """How far the node's clock is at least off: its reading is compared with the interval in which it was
    taken (0 inside it). The midpoint would count a slow SSH set-up on a loaded host as skew (a connection
    that takes 4.5 s to open read as +2.2 s on every node)."""
    if node_time > after:
        return node_time - after
    if node_time < before:
        return node_time - before
    return 0.0


def _clock_answer(node: NodeTarget, stdout: str, before: float, after: float) -> NodeProbe:
    lines = stdout.split()
    try:
        skew = skew_beyond(float(lines[0]), before, after)
    except (ValueError, IndexError):
        return NodeProbe(node.name, True, "could not read the node's clock", address=node.address)
    return NodeProbe(node.name, True, "ok", address=node.address, skew_s=round(skew, 3),
                     mac=lines[1] if len(lines) > 1 else None)


CLOCK_SSH_TIMEOUT_S = 5
CLOCK = Query(_clock_command, _clock_answer, connect_timeout_s=CLOCK_SSH_TIMEOUT_S,
              timeout_s=CLOCK_SSH_TIMEOUT_S * 3, timeout_detail="SSH timed out")
