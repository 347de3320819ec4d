"""`truckctl status STAGE`: one holistic view of a stage, as the team's monitoring portal gives it.

Per truck and node: reachable over SSH (host keys pinned), key services active, last heartbeat and
last telemetry seen at the cloud side; the cloud tier's state and non-secret outputs; the stage
lock (this machine's, and the team lock on the gateways); the last run, whoever made it (the
shared history on the gateways merged with the local journal); drift last measured. Read-only: no
lock, no journal, nothing changed.

Fast by construction: one SSH call per node, all nodes at once, short timeouts (a gateway's call also
reads the team lock and the shared history there); one HTTP call to the lab's stand-in.
Healthy means every node reachable with every key service active, and (where the cloud side can be
read) every heartbeat and every truck's telemetry fresh.

Race-day diagnosis (issue 14, truckctl/ops): the probe of a gateway also reads the evidence its
agent keeps in /run/truck-ops/evidence.json (same SSH call, no extra round trip); the evidence, the
probes and the cloud side's view go through `ops.diagnose`, so `unhealthy` lists one line per root
cause (its symptoms under it in `incidents`) and only the symptoms no incident explains on their
own. Incidents the cloud side holds (the stand-in runs the same diagnosis on the evidence it
receives) are merged by id: their opening time is the cloud side's, and one that only the cloud
side sees is listed with `source: "cloud"`; its recently resolved ones are `incidents_recent`.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from truckctl.errors import TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle import history, journal, probe, teamlock, teamlock_node
from truckctl.lifecycle.lock import lock_status
from truckctl.lifecycle.probe import NodeProbe, NodeTarget, node_targets
from truckctl.lifecycle.status_model import (
    CloudStatus,
    EvidenceView,
    LastDrift,
    NodeRow,
    StageHealth,
    StatusReport,
    StreamView,
    TruckRow,
)
from truckctl.ops import diagnose as ops
from truckctl.ops import evidence as ops_evidence
from truckctl.ops import merge as ops_merge
from truckctl.ops.model import Diagnosis, Incident, Kind, Symptom
from truckctl.ops.topology import from_stage
from truckctl.project import Project
from truckctl.remote import Connection, KeptConnections
from truckctl.target import CloudSide, Target

if TYPE_CHECKING:
    from truckctl.config.model import Stage
    from truckctl.lifecycle.teamlock import GatewayLock, SharedRun

EVIDENCE_FILE = probe.EVIDENCE_FILE
INCIDENTS_RECENT_SHOWN = 20

Prober = Callable[[list[NodeTarget], Connection], list[NodeProbe]]


CloudReader = Callable[["Stage"], CloudSide]


# ---- probes ----------------------------------------------------------------------------------

def probe_nodes(nodes: list[NodeTarget], access: Connection) -> list[NodeProbe]:
    """One short SSH call per node, all at once: `systemctl is-active` of its key units (and, on a
    gateway, its agent's evidence, in the same call)."""
    return probe.probe_nodes(nodes, access, probe.SERVICES)


# ---- assembly (pure) -------------------------------------------------------------------------

def assemble(stage: Stage, target: Target, nodes: list[NodeTarget], probes: list[NodeProbe] | None,
             connection_note: str | None, cloud: CloudSide, now: float | None = None) -> StageHealth:
    """The stage's health from what was measured; `unhealthy` lists one line per root cause (the
    incidents, their symptoms under them) and each symptom no incident explains."""
    now = time.time() if now is None else now
    stale_after = float(stage.defaults.telemetry.stale_after_s)
    by_name = {p.name: p for p in probes or []}
    answered = cloud.seen is not None
    seen_trucks = (cloud.seen or {}).get("trucks", {})
    diagnosis, evidence_views, evidence = diagnose_stage(stage, nodes, probes, cloud, now)
    held, provisional, recovered, recent = cloud_incidents(cloud.seen)
    diagnosis = ops_merge.merge(from_stage(stage), diagnosis, held, provisional, recovered, evidence, now)
    incidents = diagnosis.incidents
    trucks = []
    for truck in stage.trucks:
        # the stand-in's view of this truck (None: not read; {}: it answered, knowing nothing of this truck)
        truck_seen = seen_trucks.get(truck.name, {}) if answered else None
        known = truck_seen is not None
        views = truck_seen or {}
        beats = views.get("heartbeats", {})
        rows = tuple(_node_row(n, by_name.get(n.name), StreamView.at_cloud(beats.get(n.name), stale_after, known))
                     for n in nodes if n.truck == truck.name)
        trucks.append(TruckRow(truck.name, StreamView.at_cloud(views.get("telemetry"), stale_after, known), rows,
                               evidence_views[truck.name], any(i.truck == truck.name for i in incidents)))
    unhealthy = [] if probes is not None else [f"no node could be probed: {connection_note}"]
    unhealthy += [i.summary() for i in incidents] + [s.text for s in diagnosis.unexplained]
    if not answered and target.cloud_side_required:
        unhealthy.append(f"cloud side: {cloud.note or 'the stand-in cannot be read'}")
    return StageHealth(stage.name, target.kind.value, stale_after, tuple(trucks),
                       CloudStatus(cloud.tier, cloud.note if not answered else None, (cloud.seen or {}).get("alerts")),
                       incidents, tuple(recent), tuple(unhealthy))


def _node_row(node: NodeTarget, probe: NodeProbe | None, heartbeat: StreamView) -> NodeRow:
    if probe is None:  # no way to reach any node: said once for all of them by `assemble`
        probe = NodeProbe(node.name, False, "not probed")
    return NodeRow(node.name, node.role, node.address, probe.reachable, probe.detail, probe.services, heartbeat)


# ---- diagnosis (pure: truckctl/ops) ----------------------------------------------------------

def _dict(value: Any) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _age(view: Any) -> ops.Stream:
    age = view.get("age_s") if isinstance(view, dict) else None
    return ops.Stream(float(age) if isinstance(age, int | float) and not isinstance(age, bool) else None)


def cloud_view(seen: JsonObject | None) -> ops.CloudView | None:
    """The stand-in's /status as the diagnosis reads it (None: the cloud side could not be read)."""
    if seen is None:
        return None
    trucks = _dict(seen.get("trucks"))
    telemetry, beats, evidence = {}, {}, {}
    for name, view in trucks.items():
        if not isinstance(view, dict):
            continue
        telemetry[name] = _age(view.get("telemetry"))
        heartbeats = view.get("heartbeats")
        beats.update({node: _age(v) for node, v in (heartbeats.items() if isinstance(heartbeats, dict) else ())})
        if isinstance(view.get("evidence"), dict):  # a stand-in that tracks the gateways' evidence
            evidence[name] = _age(view["evidence"])
    return ops.CloudView(telemetry, beats, evidence)


def _evidence(stage: Stage, probes: dict[str, NodeProbe], seen: JsonObject | None
              ) -> tuple[dict[str, ops_evidence.GatewayEvidence | ops_evidence.BadEvidence], dict[str, EvidenceView],
                         dict[str, float]]:
    """Each truck's gateway evidence: read from the gateway by the probe, else the cloud side's copy;
    and its age when it was read (a probe's answer is judged when it came, not when the slowest did)."""
    found: dict[str, ops_evidence.GatewayEvidence | ops_evidence.BadEvidence] = {}
    state: dict[str, EvidenceView] = {}
    ages: dict[str, float] = {}
    trucks = _dict((seen or {}).get("trucks"))
    for truck in stage.trucks:
        gateway = stage.gateway(truck).name
        probe = probes.get(gateway)
        raw, source = (probe.evidence, "gateway") if probe is not None and probe.evidence else (None, None)
        if raw is None:
            held = _dict(trucks.get(truck.name)).get("evidence")
            if isinstance(held, dict) and held.get("document") is not None:
                raw, source = json.dumps(held["document"]), "cloud"
                age = held.get("age_s")  # how long before the stand-in answered it had received it
                if isinstance(age, int | float) and not isinstance(age, bool):
                    ages[truck.name] = float(age)
        if raw is None:
            state[truck.name] = EvidenceView("absent")
            continue
        parsed = ops_evidence.parse(raw, truck.name, gateway)
        found[truck.name] = parsed
        if source == "gateway" and probe is not None and probe.read_at is not None \
                and isinstance(parsed, ops_evidence.GatewayEvidence):
            ages[truck.name] = probe.read_at - parsed.ts
        elif isinstance(parsed, ops_evidence.BadEvidence):
            ages.pop(truck.name, None)
        state[truck.name] = (EvidenceView("bad", source, reason=parsed.reason)
                             if isinstance(parsed, ops_evidence.BadEvidence) else
                             EvidenceView("ok", source, ts=parsed.ts, seq=parsed.seq))
    return found, state, ages


def diagnose_stage(stage: Stage, nodes: list[NodeTarget], probes: list[NodeProbe] | None, cloud: CloudSide,
                   now: float) -> tuple[Diagnosis, dict[str, EvidenceView],
                                        dict[str, ops_evidence.GatewayEvidence | ops_evidence.BadEvidence]]:
    by_name = {p.name: p for p in probes or []}
    evidence, state, ages = _evidence(stage, by_name, cloud.seen)
    checks = None if probes is None else {
        p.name: ops.NodeCheck(p.reachable, p.detail, dict(p.services), p.detail == probe.SERVICES.timeout_detail)
        for p in probes}
    observations = ops.Observations(now, evidence, checks, cloud_view(cloud.seen), evidence_age_s=ages)
    return ops.diagnose(from_stage(stage), observations), state, evidence


def _held(value: Any) -> Incident | None:
    """An incident as the cloud side reported it (data: checked, bounded, never trusted to be well formed)."""
    if not isinstance(value, dict):
        return None
    try:
        kind = Kind(str(value.get("kind")))
        truck = str(value["truck"])[:64]
        symptoms = tuple(Symptom(str(s.get("key"))[:120], truck, s.get("node") if isinstance(s.get("node"), str)
                                 else None, str(s.get("text"))[:300])
                         for s in (value.get("symptoms") or [])[:64] if isinstance(s, dict))
        text = [str(line)[:300] for line in (value.get("evidence") or [])[:16]]
        node = value.get("node") if isinstance(value.get("node"), str) else None
        address = value.get("address") if isinstance(value.get("address"), str) else None
        opened = value.get("opened") if isinstance(value.get("opened"), int | float) else None
        resolved = value.get("resolved") if isinstance(value.get("resolved"), int | float) else None
        return Incident(kind, truck, str(value.get("hop"))[:120], node, address, tuple(text), symptoms,
                        opened, resolved, "cloud")
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def cloud_incidents(seen: JsonObject | None
                    ) -> tuple[list[Incident], set[str], dict[tuple[str, Kind], float], list[Incident]]:
    """What the cloud side holds: its open incidents, the ids of those opened from silence alone, when
    it last resolved each (truck, kind), and its recently resolved ones (the newest shown)."""
    held = _dict((seen or {}).get("incidents"))
    raw_open = _list(held.get("open"))[:100]
    opened = [i for i in map(_held, raw_open) if i is not None]
    provisional = {i.id for i, raw in zip(opened, [r for r in raw_open if _held(r) is not None], strict=True)
                   if raw.get("provisional") is True}
    recent = [i for i in map(_held, _list(held.get("recent"))[:100]) if i is not None]
    recovered: dict[tuple[str, Kind], float] = {}
    for incident in recent:
        if incident.resolved is not None:
            key = (incident.truck, incident.kind)
            recovered[key] = max(recovered.get(key, 0.0), incident.resolved)
    return opened, provisional, recovered, recent[:INCIDENTS_RECENT_SHOWN]


# ---- runs, lock, drift -----------------------------------------------------------------------

def last_drift(project: Project, stage: str) -> LastDrift | None:
    """The newest `drift` run: when, how it ended, and whether drift was found (its summary's result)."""
    run = journal.last_run(project, stage, "drift")
    if run is None:
        return None
    found: bool | None = None
    try:
        summary = json.loads((journal.runs_dir(project) / str(run["run_id"]) / "summary.json").read_text())
        result = summary.get("result") or {}
        value = result.get("drift")
        found = (value and not result.get("fixed")) if isinstance(value, bool) else None
    except (OSError, ValueError, AttributeError):
        pass
    return LastDrift(run["run_id"], run["started"], run["status"], run["exit_code"], found)


# ---- the command -----------------------------------------------------------------------------

def status(target: Target, stage_name: str, *, prober: Prober | None = None,
           cloud_reader: CloudReader | None = None, kept: KeptConnections | None = None) -> StatusReport:
    """Measure everything at once and assemble the report (prober and cloud_reader: tests swap them).

    `kept`: a caller that measures again and again (`--watch`, the portal) probes the nodes over one SSH
    master per node (probe.probe_nodes says what happens when one goes silent); the gateways' team reads
    ride on their probes, so they share that master too."""
    from truckctl.config.loader import load_stage

    project = target.project
    stage = load_stage(project, stage_name)
    started = time.monotonic()
    nodes = node_targets(stage)
    connection_note: str | None = None
    try:
        access: Connection | None = target.connection(stage)
    except TruckctlError as exc:
        access, connection_note = None, str(exc)
    probe_access = kept.over(access) if kept is not None and access is not None else access
    if probe_access is not None:
        nodes = with_team_reads(stage.name, nodes, sudo=probe_access.user != "root")
    prober, cloud_reader = prober or probe_nodes, cloud_reader or target.read_cloud
    with ThreadPoolExecutor(max_workers=2) as pool:  # the nodes and the cloud side at once
        probes_future = pool.submit(prober, nodes, probe_access) if probe_access is not None else None
        cloud_future = pool.submit(cloud_reader, stage)
        # this machine's own records are read while the nodes answer
        newest = journal.last_run(project, stage.name)
        local_lock, drift = lock_status(project, stage.name), last_drift(project, stage.name)
        probes = probes_future.result() if probes_future is not None else None
        cloud = cloud_future.result()
    team = team_view(stage, probes) if probes is not None else TeamView()
    health = assemble(stage, target, nodes, probes, connection_note, cloud)
    runs = history.merge([newest] if newest is not None else [], team.shared_runs)
    return StatusReport(health, lock=local_lock or team_lock_holder(team.locks),
                        team_lock=tuple(team.locks), last_run=runs[0] if runs else None, shared_runs=team.shared_runs,
                        drift=drift, checked_at=time.time(), took_s=round(time.monotonic() - started, 2))


@dataclass(frozen=True)
class TeamView:
    """What the stage's gateways say: the team lock on each, and the shared history (None: not read)."""

    locks: list[GatewayLock] = field(default_factory=list)
    shared: history.SharedHistory | None = None

    @property
    def shared_runs(self) -> tuple[SharedRun, ...]:
        return self.shared.runs if self.shared is not None else ()


def with_team_reads(stage: str, nodes: list[NodeTarget], sudo: bool) -> list[NodeTarget]:
    """The nodes to probe, each gateway also asked for the team lock and the runs recorded there in its
    probe's SSH call (one handshake per gateway, not two); the answer's frame is fresh for this status."""
    read = probe.TeamRead(teamlock_node.node_command("team", stage, "-", teamlock.LEASE_S, sudo=sudo),
                          f"--truckctl-team-{secrets.token_hex(8)}--")
    return [replace(node, team_read=read) if node.gateway else node for node in nodes]


def team_view(stage: Stage, probes: list[NodeProbe]) -> TeamView:
    """The team lock on each gateway and the runs recorded there, from the gateways' probes."""
    by_name = {p.name: p for p in probes}
    answers: list[tuple[teamlock.Gateway, int, str]] = []
    gws = teamlock.gateways(stage)
    for gateway in gws:
        found = by_name.get(gateway.node)
        if found is None or not found.reachable:  # as SSH's own failure: the lock is unreachable, so is the history
            answers.append((gateway, 255, found.detail if found is not None else "not probed"))
        else:
            answers.append((gateway, *(found.team or (1, "no answer to the team read"))))
    locks, runs, failed = teamlock.team_of(stage.name, answers)
    return TeamView(locks, history.SharedHistory.of(gws, runs, failed))


def team_lock_holder(locks: Sequence[GatewayLock]) -> JsonObject | None:
    """The team lock as `status` shows a lock (the document's `lock`, shaped as this machine's lock is):
    who holds it, where, and when its lease ends."""
    held = [(lock, lock.holder) for lock in locks if lock.state == "held" and lock.holder is not None]
    if not held:
        return None
    first, holder = held[0]
    where = ", ".join(lock.gateway for lock, _ in held)
    return {**holder.model_dump(), "stale": False, "where": "gateway", "gateways": [lock.gateway for lock, _ in held],
            "description": f"{first.description} on {where}; lease ends in {first.expires_in_s} s unless renewed"}
