"""What the portal shows, assembled from what truckctl already knows (pure: no web framework here).

One *snapshot* per poll, the same for every viewer:

- `status`: the very document `truckctl status STAGE --json` puts in its `result` (lifecycle/status.py),
  or None when it could not be measured (then `errors` says why, one line each, as the CLI would);
- `topology`: trucks, their LAN, nodes and uplink, and the cloud side, each with a state
  (ok / degraded / down / unknown) for the picture;
- `incidents`: race-day incidents (issue 14, truckctl/ops), `open` (one per root cause, each with its
  root cause, hop, evidence and the symptoms it explains) and `recent` (resolved at the cloud side,
  newest first), the very lists `status --json` gives (`incidents`, `incidents_recent`); added to
  schema 1 (a new key, nothing else changed);
- `problems`: every unhealthy item of `status`, attributed to its truck and node (an incident's line
  has kind "incident" and its `incident` id), plus the alarms the cloud side raised;
- `runs` (newest first), `drift` (the last drift run and its items), `lock`, `cloud` (outputs and the
  last recorded offline plan: no plan is run per poll);
- `sample`: this poll's telemetry and heartbeat rates per truck (messages/s at the cloud side), which
  the portal also keeps in a bounded history for the plots.

Every snapshot is scrubbed of the race's secrets (the values a run's journal hides) before any viewer
gets it: status quotes what nodes and the stand-in answered, which is not trusted to be free of them.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle import journal
from truckctl.lifecycle.history import merge
from truckctl.lifecycle.journal import Redactor
from truckctl.lifecycle.lock import lock_status
from truckctl.lifecycle.run import env_secrets

if TYPE_CHECKING:
    from truckctl.config.model import Stage
    from truckctl.lifecycle.status_model import NodeRow, StatusReport, StreamView
    from truckctl.project import Project

SCHEMA = 1
RUNS_SHOWN = 30
DRIFT_ITEMS_SHOWN = 50
HISTORY_S = 3600.0  # the plots cover the last hour at least
OK, DEGRADED, DOWN, UNKNOWN = "ok", "degraded", "down", "unknown"

StatusSource = Callable[[], "StatusReport"]


# ---- the stage of the day ----------------------------------------------------------------------

def stage_header(project: Project, stage_name: str) -> tuple[JsonObject | None, Stage | None, list[Problem]]:
    """Race and stage facts for the header, the stage model for the topology; problems if unloadable."""
    from truckctl.config.loader import load_stage
    from truckctl.lifecycle.configuration import stage_summary

    try:
        stage = load_stage(project, stage_name)
    except TruckctlError as exc:
        return None, None, exc.problems
    return {"race": stage.race.name, "race_id": stage.race.id, **stage_summary(stage)}, stage, []


def stage_of_the_day(project: Project, today: str | None = None) -> str | None:
    """The stage whose date is today, if the race has one (the portal's default STAGE)."""
    from truckctl.config.loader import load_stages

    today = today or time.strftime("%Y-%m-%d")
    try:
        return next((s.name for s in load_stages(project) if s.info.date.isoformat() == today), None)
    except TruckctlError:
        return None


# ---- topology ----------------------------------------------------------------------------------

def _node_state(row: NodeRow | None) -> str:
    if row is None:
        return UNKNOWN
    if not row.reachable:
        return UNKNOWN if row.detail == "not probed" else DOWN
    return OK if row.healthy else DEGRADED


def _stream_state(view: StreamView | None) -> str:
    state = view.state if view is not None else "unknown"
    return {"ok": OK, "stale": DOWN, "none": DOWN}.get(state, UNKNOWN)


def topology(stage: Stage, status: StatusReport | None) -> JsonObject:
    """The picture's data: the configuration's shape, coloured by what status measured."""
    trucks_seen = {t.name: t for t in (status.health.trucks if status is not None else ())}
    trucks = []
    for truck in stage.trucks:
        seen = trucks_seen.get(truck.name)
        rows = {r.name: r for r in (seen.nodes if seen is not None else ())}
        nodes = []
        for node in truck.nodes:
            row = rows.get(node.name)
            nodes.append({"name": node.name, "role": node.role, "address": str(node.address),
                          "gateway": stage.roles[node.role].gateway, "state": _node_state(row),
                          "heartbeat": _stream_state(row.heartbeat if row is not None else None)})
        uplink = _stream_state(seen.telemetry if seen is not None else None)
        states = {n["state"] for n in nodes} | {uplink}
        state = DOWN if DOWN in states else DEGRADED if DEGRADED in states else UNKNOWN if UNKNOWN in states else OK
        trucks.append({"name": truck.name, "lan": str(truck.lan), "vlans": [v.name for v in truck.vlans],
                       "uplink": {"kind": stage.defaults.uplink.kind, "state": uplink}, "nodes": nodes,
                       "state": state})
    tier = status.health.cloud.tier if status is not None else None
    standin = tier.standin if tier is not None else None
    label = tier.state if tier is not None else "unknown"
    cloud_state = (OK if standin.startswith("answering") else DOWN) if standin else (
        OK if label == "deployed" else UNKNOWN)
    endpoint = tier.outputs.endpoint if tier is not None and tier.outputs is not None else None
    return {"trucks": trucks, "cloud": {"state": cloud_state, "label": label, "endpoint": endpoint,
                                        "region": stage.cloud.region, "cidr": str(stage.cloud.cidr)}}


# ---- problems ----------------------------------------------------------------------------------

def problems(stage: Stage | None, status: StatusReport | None, errors: list[Problem]) -> list[JsonObject]:
    """Status's unhealthy items, each on its truck and node, and the alarms raised at the cloud side."""
    out: list[JsonObject] = [{"truck": None, "node": None, "kind": "portal", "text": p.line()} for p in errors]
    if status is None:
        return out
    owner: dict[str, tuple[str | None, str | None]] = {}
    for truck in status.health.trucks:
        owner[truck.name] = (truck.name, None)
        owner.update({n.name: (truck.name, n.name) for n in truck.nodes})
    incidents = {i.summary(): i for i in status.health.incidents}
    for line in status.unhealthy:
        if line in incidents:
            incident = incidents[line]
            out.append({"truck": incident.truck, "node": incident.node, "kind": "incident",
                        "incident": incident.id, "text": line})
            continue
        subject = line.split(":", 1)[0]
        on_truck, on_node = owner.get(subject, (None, None))
        kind = ("telemetry" if "telemetry" in line else "heartbeat" if "heartbeat" in line
                else "unreachable" if "not reachable" in line else "cloud" if subject == "cloud side"
                else "service" if on_node else "other")
        out.append({"truck": on_truck, "node": on_node, "kind": kind, "text": line})
    for truck in status.health.trucks:
        if truck.telemetry.alarm:
            out.append({"truck": truck.name, "node": None, "kind": "alarm",
                        "text": f"{truck.name}: telemetry-stopped alarm raised at the cloud side"})
        for node in truck.nodes:
            if node.heartbeat.alarm:
                out.append({"truck": truck.name, "node": node.name, "kind": "alarm",
                            "text": f"{node.name}: heartbeat-missing alarm raised at the cloud side"})
    return out


# ---- journal-backed parts ----------------------------------------------------------------------

def _summary(project: Project, run_id: str) -> JsonObject:
    try:
        data = json.loads((journal.runs_dir(project) / run_id / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def drift_view(project: Project, runs: list[JsonObject]) -> JsonObject | None:
    """The last drift run and what it found (items without their diffs: those are on the run's page)."""
    last = next((r for r in runs if r["command"] == "drift"), None)
    if last is None:
        return None
    result = _summary(project, last["run_id"]).get("result") or {}
    found = result.get("drift")
    listed = result.get("items")
    items: list[Any] = listed if isinstance(listed, list) else []
    return {**last, "drift": found if isinstance(found, bool) else None, "fixed": result.get("fixed"),
            "items": [{"tier": i.get("tier"), "node": i.get("node"), "item": str(i.get("item"))[:200]}
                      for i in items[:DRIFT_ITEMS_SHOWN] if isinstance(i, dict)],
            "items_total": len(items)}


def plan_view(project: Project, runs: list[JsonObject]) -> JsonObject | None:
    """The cloud step of the newest run that recorded one (an `up`'s offline plan or apply)."""
    for run in runs:
        if run["command"] != "up":
            continue
        cloud = (_summary(project, run["run_id"]).get("result") or {}).get("cloud")
        if isinstance(cloud, dict):
            keep = ("mode", "resources", "by_component", "policy_violations", "policy_rules")
            return {"run_id": run["run_id"], "started": run["started"], **{k: cloud[k] for k in keep if k in cloud}}
    return None


# ---- rates and their history -------------------------------------------------------------------

def counts(status: StatusReport | None) -> dict[str, tuple[int | None, int | None]]:
    """Per truck: (telemetry messages, heartbeats) counted so far at the cloud side (None: unknown)."""
    out: dict[str, tuple[int | None, int | None]] = {}
    for truck in status.health.trucks if status is not None else ():
        beats = [n.heartbeat.count for n in truck.nodes]
        known = [b for b in beats if isinstance(b, int)]
        out[truck.name] = (truck.telemetry.count, sum(known) if known else None)
    return out


def _rate(now: int | None, before: int | None, seconds: float) -> float | None:
    if now is None or before is None or seconds <= 0 or now < before:  # a restarted stand-in counts from 0
        return None
    return round((now - before) / seconds, 3)


@dataclass
class History:
    """The last hour (at least) of per-truck rates, bounded: one sample per poll, oldest dropped."""

    interval_s: float
    samples: deque[JsonObject] = field(default_factory=deque)
    _last: tuple[float, dict[str, tuple[int | None, int | None]]] | None = None

    def __post_init__(self) -> None:
        self.samples = deque(maxlen=int(HISTORY_S / max(self.interval_s, 0.1)) + 60)

    def add(self, at: float, status: StatusReport | None) -> JsonObject:
        now = counts(status)
        rates: dict[str, dict[str, float | None]] = {}
        for truck, (telemetry, beats) in now.items():
            before = self._last[1].get(truck, (None, None)) if self._last else (None, None)
            seconds = at - self._last[0] if self._last else 0.0
            rates[truck] = {"telemetry": _rate(telemetry, before[0], seconds),
                            "heartbeat": _rate(beats, before[1], seconds)}
        self._last = (at, now)
        sample = {"t": round(at, 3), "trucks": rates}
        self.samples.append(sample)
        return sample

    def as_list(self) -> list[JsonObject]:
        return list(self.samples)


# ---- one poll ----------------------------------------------------------------------------------

def snapshot(project: Project, stage_name: str, target: str, measure: StatusSource, history: History,
             log: Callable[[str], None] = lambda _line: None) -> JsonObject:
    """Measure once and assemble everything the page shows; never raises (a failure is shown instead)."""
    header, stage, errors = stage_header(project, stage_name)
    status: StatusReport | None = None
    code = ExitCode.INVALID_CONFIG if errors else ExitCode.ERROR
    if stage is not None:
        try:
            status = measure()
            code = ExitCode.OK if status.healthy else ExitCode.ERROR
        except TruckctlError as exc:
            errors, code = exc.problems, exc.exit_code
        except Exception as exc:  # a bug must not take the portal down, nor reach a viewer as a traceback
            log(f"status failed: {type(exc).__name__}")  # its text may quote a secret: the type only
            errors = [Problem("internal", "status could not be measured (an internal error: see the portal's log)")]
    runs: list[JsonObject] = []
    try:
        # every operator's runs: the local journal and those recorded on the gateways (read by status)
        runs = merge(journal.list_runs(project, stage_name if stage is not None else None),
                     status.shared_runs if status is not None else [])
    except OSError as exc:
        errors = [*errors, Problem("journal", f"the run journal cannot be read: {exc.strerror}")]
    now = time.time()
    shown = status.to_json() if status is not None else None  # the very `result` of `status --json`
    document = {
        "schema": SCHEMA, "stage": stage_name, "target": target, "at": round(now, 3), "exit_code": int(code),
        "header": header, "errors": [p.as_dict() for p in errors], "status": shown,
        "topology": topology(stage, status) if stage is not None else None,
        "incidents": {"open": shown["incidents"] if shown else [],
                      "recent": shown["incidents_recent"] if shown else []},
        "problems": problems(stage, status, errors),
        "runs": runs[:RUNS_SHOWN], "runs_total": len(runs),
        "drift": drift_view(project, runs),
        "lock": shown["lock"] if shown is not None else lock_status(project, stage_name) if stage else None,
        "cloud": {"status": shown["cloud"] if shown else None, "plan": plan_view(project, runs)},
        "sample": history.add(now, status),
    }
    # what the nodes, the stand-in or the cloud answered is not trusted to be free of the race's secrets:
    # scrubbed with the journal's own Redactor and the very values a run's journal hides
    return Redactor(env_secrets(stage)).scrub(document) if stage is not None else document
