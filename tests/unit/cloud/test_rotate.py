"""`truckctl rotate-cert TRUCK`: the one deliberate act that replaces a truck's certificate (offline plan)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.helpers import REPO
from truckctl.cli.app import app
from truckctl.errors import ExitCode


def test_rotation_plan_replaces_that_truck_certificate_and_nothing_else() -> None:
    result = CliRunner().invoke(app, ["-C", str(REPO), "rotate-cert", "truck-a", "--json"])
    assert result.exit_code == 0, result.stdout
    move = json.loads(result.stdout)["result"]["move"]
    assert {c["name"]: c["op"] for c in move["changes"]} == {
        "truck-a-cert-g1": "create", "truck-a-cert": "delete",  # the new one created before the old one goes
        "truck-a-policy-attachment": "replace", "truck-a-thing-principal": "replace"}
    assert move["policy"] == []  # allowed: the rotation names this certificate
    assert not [c for c in move["changes"] if "truck-b" in c["name"]]


def test_rotating_an_unknown_truck_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["-C", str(REPO), "rotate-cert", "truck-z", "--json"])
    assert result.exit_code == ExitCode.USAGE
    (error,) = json.loads(result.stdout)["errors"]
    assert error["code"] == "unknown-truck" and "inventory/race.yaml" in error["location"]
