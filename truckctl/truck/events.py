"""ansible-runner events -> per-node progress callbacks and a run result."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from truckctl.jsondoc import JsonObject

Status = Literal["started", "ok", "changed", "failed", "unreachable", "skipped"]

_OUTCOMES: dict[str, Status] = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}

# A handler the run held back says so with a fact `<role>_held_back: <its name>` (playbooks/roles/*/handlers):
# a skipped result in the event stream does not say why it was skipped.
HELD_FACT_SUFFIX = "_held_back"


@dataclass(frozen=True)
class HostEvent:
    """One step of one node, as a progress display needs it."""

    host: str
    task: str
    status: Status
    message: str = ""


@dataclass
class HostStats:
    """Ansible's recap for one node (ok counts changed tasks too, as in Ansible)."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0

    @property
    def state(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        return "changed" if self.changed else "ok"


@dataclass(frozen=True)
class Change:
    """A change made, or in check mode one that would be made, with its diff when Ansible gave one."""

    host: str
    task: str
    diff: str = ""
    action: str = ""  # the module, e.g. truck_files
    items: tuple[dict[str, str], ...] = ()  # truck_files or truck_live_state drift items (kind, item, found...)
    handler: bool = False  # a handler's run: the consequence of another change, not a change of its own


@dataclass
class TruckRunResult:
    status: str  # ansible-runner's: successful, failed, timeout, canceled
    rc: int
    check: bool
    hosts: dict[str, HostStats]
    changes: list[Change]
    failures: list[HostEvent]
    duration_s: float
    artifacts_dir: str
    held: list[Change] = field(default_factory=list)  # handlers held back (hold_telemetry_cuts), as they said

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not any(h.failed or h.unreachable for h in self.hosts.values())

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts.values())

    def as_dict(self) -> JsonObject:
        return {
            "status": self.status,
            "rc": self.rc,
            "check": self.check,
            "ok": self.ok,
            "changed": self.changed,
            "hosts": {name: {**asdict(stats), "state": stats.state} for name, stats in self.hosts.items()},
            "changes": [asdict(c) for c in self.changes],
            "failures": [asdict(f) for f in self.failures],
            "held": [asdict(c) for c in self.held],
            "duration_s": round(self.duration_s, 2),
            "artifacts_dir": self.artifacts_dir,
        }


def render_diff(diff: Any) -> str:
    """Ansible's diff (a dict or a list of dicts with before/after or prepared) as unified text."""
    parts = diff if isinstance(diff, list) else [diff]
    out: list[str] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if "prepared" in part:
            out.append(str(part["prepared"]))
            continue
        before, after = part.get("before", ""), part.get("after", "")
        if isinstance(before, dict) or isinstance(after, dict):  # e.g. file state/mode changes
            before, after = _as_lines(before), _as_lines(after)
        out.extend(difflib.unified_diff(str(before).splitlines(keepends=True), str(after).splitlines(keepends=True),
                                        fromfile=str(part.get("before_header", "before")),
                                        tofile=str(part.get("after_header", "after"))))
    return "".join(out)


def _censored_change(res: JsonObject, stdout: str) -> bool:
    """A no_log task that changed something (the secret files): ansible-runner replaces its whole result with
    {"censored": ...}, `changed` included, so its own output line is what still says so."""
    return "censored" in res and re.search(r"(?m)^changed: \[", stdout) is not None


def _item(item: JsonObject) -> dict[str, Any]:
    """A module's drift item, its diff as unified text (truck_files gives Ansible's before/after form)."""
    diff = item.get("diff")
    return {**item, "diff": render_diff(diff)} if isinstance(diff, dict) else item


def _as_lines(value: Any) -> str:
    if isinstance(value, dict):
        return "".join(f"{k}: {v}\n" for k, v in sorted(value.items()))
    return str(value)


def _message(res: JsonObject) -> str:
    text = res.get("msg") or res.get("stderr") or ""
    return str(text).strip().splitlines()[0][:300] if text else ""


@dataclass
class EventCollector:
    """An ansible-runner `event_handler`: forwards progress, gathers what the result needs."""

    on_event: Callable[[HostEvent], None] = field(default=lambda event: None)
    hosts: dict[str, HostStats] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    failures: list[HostEvent] = field(default_factory=list)
    held: list[Change] = field(default_factory=list)
    recap_seen: bool = False
    handler_tasks: set[str] = field(default_factory=set)

    def __call__(self, event: JsonObject) -> bool:
        name = event.get("event", "")
        data = event.get("event_data") or {}
        if name == "playbook_on_stats":
            self._recap(data)
        elif name == "playbook_on_handler_task_start":
            self.handler_tasks.add(str(data.get("task_uuid", "")))
        elif name == "runner_on_start":
            self.on_event(HostEvent(data.get("host", ""), _task(data), "started"))
        elif name in _OUTCOMES:
            self._outcome(name, data, str(event.get("stdout", "")))
        return True  # keep every event in the artifacts: they are the run's durable record

    def _outcome(self, name: str, data: JsonObject, stdout: str) -> None:
        host, task, res = data.get("host", ""), _task(data), data.get("res") or {}
        self.hosts.setdefault(host, HostStats())
        status: Status = _OUTCOMES[name]
        if status == "ok" and (res.get("changed") or _censored_change(res, stdout)):
            status = "changed"
        if name == "runner_on_failed" and data.get("ignore_errors"):
            status = "ok"
        event = HostEvent(host, task, status, _message(res) if status in ("failed", "unreachable") else "")
        if status == "changed":
            action = str(data.get("resolved_action") or data.get("task_action") or "")
            items = tuple(_item(i) for i in res.get("drift") or [] if isinstance(i, dict))
            handler = (str(data.get("task_uuid", "")) in self.handler_tasks  # Mitogen's strategy sends no
                       or "/handlers/" in str(data.get("task_path", "")))  # handler start: the path says it
            self.changes.append(Change(host, task, self._diffs(res), action.rsplit(".", 1)[-1], items, handler))
        elif status in ("failed", "unreachable"):
            self.failures.append(event)
        elif status == "ok":
            facts = res.get("ansible_facts")
            self.held += [Change(host, str(name), action="set_fact", handler=True)
                          for key, name in (facts.items() if isinstance(facts, dict) else ())
                          if key.endswith(HELD_FACT_SUFFIX)]
        self.on_event(event)

    @staticmethod
    def _diffs(res: JsonObject) -> str:
        if "diff" in res:
            return render_diff(res["diff"])
        items = res.get("results") or []  # loops: one diff per changed item
        return "".join(render_diff(item["diff"]) for item in items
                       if isinstance(item, dict) and item.get("changed") and "diff" in item)

    def _recap(self, data: JsonObject) -> None:
        self.recap_seen = True
        keys = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable", "skipped": "skipped"}
        names = set().union(*(data.get(k) or {} for k in keys))
        for host in names:
            self.hosts[host] = HostStats(**{attr: int((data.get(k) or {}).get(host, 0)) for k, attr in keys.items()})


def _task(data: JsonObject) -> str:
    return str(data.get("task") or data.get("task_action") or "")
