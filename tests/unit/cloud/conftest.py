"""Shared fixtures: the example race planned offline once per session (the real stack program under
Pulumi mocks, through the CLI and its forked worker), so every wiring test reads the same plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from truckctl.cli.app import app
from truckctl.cloud.resources import PlannedResource

REPO = Path(__file__).resolve().parents[3]


def run_cli(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["-C", str(REPO), *args])
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture(scope="session")
def all_stages_envelope() -> dict[str, Any]:
    code, envelope = run_cli("plan", "--all", "--offline", "--json")
    assert code == 0, envelope["errors"]
    return envelope


@pytest.fixture(scope="session")
def stage1_envelope() -> dict[str, Any]:
    code, envelope = run_cli("plan", "stage-1", "--offline", "--json")
    assert code == 0, envelope["errors"]
    return envelope


@pytest.fixture(scope="session")
def stage1(stage1_envelope: dict[str, Any]) -> dict[str, Any]:
    """The `cloud` part of stage-1's plan: the race's stack moved to stage-1."""
    return dict(stage1_envelope["result"]["cloud"])


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


@pytest.fixture(scope="session")
def plan1(stage1: dict[str, Any]) -> Plan:
    return Plan(stage1)
