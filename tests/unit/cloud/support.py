"""What the cloud tier's tests share: the CLI run on the example race, and a plan's resources
(import it from here; conftest.py holds only fixtures).
"""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from tests.helpers import REPO
from truckctl.cli.app import app
from truckctl.cloud.resources import PlannedResource


def run_cli(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["-C", str(REPO), *args])
    return result.exit_code, json.loads(result.stdout)


class Plan:
    """Lookups over one stage's planned resources."""

    def __init__(self, cloud: dict[str, Any]) -> None:
        self.cloud = cloud
        self.resources = [PlannedResource(**{k: r[k] for k in ("type", "name", "inputs", "depends_on", "component",
                                                                 "protect", "retain_on_delete", "urn")})
                          for r in cloud["resources"]]

    def named(self, name: str) -> PlannedResource:
        return next(r for r in self.resources if r.name == name)

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    def policy(self, name: str) -> dict[str, Any]:
        document = json.loads(self.named(name).inputs["policy"])
        assert isinstance(document, dict)
        return document
