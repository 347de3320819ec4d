"""The `truckctl status` document as typed values: what `lifecycle.status` assembles, what the CLI's
renderer and the portal read, and (`StatusReport.to_json`) the `result` of `status --json` (schema 1:
its keys, their order and their values are a contract; the tests pin them).

`StageHealth` is what was measured (nodes, streams at the cloud side, the gateways' evidence, the
incidents); `StatusReport` adds what this machine and the gateways record (lock, runs, last drift
check) and the verdict over both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from truckctl.jsondoc import JsonObject
from truckctl.ops.model import Incident
from truckctl.target import CloudTier

if TYPE_CHECKING:
    from truckctl.lifecycle.teamlock import GatewayLock, SharedRun

OK: Final = "ok"
STALE: Final = "stale"
NONE: Final = "none"  # never seen
UNKNOWN: Final = "unknown"  # the cloud side could not be read

StreamState = Literal["ok", "stale", "none", "unknown"]
EvidenceState = Literal["ok", "bad", "absent"]


@dataclass(frozen=True)
class StreamView:
    """A stream (a truck's telemetry, a node's heartbeats) as seen at the cloud side: ok, stale (older than
    the stage's stale_after_s), none (never seen) or unknown (the cloud side could not be read). The
    other fields are the stand-in's own values, as it sent them."""

    state: StreamState
    last_seen: str | None = None
    age_s: float | None = None
    count: int | None = None
    alarm: bool | None = None  # None: the cloud side has no view of this stream (the document has no key)

    @classmethod
    def at_cloud(cls, view: JsonObject | None, stale_after_s: float, answered: bool) -> StreamView:
        """From the stand-in's view of the stream; `answered`: the stand-in answered at all (then a stream
        it does not know was never seen, rather than unknown)."""
        if view is None:
            return cls(NONE if answered else UNKNOWN)
        age = view.get("age_s")
        state: StreamState = NONE if age is None else (STALE if float(age) > stale_after_s else OK)
        return cls(state, view.get("last_seen"), age, view.get("count"), bool(view.get("alarm")))

    @property
    def silent(self) -> bool:
        """Stale or never seen: unhealthy (unknown is not: what cannot be measured is not broken)."""
        return self.state in (STALE, NONE)

    def to_json(self) -> JsonObject:
        document: JsonObject = {"state": self.state, "last_seen": self.last_seen, "age_s": self.age_s,
                                "count": self.count}
        if self.alarm is not None:
            document["alarm"] = self.alarm
        return document


@dataclass(frozen=True)
class NodeRow:
    """One node: reached over SSH or not (and why), its key units' states, its heartbeat at the cloud side."""

    name: str
    role: str
    address: str
    reachable: bool
    detail: str  # "ok", why it could not be reached, or "not probed"
    services: Mapping[str, str]  # unit -> `systemctl is-active` answer
    heartbeat: StreamView

    @property
    def healthy(self) -> bool:
        return self.reachable and all(state == "active" for state in self.services.values()) \
            and not self.heartbeat.silent

    def to_json(self) -> JsonObject:
        return {"name": self.name, "role": self.role, "address": self.address, "reachable": self.reachable,
                "detail": self.detail, "services": dict(self.services), "heartbeat": self.heartbeat.to_json(),
                "healthy": self.healthy}


@dataclass(frozen=True)
class EvidenceView:
    """A truck's gateway evidence as status read it: from the gateway or the cloud side's copy (`source`),
    well formed (its time and sequence number), bad (why), or absent."""

    state: EvidenceState
    source: str | None = None  # "gateway" or "cloud"
    reason: str | None = None  # bad: what is wrong with it
    ts: float | None = None  # ok: when the gateway's agent wrote it
    seq: int | None = None  # ok: its sequence number

    def to_json(self) -> JsonObject:
        document: JsonObject = {"state": self.state, "source": self.source}
        if self.state == "bad":
            document["reason"] = self.reason
        elif self.state == "ok":
            document.update(ts=self.ts, seq=self.seq)
        return document


@dataclass(frozen=True)
class TruckRow:
    """One truck: its telemetry at the cloud side, its nodes, its gateway's evidence."""

    name: str
    telemetry: StreamView
    nodes: tuple[NodeRow, ...]
    evidence: EvidenceView
    incident_open: bool = False  # an open incident names this truck

    @property
    def healthy(self) -> bool:
        return not self.telemetry.silent and all(node.healthy for node in self.nodes) and not self.incident_open

    def to_json(self) -> JsonObject:
        return {"name": self.name, "telemetry": self.telemetry.to_json(),
                "nodes": [node.to_json() for node in self.nodes], "healthy": self.healthy,
                "evidence": self.evidence.to_json()}


@dataclass(frozen=True)
class CloudStatus:
    """The cloud tier (the target's view of it) and what the stand-in said, or why it said nothing."""

    tier: CloudTier
    last_seen_note: str | None  # why the cloud side's view is missing (None: it was read)
    alerts: int | None  # alerts the stand-in received (None: unknown), as it counted them

    def to_json(self) -> JsonObject:
        return {**self.tier.to_json(), "last_seen_note": self.last_seen_note, "alerts": self.alerts}


@dataclass(frozen=True)
class StageHealth:
    """What was measured: `unhealthy` lists one line per root cause (the incidents, their symptoms under
    them) and each symptom no incident explains."""

    stage: str
    target: str
    stale_after_s: float
    trucks: tuple[TruckRow, ...]
    cloud: CloudStatus
    incidents: tuple[Incident, ...]
    incidents_recent: tuple[Incident, ...]  # resolved at the cloud side, newest first
    unhealthy: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return not self.unhealthy

    def to_json(self) -> JsonObject:
        return {"stage": self.stage, "target": self.target, "stale_after_s": self.stale_after_s,
                "trucks": [truck.to_json() for truck in self.trucks], "cloud": self.cloud.to_json(),
                "incidents": [i.as_dict() for i in self.incidents],
                "incidents_recent": [i.as_dict() for i in self.incidents_recent],
                "unhealthy": list(self.unhealthy), "healthy": self.healthy}


@dataclass(frozen=True)
class LastDrift:
    """The newest `drift` run: when, how it ended, and whether it found drift it did not fix (None: its
    summary does not say)."""

    run_id: str
    started: float
    status: str
    exit_code: int
    drift: bool | None

    def known(self, now: float) -> str | None:
        """"drift found N min ago" when this check found drift it did not fix."""
        if self.drift is not True:
            return None
        minutes = max(0, int((now - float(self.started)) // 60))
        return f"drift found {minutes} min ago (truckctl runs show {self.run_id})"

    def to_json(self) -> JsonObject:
        return {"run_id": self.run_id, "started": self.started, "status": self.status, "exit_code": self.exit_code,
                "drift": self.drift}


@dataclass(frozen=True)
class StatusReport:
    """The whole of `truckctl status`: what was measured, the stage lock, the runs, the last drift check.
    Known drift nobody fixed since is unhealthy, whatever else is fine."""

    health: StageHealth
    lock: dict[str, object] | None  # this machine's stage lock, else the team lock's holder (lock.py, teamlock)
    team_lock: tuple[GatewayLock, ...]  # each gateway's team lock as read there
    last_run: JsonObject | None  # the newest run, local or recorded on the gateways (journal records)
    shared_runs: tuple[SharedRun, ...]  # the runs recorded on the gateways
    drift: LastDrift | None
    checked_at: float
    took_s: float

    @property
    def known_drift(self) -> str | None:
        return self.drift.known(self.checked_at) if self.drift is not None else None

    @property
    def unhealthy(self) -> tuple[str, ...]:
        known = self.known_drift
        return self.health.unhealthy + ((known,) if known else ())

    @property
    def healthy(self) -> bool:
        return not self.unhealthy

    @property
    def verdict(self) -> str:
        """HEALTHY, UNHEALTHY, or the known drift's line when that is all that is wrong."""
        if self.healthy:
            return "HEALTHY"
        known = self.known_drift
        return known if known is not None and self.unhealthy == (known,) else "UNHEALTHY"

    def to_json(self) -> JsonObject:
        # `unhealthy` and `healthy` keep their place in the measured part's keys, with drift counted in
        return {**self.health.to_json(), "unhealthy": list(self.unhealthy), "healthy": self.healthy,
                "lock": None if self.lock is None else dict(self.lock),
                "team_lock": [lock.to_json() for lock in self.team_lock],
                "last_run": self.last_run, "shared_runs": [run.to_json() for run in self.shared_runs],
                "drift": None if self.drift is None else self.drift.to_json(), "checked_at": self.checked_at,
                "took_s": self.took_s, "verdict": self.verdict}
