"""One history: this machine's run journal merged with the runs every operator recorded on the
stage's gateways, each marked by origin (`local`, or `user@host` of the operator who ran it).

A run made here is listed once, from the local journal (it has the full record: `runs show`); the
gateways add the runs of other machines (their summary only). A gateway that cannot be read is
said, and the local journal is listed all the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from truckctl.errors import TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle import journal, teamlock
from truckctl.lifecycle.journal import LISTED
from truckctl.lifecycle.teamlock import SharedRun
from truckctl.target import Target

if TYPE_CHECKING:
    from truckctl.config.model import Stage

NO_STAGE_NOTE = "give --stage to add the runs other operators recorded on the stage's gateways"


@dataclass(frozen=True)
class SharedHistory:
    """The runs recorded on a stage's gateways, which gateways were read, which not and why."""

    runs: tuple[SharedRun, ...] = ()
    read: tuple[str, ...] = ()
    unreachable: dict[str, str] = field(default_factory=dict)
    note: str | None = None  # why the gateways were not read at all

    @classmethod
    def of(cls, gws: Sequence[teamlock.Gateway], runs: Sequence[SharedRun], failed: dict[str, str]) -> SharedHistory:
        """The gateways' answers: their runs, and every gateway read but those that failed (with why)."""
        return cls(tuple(runs), tuple(g.node for g in gws if g.node not in failed), failed)

    def to_json(self) -> JsonObject:
        """The envelope's `shared` of `truckctl runs` (its runs are listed with the local ones)."""
        return {"read": list(self.read), "unreachable": dict(self.unreachable), "note": self.note}


@dataclass(frozen=True)
class RunsListing:
    """`truckctl runs`: every run listed (newest first), and the shared history they were merged with
    (None: no stage given, this machine's runs only)."""

    runs: list[JsonObject]
    shared: SharedHistory | None

    def to_json(self) -> JsonObject:
        """The JSON envelope's `result` of `truckctl runs`."""
        return {"runs": self.runs, "shared": self.shared.to_json() if self.shared is not None
                else {"note": NO_STAGE_NOTE}}


def merge(local: list[JsonObject], shared: Sequence[SharedRun]) -> list[JsonObject]:
    """Local runs (origin `local`, as the journal lists them) and the gateways' runs of other machines,
    newest first: the rows `truckctl runs` shows."""
    merged = {r["run_id"]: {**r, "origin": "local", "shared": False} for r in local}
    for item in shared:
        if item.record.run_id in merged:
            merged[item.record.run_id]["shared"] = True
            continue
        fields = item.record.model_dump()
        merged[item.record.run_id] = {**{k: fields.get(k) for k in LISTED}, "origin": item.origin, "shared": True}
    return sorted(merged.values(), key=lambda r: (r.get("started") or 0, r["run_id"]), reverse=True)


def shared_runs(target: Target, stage: Stage) -> SharedHistory:
    """The runs recorded on the stage's gateways, and which gateways answered (never raises)."""
    try:
        transport = teamlock.transport(target, stage)
    except TruckctlError as exc:
        return SharedHistory(note=f"the gateways were not read: {exc}")
    gws = teamlock.gateways(stage)
    return SharedHistory.of(gws, *teamlock.remote_runs(stage.name, gws, transport))


def all_runs(target: Target, stage_name: str | None) -> RunsListing:
    """`truckctl runs`: with a stage, every operator's runs of it; without, this machine's runs."""
    project = target.project
    local = journal.list_runs(project, stage_name)
    if stage_name is None:
        return RunsListing(merge(local, []), None)
    from truckctl.config.loader import load_stage

    stage = load_stage(project, stage_name)
    shared = shared_runs(target, stage)
    return RunsListing(merge(local, shared.runs), shared)
