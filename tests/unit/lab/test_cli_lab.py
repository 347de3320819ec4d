"""`truckctl lab` through the CLI without root: one clear line, one JSON envelope, never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from truckctl.cli.app import app


@pytest.fixture
def not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


@pytest.mark.parametrize("argv", [["lab", "up"], ["lab", "up", "stage-3"], ["lab", "down"], ["lab", "status"]])
def test_lab_needs_root_as_one_json_error(not_root: None, example_project: Path, argv: list[str]) -> None:
    result = CliRunner().invoke(app, ["-C", str(example_project), *argv, "--json"])
    document = json.loads(result.output)
    assert result.exit_code == 1 and document["exit_code"] == 1 and not document["ok"]
    assert document["command"] == " ".join(argv[:2])
    [error] = document["errors"]
    assert error["code"] == "lab-needs-root" and "root" in error["message"] and "\n" not in error["message"]


def test_lab_needs_root_as_one_human_line(not_root: None, example_project: Path) -> None:
    result = CliRunner().invoke(app, ["-C", str(example_project), "lab", "up"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: truckctl lab up needs root")
    assert "Traceback" not in result.output


def test_lab_up_defaults_to_stage_1_and_validates_the_stage_name(example_project: Path) -> None:
    result = CliRunner().invoke(app, ["-C", str(example_project), "lab", "up", "stage-x", "--json"])
    document = json.loads(result.output)
    assert document["stage"] == "stage-x"
    if os.geteuid() != 0:
        assert document["errors"][0]["code"] == "lab-needs-root"
    else:
        assert document["exit_code"] == 5 and document["errors"][0]["code"] == "bad-stage-name"


def test_lab_help_lists_the_three_commands() -> None:
    result = CliRunner().invoke(app, ["lab", "--help"])
    assert result.exit_code == 0
    for command in ("up", "down", "status"):
        assert f" {command} " in result.output


@pytest.mark.parametrize(("argv", "message"), [
    (["lab", "fault", "cable", "truck-a", "extra"], "`lab fault cable` takes one target"),
    (["lab", "fault", "list", "truck-a"], "`lab fault list` takes no target"),
    (["lab", "fault", "unplug"], "no drill 'unplug' (drills: cable, cloud-block, revoke-cert,"),
    (["lab", "fault", "clear", "unplug"], "no drill 'unplug'"),
])
def test_lab_fault_usage_errors_are_one_line_and_need_no_lab(example_project: Path, argv: list[str],
                                                            message: str) -> None:
    result = CliRunner().invoke(app, ["-C", str(example_project), *argv, "--json"])
    document = json.loads(result.output)
    assert result.exit_code == 2 and document["exit_code"] == 2 and document["command"] == " ".join(argv[:3])
    [error] = document["errors"]
    assert error["message"].startswith(message) and "\n" not in error["message"]


def test_lab_fault_without_a_lab_says_so(example_project: Path) -> None:
    result = CliRunner().invoke(app, ["-C", str(example_project), "lab", "fault", "cable", "truck-a", "--json"])
    document = json.loads(result.output)
    assert result.exit_code == 1 and document["errors"][0]["code"] in ("lab-not-up", "lab-needs-root")
