"""Typed results of the lifecycle's steps, and the record a journal keeps of each.

A step returns a `StepResult`: its `detail` is its part of the command's result (what the JSON
envelope shows under the step's name, unchanged), `status` and `changed` are journaled with it, and
`summary` holds the few facts the run's summary keeps for it (small, never a secret). The journal
serialises them in one place (`Journal.step_end`); a resuming `down` reads them back as `StepRecord`s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

StepStatus = Literal["ok", "partial", "failed"]
SUMMARY_PREFIX = "summary_"  # how the summary's facts are named in summary.json (kept for older journals)


@dataclass(frozen=True)
class StepSummary:
    """What the run's summary keeps of a step (each fact only where the step has it)."""

    seconds: float | None = None  # the truck tier's wall time
    resources: int | None = None  # resources the cloud tier planned
    trucks: tuple[str, ...] | int | None = None  # trucks revoked (names), or smoke-checked (count)
    not_down: tuple[str, ...] | None = None  # nodes a teardown could not take down
    unreachable: tuple[str, ...] | None = None  # nodes the prechecks left out
    delete_data: bool | None = None  # whether the cloud step deleted the data lake
    move: str | None = None  # the race stack's move to the stage, as counts ("update 3" / "none")

    def journal_fields(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {SUMMARY_PREFIX + name: list(value) if isinstance(value, tuple) else value
                for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class StepResult:
    detail: Mapping[str, Any]
    status: StepStatus = "ok"
    changed: int = 0
    summary: StepSummary = field(default_factory=StepSummary)


@dataclass(frozen=True)
class StepRecord:
    """A step as a run's summary.json recorded it."""

    status: str
    changed: int = 0
    delete_data: bool | None = None

    @classmethod
    def read(cls, info: object) -> StepRecord | None:
        """From one entry of summary.json's `steps`; None when it is not a step record at all."""
        if not isinstance(info, Mapping) or not isinstance(info.get("status"), str):
            return None
        changed = info.get("changed")
        delete_data = info.get(SUMMARY_PREFIX + "delete_data")
        return cls(info["status"], changed if isinstance(changed, int) else 0,
                   delete_data if isinstance(delete_data, bool) else None)
