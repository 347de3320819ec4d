"""`truckctl lab` through the CLI without root: one clear line, one JSON envelope, never a traceback."""

from __future__ import annotations

import io
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


def _row(name: str, truck: str | None, address: str) -> dict[str, object]:
    return {"name": name, "truck": truck, "role": "gateway", "address": address, "uplink_address": None,
            "supervisor": True, "systemd": "running", "systemd_running": True, "ssh": True}


def test_a_move_and_the_parked_nodes_are_shown_to_a_human() -> None:
    from truckctl.cli.cmd_lab import _render_status, _render_up
    from truckctl.cli.dispatch import Outcome
    from truckctl.cli.output import Env

    out = io.StringIO()
    env = Env(stdout=out, stderr=io.StringIO(), no_color=True)
    moved = {"from_stage": "stage-2", "to_stage": "stage-7", "seconds": 9.3, "stop": [], "build": [],
             "start": ["truck-b-gw"], "readdress": ["truck-a-gw"]}
    _render_up(env, Outcome({"stage": "stage-7", "reused": True, "seconds": 9.4, "moved": moved,
                             "nodes": [_row("truck-a-gw", "truck-a", "10.33.1.11")],
                             "ssh": {"user": "root", "private_key": "k", "known_hosts": "h"}}))
    text = out.getvalue()
    assert "moved from stage-2 in 9.3s" in text
    assert "switched on again: truck-b-gw" in text and "re-addressed: truck-a-gw" in text
    out.truncate(0)
    standin = {**_row("cloud-standin", None, "100.64.10.2"),
               "stages": {"stage-1": {"truck-b": {"telemetry": 25, "heartbeat": 10}}}}
    _render_status(env, Outcome({"up": True, "stage": "stage-2", "healthy": True, "standin": standin,
                                 "nodes": [_row("truck-a-gw", "truck-a", "10.31.1.11")],
                                 "parked": [_row("truck-b-gw", "truck-b", "10.32.1.11")]}))
    text = out.getvalue()
    assert "lab on stage-2: healthy" in text
    assert any("truck-b-gw" in line and "parked" in line for line in text.splitlines())
    assert any(line.split()[:4] == ["stage-1", "truck-b", "25", "10"] for line in text.splitlines())


def test_a_bare_lab_up_stays_on_the_stage_the_lab_is_on(not_root: None, example_project: Path) -> None:
    """`lab up` without a stage never moves the lab (to stage-1): it means the stage the lab is on."""
    from truckctl.config.loader import load_stage
    from truckctl.lab import state as st
    from truckctl.lab.plan import plan_lab
    from truckctl.project import Project

    project = Project(example_project)
    plan = plan_lab(load_stage(project, "stage-7"), "abc123")
    st.LabState("abc123", "stage-7", plan, plan.fingerprint(), path=st.state_file(project.state_dir)).save()
    document = json.loads(CliRunner().invoke(app, ["-C", str(example_project), "lab", "up", "--json"]).output)
    assert document["command"] == "lab up" and document["stage"] == "stage-7"
    assert document["errors"][0]["code"] == "lab-needs-root"
