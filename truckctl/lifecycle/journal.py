"""The run journal: runs/<id>/events.jsonl and summary.json under the state directory.

Every step of a run, per node and per resource, with timings and changes, and how it ended.
Bounded (per-run event cap, old runs pruned) and scrubbed: every string written passes through
the redactor, so a secret value known to the run can never land here.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.project import Project

MAX_EVENTS_BYTES = 4 * 2**20  # per run; past this only step boundaries are kept
KEEP_RUNS = 200
REDACTED = "[redacted]"


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
    _steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_id = self.run_id or new_run_id(self.stage, self.command)
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self._write_summary("running", ExitCode.OK, [])
        _prune(self.project)

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
        with open(self.dir / "events.jsonl", "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
        self._bytes += len(line)

    def step_start(self, step: str, **fields: Any) -> float:
        self._steps[step] = {"status": "running", "started": time.time()}
        self.event("step-start", step, **fields)
        return time.time()

    def step_end(self, step: str, status: str, changed: int = 0, **fields: Any) -> None:
        info = self._steps.setdefault(step, {"started": time.time()})
        duration = round(time.time() - info["started"], 3)
        info.update({"status": status, "changed": changed, "duration_s": duration, **self.redactor.scrub(fields)})
        self.event("step-end", step, status=status, changed=changed, duration_s=duration, **fields)
        self._write_summary("running", ExitCode.OK, [])

    def finish(self, exit_code: ExitCode, problems: list[Problem], result: dict[str, Any] | None = None) -> None:
        status = {ExitCode.OK: "ok", ExitCode.CHANGES: "changes", ExitCode.INTERRUPTED: "interrupted"}.get(
            exit_code, "failed")
        self.event("run-end", "run", status=status, exit_code=int(exit_code),
                   errors=[p.as_dict() for p in problems])
        self._write_summary(status, exit_code, problems, result)

    def _write_summary(self, status: str, exit_code: ExitCode, problems: list[Problem],
                       result: dict[str, Any] | None = None) -> None:
        failed = next((name for name, s in self._steps.items() if s.get("status") in ("failed", "error")), None)
        summary = {
            "run_id": self.run_id, "stage": self.stage, "command": self.command, "target": self.target,
            "status": status, "exit_code": int(exit_code), "started": self.started,
            "ended": time.time() if status != "running" else None, "pid": os.getpid(),
            "duration_s": round(time.time() - self.started, 3), "failed_step": failed,
            "steps": self._steps, "errors": [p.as_dict() for p in problems], "result": result or {},
        }
        tmp = self.dir / "summary.json.tmp"
        tmp.write_text(json.dumps(self.redactor.scrub(summary), indent=2, default=str))
        tmp.replace(self.dir / "summary.json")  # atomic: readers never see half a summary


def list_runs(project: Project, stage: str | None = None) -> list[dict[str, Any]]:
    out = []
    for summary in sorted(runs_dir(project).glob("*/summary.json"), reverse=True) if runs_dir(project).is_dir() \
            else []:
        try:
            data = json.loads(summary.read_text())
        except (OSError, ValueError):
            continue
        if stage is None or data.get("stage") == stage:
            if data.get("status") == "running" and not _alive(data.get("pid")):
                data["status"] = "died"  # killed (SIGKILL, power loss) before it could record its end
            out.append({k: data.get(k) for k in ("run_id", "stage", "command", "target", "status", "exit_code",
                                                  "started", "duration_s", "failed_step")})
    return out


def show_run(project: Project, run_id: str) -> dict[str, Any]:
    if not run_id.replace("-", "").replace("T", "").replace("Z", "").isalnum() or "/" in run_id:
        raise TruckctlError.single("bad-run-id", f"expected a run id as listed by 'truckctl runs', got {run_id!r}",
                                   exit_code=ExitCode.USAGE)
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
    if summary.get("status") == "running" and not _alive(summary.get("pid")):
        summary["status"] = "died"
    return {"summary": summary, "events": events}


def last_run(project: Project, stage: str) -> dict[str, Any] | None:
    runs = list_runs(project, stage)
    return runs[0] if runs else None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prune(project: Project) -> None:
    runs = sorted(p for p in runs_dir(project).iterdir() if p.is_dir())
    for old in runs[:-KEEP_RUNS]:
        for child in old.iterdir():
            child.unlink(missing_ok=True)
        old.rmdir()
