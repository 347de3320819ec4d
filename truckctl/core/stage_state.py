"""What is known about a stage from the state directory (last run, lock)."""

from __future__ import annotations

import json

from truckctl.project import Project


def stage_state(project: Project, stage: str) -> str:
    """`never run`, or the outcome of the last run recorded in the journal."""
    runs = project.state_dir / "runs"
    if not runs.is_dir():
        return "never run"
    latest = None
    for summary in sorted(runs.glob("*/summary.json"), reverse=True):
        try:
            data = json.loads(summary.read_text())
        except (OSError, ValueError):
            continue
        if data.get("stage") == stage:
            latest = data
            break
    if latest is None:
        return "never run"
    return f"{latest.get('command', 'run')} {latest.get('status', 'unknown')}"
