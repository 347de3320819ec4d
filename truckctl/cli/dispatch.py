"""Run one command: call the core, turn its outcome or its error into output and an exit code."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from truckctl.cli.output import Env, envelope, write_json, write_problems
from truckctl.errors import ExitCode, Problem, TruckctlError


@dataclass
class Outcome:
    """What a command produced: the JSON `result`, its exit code, and problems worth reporting."""

    result: dict[str, Any]
    exit_code: ExitCode = ExitCode.OK
    problems: list[Problem] = field(default_factory=list)


def run(env: Env, command: str, stage: str | None, action: Callable[[], Outcome],
        render: Callable[[Env, Outcome], None] | None = None) -> int:
    """Never lets a traceback reach the user for a known failure; returns the exit code."""
    try:
        outcome = action()
    except TruckctlError as exc:
        outcome = Outcome(dict(exc.result), exc.exit_code, exc.problems)
    except KeyboardInterrupt:
        outcome = Outcome({}, ExitCode.INTERRUPTED, [Problem("interrupted", "interrupted by the user")])
    if env.json:
        write_json(env, envelope(command, stage, outcome.exit_code, outcome.result, outcome.problems))
    else:
        if render is not None and outcome.result:
            render(env, outcome)
        write_problems(env, outcome.problems)
    return int(outcome.exit_code)
