"""The JSON envelope every command prints with --json (DESIGN section 7; README "JSON output"), in one
place for the CLI and the portal's API. Schema 1: changing a key's meaning bumps `SCHEMA`."""

from __future__ import annotations

from truckctl import __version__
from truckctl.errors import ExitCode, Problem
from truckctl.jsondoc import JsonObject

SCHEMA = 1


def envelope(command: str, stage: str | None, exit_code: ExitCode, result: JsonObject,
             problems: list[Problem]) -> JsonObject:
    return {
        "truckctl": __version__,
        "schema": SCHEMA,
        "command": command,
        "stage": stage,
        "ok": exit_code in (ExitCode.OK, ExitCode.CHANGES) and not problems,
        "exit_code": int(exit_code),
        "result": result,
        "errors": [p.as_dict() for p in problems],
    }
