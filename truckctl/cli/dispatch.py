"""Run one command: call the core, turn its outcome or its error into output and an exit code."""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from truckctl.cli.output import Env, write_json, write_problems
from truckctl.envelope import envelope
from truckctl.errors import ExitCode, Problem, TruckctlError

# A full or read-only disk is the machine's problem, not a bug: one clear line, never a traceback.
_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


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
    except OSError as exc:
        if exc.errno not in _DISK_ERRORS:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        outcome = Outcome({}, ExitCode.ERROR, [Problem("disk", f"{exc.strerror}{where}: free space (or make it "
                                                              "writable) and re-run")])
    if env.json:
        write_json(env, envelope(command, stage, outcome.exit_code, outcome.result, outcome.problems))
    else:
        if render is not None and outcome.result:
            render(env, outcome)
        write_problems(env, outcome.problems)
    return int(outcome.exit_code)
