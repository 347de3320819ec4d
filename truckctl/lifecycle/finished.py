"""How a command's typed result ends its run: `finish_run` journals the result's JSON, and the result keeps
what the run adds to it (its id and the notifications it sent: the last keys of the envelope's `result`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol, TypeVar

from truckctl.errors import ExitCode
from truckctl.jsondoc import JsonObject
from truckctl.lifecycle.run import Run, finish_run


@dataclass(frozen=True)
class RunEnd:
    run_id: str
    notifications: tuple[JsonObject, ...] = ()  # as the channels were sent them (webhook bodies)

    def to_json(self) -> JsonObject:
        return {"run_id": self.run_id, "notifications": list(self.notifications)}


class RunResult(Protocol):
    """A command's typed result: a frozen dataclass with an `ended` field and its envelope JSON."""

    @property
    def ended(self) -> RunEnd | None: ...

    def to_json(self) -> JsonObject: ...


ResultT = TypeVar("ResultT", bound=RunResult)


def finish(run: Run, exit_code: ExitCode, result: ResultT) -> ResultT:
    """End the run with this result (journaled as its JSON); the result, with how the run ended."""
    body = finish_run(run, exit_code, result.to_json())
    return dataclasses.replace(result, ended=RunEnd(body["run_id"], tuple(body["notifications"])))  # type: ignore[type-var]
