"""Configuration commands: validate, list stages, render the inventory."""

from __future__ import annotations

from typing import Any

from truckctl.config.loader import load_race, load_stage, load_stages, stage_names
from truckctl.config.model import Stage
from truckctl.project import Project
from truckctl.truck.inventory import inventory_yaml, render_inventory


def stage_summary(stage: Stage) -> dict[str, Any]:
    return {
        "name": stage.name,
        "number": stage.info.number,
        "date": stage.info.date.isoformat(),
        "start": stage.info.start,
        "finish": stage.info.finish,
        "kind": stage.info.kind,
        "tech_zone": stage.tech_zone,
        "trucks": [t.name for t in stage.trucks],
        "nodes": len(stage.nodes()),
        "uplink": stage.defaults.uplink.kind,
    }


def validate(project: Project, names: list[str] | None) -> dict[str, Any]:
    """Validate the race and the given stages (all when None); raise every problem found."""
    stages = load_stages(project, names or None)
    loaded = load_race(project)
    return {
        "race": loaded.race.race.name,
        "race_file": project.display(project.race_file),
        "stages": [stage_summary(s) for s in stages],
        "count": len(stages),
    }


def stages(project: Project) -> dict[str, Any]:
    from truckctl.lifecycle.journal import last_run

    loaded = load_stages(project)
    out = []
    for stage in loaded:
        run = last_run(project, stage.name)
        state = f"{run['command']} {run['status']}" if run else "never run"
        out.append({**stage_summary(stage), "state": state, "last_run": run["run_id"] if run else None})
    return {"stages": out}


def inventory(project: Project, name: str) -> dict[str, Any]:
    stage = load_stage(project, name)
    return {"inventory": render_inventory(stage), "yaml": inventory_yaml(stage)}


__all__ = ["inventory", "stage_names", "stages", "validate"]
