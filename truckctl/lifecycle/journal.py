"""The run journal: runs/<id>/events.jsonl and summary.json under the state directory.

Every step of a run, per node and per resource, with timings and changes, and how it ended.
Bounded (per-run event cap, old runs pruned) and scrubbed: every string written passes through
the redactor, so a secret value known to the run can never land here.

A journal that cannot be started (disk full, read-only state directory) stops the run before it
changes anything. One that fails later stops writing (what it holds stays whole: complete lines, an
atomically replaced summary) and remembers why: the run goes on, since stopping a truck half-way
through a playbook is worse than a short record, and ends with exit 1 saying its record is
incomplete (`write_error`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from truckctl.config.names import STAGE_NAME
from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle.steps import StepResult
from truckctl.processes import alive
from truckctl.project import Project

MAX_EVENTS_BYTES = 4 * 2**20  # per run; past this only step boundaries are kept
KEEP_RUNS = 200
REDACTED = "[redacted]"
LISTED = ("run_id", "stage", "command", "target", "status", "exit_code", "started", "duration_s", "failed_step")


class Redactor:
    """Replaces known secret values (and their single lines, for PEM blocks) in any string."""

    def __init__(self, values: list[str] | None = None) -> None:
        self._needles: list[str] = []
        for value in values or []:
            self.add(value)

    def add(self, value: str) -> None:
        for needle in [value, *[line for line in value.splitlines() if len(line) >= 16 and "-----" not in line]]:
            if len(needle) >= 6 and needle not in self._needles:
                self._needles.append(needle)
        self._needles.sort(key=len, reverse=True)

    def scrub(self, data: Any) -> Any:
        if isinstance(data, str):
            for needle in self._needles:
                if needle in data:
                    data = data.replace(needle, REDACTED)
            return data
        if isinstance(data, dict):
            return {k: self.scrub(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.scrub(v) for v in data]
        return data


def runs_dir(project: Project) -> Path:
    return project.state_dir / "runs"


def new_run_id(stage: str, command: str) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{stage}-{command}-{secrets.token_hex(2)}"


@dataclass
class Journal:
    project: Project
    stage: str
    command: str
    target: str
    redactor: Redactor = field(default_factory=Redactor)
    run_id: str = ""
    started: float = field(default_factory=time.time)
    _bytes: int = 0
    _truncated: bool = False
    _steps: dict[str, JsonObject] = field(default_factory=dict)
    write_error: str | None = None  # why the journal stopped writing, once it had to

    def __post_init__(self) -> None:
        self.run_id = self.run_id or new_run_id(self.stage, self.command)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)
            self._write_summary("running", ExitCode.OK, [], strict=True)
        except OSError as exc:
            with contextlib.suppress(OSError):  # leave no half-made run to list
                (self.dir / "summary.json.tmp").unlink(missing_ok=True)
                self.dir.rmdir()
            raise TruckctlError.single(
                "state-unwritable", f"cannot start the run journal: {exc.strerror}; free space in the state directory "
                f"{self.project.state_dir} (or point TRUCKCTL_STATE_DIR elsewhere) and re-run: nothing was changed",
                self.project.display(self.dir)) from None
        with contextlib.suppress(OSError):  # best effort: old runs that cannot be removed stay
            _prune(self.project)

    def _failed(self, exc: OSError) -> None:
        if self.write_error is None:
            self.write_error = f"{exc.strerror} ({self.project.display(self.dir)})"

    def incomplete(self) -> Problem | None:
        """The problem a run ends with when its journal could not be written to the end."""
        if self.write_error is None:
            return None
        return Problem("journal-incomplete", f"the run journal stopped being written: {self.write_error}; what "
                       "it holds is complete up to then. Free space in the state directory and re-run",
                       self.project.display(self.dir))

    @property
    def dir(self) -> Path:
        return runs_dir(self.project) / self.run_id

    def event(self, kind: str, step: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "kind": kind, "step": step, **fields}
        line = json.dumps(self.redactor.scrub(record), default=str) + "\n"
        essential = kind in ("step-start", "step-end", "run-end")
        if self._bytes + len(line) > MAX_EVENTS_BYTES and not essential:
            if not self._truncated:
                self._truncated = True
                line = json.dumps({"ts": record["ts"], "kind": "truncated", "step": step,
                                   "message": f"event log reached {MAX_EVENTS_BYTES} bytes; "
                                   "only step boundaries follow"}) + "\n"
            else:
                return
        if self.write_error is not None:
            return
        try:
            with open(self.dir / "events.jsonl", "a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
        except OSError as exc:
            self._failed(exc)
            self._drop_torn_line()
            return
        self._bytes += len(line)

    def note(self, step: str, message: str) -> None:
        self.event("note", step, message=message)

    def brief(self) -> dict[str, Any] | None:
        """The run as `list_runs` shows it, from its summary as written (None if it cannot be read)."""
        try:
            data = json.loads((self.dir / "summary.json").read_text())
        except (OSError, ValueError):
            return None
        return {k: data.get(k) for k in LISTED}

    def _drop_torn_line(self) -> None:
        """A line cut short by a full disk would be unreadable: keep the file at its last whole line."""
        with contextlib.suppress(OSError):
            path = self.dir / "events.jsonl"
            if path.stat().st_size > self._bytes:
                os.truncate(path, self._bytes)

    def step_start(self, step: str, **fields: Any) -> float:
        self._steps[step] = {"status": "running", "started": time.time()}
        self.event("step-start", step, **fields)
        self._write_summary("running", ExitCode.OK, [])  # a run killed in this step shows where it died
        return time.time()

    def step_end(self, step: str, status: str, changed: int = 0, **fields: Any) -> None:
        info = self._steps.setdefault(step, {"started": time.time()})
        duration = round(time.time() - info["started"], 3)
        info.update({"status": status, "changed": changed, "duration_s": duration, **self.redactor.scrub(fields)})
        self.event("step-end", step, status=status, changed=changed, duration_s=duration, **fields)
        self._write_summary("running", ExitCode.OK, [])

    def step_done(self, step: str, result: StepResult) -> None:
        """A step that returned: its typed result as the journal keeps it (status, changes, summary facts)."""
        self.step_end(step, result.status, result.changed, **result.summary.journal_fields())

    def finish(self, exit_code: ExitCode, problems: list[Problem], result: JsonObject | None = None) -> None:
        status = {ExitCode.OK: "ok", ExitCode.CHANGES: "changes", ExitCode.INTERRUPTED: "interrupted"}.get(
            exit_code, "failed")
        self.event("run-end", "run", status=status, exit_code=int(exit_code),
                   errors=[p.as_dict() for p in problems])
        # The end of a run is worth one more try (space may have come back): it says how the run ended.
        with contextlib.suppress(OSError):
            self._write_summary(status, exit_code, problems, result, strict=True)

    def _write_summary(self, status: str, exit_code: ExitCode, problems: list[Problem],
                       result: JsonObject | None = None, strict: bool = False) -> None:
        failed = next((name for name, s in self._steps.items()
                       if s.get("status") in ("failed", "error", "partial", "interrupted")), None)
        summary = {
            "run_id": self.run_id, "stage": self.stage, "command": self.command, "target": self.target,
            "status": status, "exit_code": int(exit_code), "started": self.started,
            "ended": time.time() if status != "running" else None, "pid": os.getpid(),
            "duration_s": round(time.time() - self.started, 3), "failed_step": failed,
            "steps": self._steps, "errors": [p.as_dict() for p in problems], "result": result or {},
        }
        if self.write_error is not None and not strict:
            return
        if self.write_error is not None or any(p.code == "journal-incomplete" for p in problems):
            summary["journal_incomplete"] = self.write_error
        tmp = self.dir / "summary.json.tmp"
        try:
            tmp.write_text(json.dumps(self.redactor.scrub(summary), indent=2, default=str))
            tmp.replace(self.dir / "summary.json")  # atomic: readers never see half a summary
        except OSError as exc:
            if strict:
                raise
            self._failed(exc)
            tmp.unlink(missing_ok=True)


def _listed(summary: Path, stage: str | None) -> JsonObject | None:
    """One run as the journal lists it (None: unreadable, or of another stage)."""
    try:
        data = json.loads(summary.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or (stage is not None and data.get("stage") != stage):
        return None
    if data.get("status") == "running" and not alive(data.get("pid")):
        _died(data)  # killed (SIGKILL, power loss) before it could record its end
    return {k: data.get(k) for k in LISTED}


def list_runs(project: Project, stage: str | None = None) -> list[JsonObject]:
    out = []
    for summary in sorted(runs_dir(project).glob("*/summary.json"), reverse=True) if runs_dir(project).is_dir() \
            else []:
        run = _listed(summary, stage)
        if run is not None:
            out.append(run)
    out.sort(key=_age_order, reverse=True)
    return out


def _age_order(run: JsonObject) -> tuple[float, str]:
    """Runs in the order they started (the journal lists them reversed, newest first); run ids of one second
    differ only by their random suffix, so the start time decides."""
    return (run["started"] if isinstance(run["started"], int | float) else 0, str(run["run_id"]))


# What new_run_id makes: <UTC time>-<stage>-<command>-<4 hex digits>, ASCII only (str.isalnum would
# let other scripts' letters and digits through to a path).
RUN_ID = re.compile(rf"[0-9]{{8}}T[0-9]{{6}}Z-{STAGE_NAME.pattern}-[a-z][a-z-]{{0,30}}-[0-9a-f]{{4}}")


def show_run(project: Project, run_id: str) -> JsonObject:
    if not RUN_ID.fullmatch(run_id):
        shown = repr(run_id if len(run_id) <= 60 else run_id[:60] + "...")
        raise TruckctlError.single("bad-run-id", f"expected a run id as listed by 'truckctl runs', got {shown}",
                                   "RUN_ID", ExitCode.USAGE)
    directory = runs_dir(project) / run_id
    if not (directory / "summary.json").is_file():
        raise TruckctlError.single("unknown-run", f"no run {run_id!r} (see 'truckctl runs')",
                                   project.display(directory))
    summary = json.loads((directory / "summary.json").read_text())
    events = []
    events_file = directory / "events.jsonl"
    if events_file.is_file():
        for line in events_file.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                events.append({"kind": "unreadable", "line": line[:200]})  # torn last line after a kill
    if summary.get("status") == "running" and not alive(summary.get("pid")):
        _died(summary)
    return {"summary": summary, "events": events}


def last_run(project: Project, stage: str, command: str | None = None) -> JsonObject | None:
    """The newest run of `stage` (of `command` when given), as list_runs lists it. A run id begins with its
    start's UTC time, so the directory names say which runs to read: one summary, not the journal's 200."""
    directory = runs_dir(project)
    if not directory.is_dir():
        return None
    named = re.compile(rf"[0-9]{{8}}T[0-9]{{6}}Z-{re.escape(stage)}-{re.escape(command) if command else '[a-z-]+'}"
                       r"-[0-9a-f]{4}")
    found: list[JsonObject] = []
    for name in sorted((entry.name for entry in directory.iterdir() if named.fullmatch(entry.name)), reverse=True):
        if found and not name.startswith(str(found[0]["run_id"])[:16]):
            break  # runs of one second are told apart by their start time, as list_runs does
        run = _listed(directory / name / "summary.json", stage)
        if run is not None and run.get("run_id") == name and (command is None or run.get("command") == command):
            found.append(run)
    return max(found, key=_age_order, default=None)


def _died(summary: JsonObject) -> None:
    """A run whose process is gone without recording its end: it died in the step still running."""
    summary["status"] = "died"
    steps = summary.get("steps")
    running = [name for name, step in steps.items() if isinstance(step, dict) and step.get("status") == "running"] \
        if isinstance(steps, dict) else []
    summary["failed_step"] = summary.get("failed_step") or (running[-1] if running else None)


def _prune(project: Project) -> None:
    runs = sorted(p for p in runs_dir(project).iterdir() if p.is_dir())
    for old in runs[:-KEEP_RUNS]:
        for child in old.iterdir():
            child.unlink(missing_ok=True)
        old.rmdir()
