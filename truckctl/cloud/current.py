"""Which stage the race's cloud is at, as the last successful `up` left it (per project and target).

On aws the stack itself knows (its `stage` output); the record here is what an offline plan can
read without credentials, and on the lab (whose cloud tier is the offline plan) it is the only
record. `up` diffs the day's move against it, `down STAGE` clears it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from truckctl.private_file import write_private
from truckctl.project import Project

_STAGE = re.compile(r"stage-[1-9][0-9]?")


def _path(project: Project, target: str) -> Path:
    return project.state_dir / "cloud" / f"current-stage-{target}.json"


def read(project: Project, target: str) -> str | None:
    """The recorded stage, or None (never moved, between stages, or an unreadable record)."""
    try:
        data = json.loads(_path(project, target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    stage = data.get("stage") if isinstance(data, dict) else None
    return stage if isinstance(stage, str) and _STAGE.fullmatch(stage) else None


def write(project: Project, target: str, stage: str | None) -> None:
    path = _path(project, target)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, json.dumps({"stage": stage}).encode())
