"""Human renderings for the lifecycle commands (runs, unlock, up, drift, status, down)."""

from __future__ import annotations

import time

from truckctl.cli.dispatch import Outcome
from truckctl.cli.output import Env
from truckctl.cli.render import table


def _took(seconds: float | None) -> str:
    return f"{seconds:.1f}s" if seconds is not None else "-"


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def runs(env: Env, outcome: Outcome) -> None:
    items = outcome.result["runs"]
    if not items:
        env.console().print("no runs recorded yet")
        return
    rows = [[r["run_id"], r.get("origin", "local"), r["stage"], r["command"], r["target"] or "-", r["status"],
             str(r["exit_code"]), _when(r["started"]), _took(r["duration_s"]), r["failed_step"] or ""] for r in items]
    table(env, "Runs", ["run", "by", "stage", "command", "target", "status", "exit", "started", "took", "failed step"],
          rows)
    shared = outcome.result.get("shared") or {}
    if shared.get("unreachable"):
        env.console().print("not read (other operators' runs may be missing): " + ", ".join(
            f"{node} ({why})" for node, why in shared["unreachable"].items()), markup=False)
    elif shared.get("note"):
        env.console().print(shared["note"], markup=False)


def run_detail(env: Env, outcome: Outcome) -> None:
    summary = outcome.result["summary"]
    console = env.console()
    console.print(f"run {summary['run_id']}: {summary['command']} {summary['stage']} on {summary['target']} -> "
                  f"{summary['status']} (exit {summary['exit_code']}, {summary['duration_s']:.1f}s)", markup=False)
    if summary.get("failed_step"):
        console.print(f"failed step: {summary['failed_step']} (re-run the same command to resume)", markup=False)
    rows = [[name, s.get("status", "?"), str(s.get("changed", 0)), f"{s.get('duration_s', 0):.1f}s"]
            for name, s in summary.get("steps", {}).items()]
    if rows:
        table(env, "Steps", ["step", "status", "changed", "took"], rows)
    for error in summary.get("errors", []):
        where = f"{error['location']}: " if error.get("location") else ""
        console.print(f"error: {where}{error['message']}", markup=False)
    console.print(f"{len(outcome.result['events'])} events in events.jsonl")


def message(env: Env, outcome: Outcome) -> None:
    env.console().print(outcome.result["message"], markup=False)
