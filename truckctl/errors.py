"""The one user-facing error type and the exit-code enum (DESIGN section 7)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit code truckctl uses, defined once."""

    OK = 0  # ok / no changes
    ERROR = 1  # a run or an operation failed
    USAGE = 2  # bad command line (Click's own)
    CHANGES = 3  # changes or drift found
    LOCKED = 4  # stage locked by another run
    INVALID_CONFIG = 5  # invalid configuration
    INTERRUPTED = 130  # Ctrl-C


@dataclass(frozen=True)
class Problem:
    """One problem found: a code, a one-line message and where (file and field path)."""

    code: str
    message: str
    location: str | None = None

    def line(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message

    def as_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "location": self.location}


@dataclass
class TruckctlError(Exception):
    """The only exception the CLI shows to users; carries one or more problems and an exit code."""

    problems: list[Problem]
    exit_code: ExitCode = ExitCode.ERROR
    result: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.problems[0].line() if self.problems else "error")

    @classmethod
    def single(
        cls, code: str, message: str, location: str | None = None, exit_code: ExitCode = ExitCode.ERROR
    ) -> TruckctlError:
        return cls([Problem(code, message, location)], exit_code)

    def __str__(self) -> str:
        return "\n".join(p.line() for p in self.problems)


def config_error(problems: list[Problem]) -> TruckctlError:
    return TruckctlError(problems, ExitCode.INVALID_CONFIG)
