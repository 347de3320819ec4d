"""Shared fixtures: the example race planned offline once per session (the real stack program under
Pulumi mocks, through the CLI and its forked worker), so every wiring test reads the same plan."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.cloud.support import Plan, run_cli


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


@pytest.fixture(scope="session")
def plan1(stage1: dict[str, Any]) -> Plan:
    return Plan(stage1)
