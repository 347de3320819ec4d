"""One history: this machine's run journal merged with the runs every operator recorded on the
stage's gateways, each marked by origin (`local`, or `user@host` of the operator who ran it).

A run made here is listed once, from the local journal (it has the full record: `runs show`); the
gateways add the runs of other machines (their summary only). A gateway that cannot be read is
said, and the local journal is listed all the same.
"""

from __future__ import annotations

from typing import Any

from truckctl.errors import TruckctlError
from truckctl.lifecycle import journal, teamlock
from truckctl.lifecycle.journal import LISTED
from truckctl.target import Target


def merge(local: list[dict[str, Any]], shared: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Local runs (origin `local`) and the gateways' runs of other machines, newest first."""
    merged = {r["run_id"]: {**r, "origin": "local", "shared": False} for r in local}
    for item in shared:
        if item["run_id"] in merged:
            merged[item["run_id"]]["shared"] = True
            continue
        merged[item["run_id"]] = {**{k: item.get(k) for k in LISTED}, "origin": f"{item['user']}@{item['host']}",
                                  "shared": True}
    return sorted(merged.values(), key=lambda r: (r.get("started") or 0, r["run_id"]), reverse=True)


def shared_runs(target: Target, stage: Any) -> dict[str, Any]:
    """The runs recorded on the stage's gateways, and which gateways answered (never raises)."""
    try:
        transport = teamlock.transport(target, stage)
    except TruckctlError as exc:
        return {"runs": [], "read": [], "unreachable": {}, "note": f"the gateways were not read: {exc}"}
    gws = teamlock.gateways(stage)
    runs, failed = teamlock.remote_runs(stage.name, gws, transport)
    return {"runs": runs, "read": [g.node for g in gws if g.node not in failed], "unreachable": failed,
            "note": None}


def all_runs(target: Target, stage_name: str | None) -> dict[str, Any]:
    """`truckctl runs`: with a stage, every operator's runs of it; without, this machine's runs."""
    project = target.project
    local = journal.list_runs(project, stage_name)
    if stage_name is None:
        return {"runs": merge(local, []), "shared": {"note": "give --stage to add the runs other operators "
                                                             "recorded on the stage's gateways"}}
    from truckctl.config.loader import load_stage

    stage = load_stage(project, stage_name)
    shared = shared_runs(target, stage)
    return {"runs": merge(local, shared.pop("runs")), "shared": shared}
