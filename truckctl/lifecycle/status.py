"""`truckctl status STAGE`: one holistic view of a stage, as the team's monitoring portal gives it.

Per truck and node: reachable over SSH (host keys pinned), key services active, last heartbeat and
last telemetry seen at the cloud side; the cloud tier's state and non-secret outputs; the stage
lock (this machine's, and the team lock on the gateways); the last run, whoever made it (the
shared history on the gateways merged with the local journal); drift last measured. Read-only: no
lock, no journal, nothing changed.

Fast by construction: one SSH call per node, all nodes at once, short timeouts; one HTTP call to
the lab's stand-in. Healthy means every node reachable with every key service active, and (where
the cloud side can be read) every heartbeat and every truck's telemetry fresh.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from truckctl.errors import TruckctlError
from truckctl.lifecycle import history, journal, probe
from truckctl.lifecycle.lock import lock_status
from truckctl.lifecycle.probe import UNKNOWN, NodeProbe, NodeTarget, node_targets
from truckctl.project import Project
from truckctl.remote import Connection
from truckctl.target import CloudSide, Target

if TYPE_CHECKING:
    from truckctl.config.model import Stage


OK, STALE, NONE = "ok", "stale", "none"


Prober = Callable[[list[NodeTarget], Connection], list[NodeProbe]]


CloudReader = Callable[["Stage"], CloudSide]


# ---- probes ----------------------------------------------------------------------------------

def probe_nodes(nodes: list[NodeTarget], access: Connection) -> list[NodeProbe]:
    """One short SSH call per node, all at once: `systemctl is-active` of its key units."""
    return probe.probe_nodes(nodes, access, probe.SERVICES)


# ---- assembly (pure) -------------------------------------------------------------------------

def stream(view: dict[str, Any] | None, stale_after_s: float) -> dict[str, Any]:
    """One stream as seen at the cloud side: ok, STALE (older than stale_after_s) or none yet."""
    if view is None:
        return {"state": UNKNOWN, "last_seen": None, "age_s": None, "count": None}
    age = view.get("age_s")
    state = NONE if age is None else (STALE if float(age) > stale_after_s else OK)
    return {"state": state, "last_seen": view.get("last_seen"), "age_s": age, "count": view.get("count"),
            "alarm": bool(view.get("alarm"))}


def assemble(stage: Stage, target: Target, nodes: list[NodeTarget], probes: list[NodeProbe] | None,
             connection_note: str | None, cloud: CloudSide) -> dict[str, Any]:
    """The status document from what was measured; `unhealthy` lists every finding, one line each."""
    stale_after = float(stage.defaults.telemetry.stale_after_s)
    by_name = {p.name: p for p in probes or []}
    seen_trucks = (cloud.seen or {}).get("trucks", {}) if cloud.seen is not None else None
    unhealthy: list[str] = [] if probes is not None else [f"no node could be probed: {connection_note}"]
    trucks = []
    for truck in stage.trucks:
        truck_seen = seen_trucks.get(truck.name, {}) if seen_trucks is not None else None
        telemetry = stream(truck_seen.get("telemetry") if truck_seen is not None else None, stale_after)
        if truck_seen is not None and telemetry["state"] == UNKNOWN:
            telemetry["state"] = NONE  # the stand-in answered but does not know this truck: nothing seen
        rows = []
        for node in (n for n in nodes if n.truck == truck.name):
            probe = by_name.get(node.name)
            heartbeat = stream((truck_seen or {}).get("heartbeats", {}).get(node.name), stale_after) \
                if truck_seen is not None else stream(None, stale_after)
            if truck_seen is not None and heartbeat["state"] == UNKNOWN:
                heartbeat["state"] = NONE
            row = _node_row(node, probe, connection_note, heartbeat, unhealthy)
            rows.append(row)
        if telemetry["state"] in (STALE, NONE):
            unhealthy.append(f"{truck.name}: telemetry {_stream_text(telemetry)} at the cloud side")
        trucks.append({"name": truck.name, "telemetry": telemetry, "nodes": rows,
                       "healthy": telemetry["state"] not in (STALE, NONE) and all(r["healthy"] for r in rows)})
    if cloud.seen is None and target.cloud_side_required:
        unhealthy.append(f"cloud side: {cloud.note or 'the stand-in cannot be read'}")
    return {"stage": stage.name, "target": target.kind.value, "stale_after_s": stale_after, "trucks": trucks,
            "cloud": {**cloud.tier, "last_seen_note": cloud.note if cloud.seen is None else None,
                      "alerts": (cloud.seen or {}).get("alerts")},
            "unhealthy": unhealthy, "healthy": not unhealthy}


def _node_row(node: NodeTarget, probe: NodeProbe | None, connection_note: str | None,
              heartbeat: dict[str, Any], unhealthy: list[str]) -> dict[str, Any]:
    if probe is None:  # no way to reach any node: said once for all of them by `assemble`
        probe = NodeProbe(node.name, False, "not probed")
    down = {unit: state for unit, state in probe.services.items() if state != "active"}
    if not probe.reachable and connection_note is None:
        unhealthy.append(f"{node.name}: not reachable over SSH ({probe.detail})")
    elif down:
        unhealthy.append(f"{node.name}: " + ", ".join(f"{unit} {state}" for unit, state in down.items()))
    if heartbeat["state"] in (STALE, NONE):
        unhealthy.append(f"{node.name}: heartbeat {_stream_text(heartbeat)} at the cloud side")
    return {"name": node.name, "role": node.role, "address": node.address, "reachable": probe.reachable,
            "detail": probe.detail, "services": probe.services, "heartbeat": heartbeat,
            "healthy": probe.reachable and not down and heartbeat["state"] not in (STALE, NONE)}


def _stream_text(view: dict[str, Any]) -> str:
    if view["state"] == NONE:
        return "never seen"
    return f"STALE (last seen {view['age_s']:.0f} s ago)"


# ---- runs, lock, drift -----------------------------------------------------------------------

def last_drift(project: Project, stage: str) -> dict[str, Any] | None:
    """The newest `drift` run: when, how it ended, and whether drift was found (its summary's result)."""
    for run in journal.list_runs(project, stage):
        if run["command"] != "drift":
            continue
        found: bool | None = None
        try:
            summary = json.loads((journal.runs_dir(project) / run["run_id"] / "summary.json").read_text())
            result = summary.get("result") or {}
            value = result.get("drift")
            found = (value and not result.get("fixed")) if isinstance(value, bool) else None
        except (OSError, ValueError):
            pass
        return {"run_id": run["run_id"], "started": run["started"], "status": run["status"],
                "exit_code": run["exit_code"], "drift": found}
    return None


# ---- the command -----------------------------------------------------------------------------

def status(target: Target, stage_name: str, *, prober: Prober | None = None,
           cloud_reader: CloudReader | None = None) -> dict[str, Any]:
    """Measure everything at once and assemble the document (prober and cloud_reader: tests swap them)."""
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
    prober, cloud_reader = prober or probe_nodes, cloud_reader or target.read_cloud
    with ThreadPoolExecutor(max_workers=2) as pool:  # the cloud side and the gateways read while nodes are probed
        cloud_future = pool.submit(cloud_reader, stage)
        team_future = pool.submit(team_view, target, stage) if access is not None else None
        probes = prober(nodes, access) if access is not None else None
        cloud = cloud_future.result()
        team = team_future.result() if team_future is not None else {"locks": [], "shared": None}
    document = assemble(stage, target, nodes, probes, connection_note, cloud)
    runs = history.merge(journal.list_runs(project, stage.name), (team["shared"] or {}).get("runs", []))
    document.update(lock=lock_status(project, stage.name) or team_lock_holder(team["locks"]),
                    team_lock=team["locks"], last_run=runs[0] if runs else None,
                    shared_runs=(team["shared"] or {}).get("runs", []),
                    drift=last_drift(project, stage.name), checked_at=time.time(),
                    took_s=round(time.monotonic() - started, 2))
    known = drift_known(document["drift"], document["checked_at"])
    if known:  # the last drift check found drift nobody fixed since: not HEALTHY, whatever else is fine
        document["unhealthy"].append(known)
        document["healthy"] = False
    document["verdict"] = "HEALTHY" if document["healthy"] else (
        known if document["unhealthy"] == [known] else "UNHEALTHY")
    return document


def team_view(target: Target, stage: Stage) -> dict[str, Any]:
    """The team lock on each gateway and the runs recorded there (never raises)."""
    from truckctl.lifecycle import teamlock

    try:
        transport = teamlock.transport(target, stage)
    except TruckctlError:
        return {"locks": [], "shared": None}
    gws = teamlock.gateways(stage)
    return {"locks": teamlock.read_locks(stage.name, gws, transport), "shared": history.shared_runs(target, stage)}


def team_lock_holder(locks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The team lock as `status` shows a lock: who holds it, where, and when its lease ends."""
    held = [lock for lock in locks if lock["state"] == "held" and lock["holder"]]
    if not held:
        return None
    first = held[0]
    where = ", ".join(lock["gateway"] for lock in held)
    return {**first["holder"], "stale": False, "where": "gateway", "gateways": [lock["gateway"] for lock in held],
            "description": f"{first['description']} on {where}; lease ends in {first['expires_in_s']} s unless renewed"}


def drift_known(drift: dict[str, Any] | None, now: float) -> str | None:
    """"drift found N min ago" when the newest drift check found drift it did not fix."""
    if not drift or drift["drift"] is not True:
        return None
    minutes = max(0, int((now - float(drift["started"])) // 60))
    return f"drift found {minutes} min ago (truckctl runs show {drift['run_id']})"
