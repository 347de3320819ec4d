"""truck_services against a stand-in systemctl (first on PATH, its units' state in files): what it
enables and starts, what it reports as started (the roles' restart handlers skip those), check mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO

MODULE = REPO / "playbooks" / "library" / "truck_services.py"
FAKE_SYSTEMCTL = """#!/bin/sh
cmd=$1; shift; [ "$1" = "--quiet" ] && shift
case $cmd in
  is-enabled) [ -e "$FAKE_UNITS/$1.enabled" ];;
  is-active) [ -e "$FAKE_UNITS/$1.active" ];;
  enable) touch "$FAKE_UNITS/$1.enabled";;
  start) [ "$1" != broken ] && touch "$FAKE_UNITS/$1.active";;
  daemon-reload) true;;
  *) exit 2;;
esac
"""


@pytest.fixture
def units(tmp_path: Path) -> Path:
    (tmp_path / "bin").mkdir()
    systemctl = tmp_path / "bin" / "systemctl"
    systemctl.write_text(FAKE_SYSTEMCTL)
    systemctl.chmod(0o755)
    (tmp_path / "units").mkdir()
    for name in ("running.enabled", "running.active", "stopped.enabled"):
        (tmp_path / "units" / name).touch()
    return tmp_path


def run(units: Path, names: list[str], check: bool = False) -> dict[str, Any]:
    args = units / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"names": names, "_ansible_check_mode": check}}))
    env = {**os.environ, "PATH": f"{units / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "FAKE_UNITS": str(units / "units")}
    proc = subprocess.run([sys.executable, str(MODULE), str(args)], capture_output=True, text=True, env=env,
                          timeout=30)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_it_starts_and_enables_only_what_differs_and_reports_what_it_started(units: Path) -> None:
    result = run(units, ["running", "stopped", "new"])
    assert result["changed"] is True
    assert result["actions"] == ["start stopped", "enable new", "start new"]
    assert result["started"] == ["stopped", "new"]
    assert run(units, ["running", "stopped", "new"]) | {"invocation": None} == \
        {"changed": False, "actions": [], "started": [], "invocation": None}


def test_check_mode_reports_the_actions_but_starts_nothing(units: Path) -> None:
    result = run(units, ["running", "stopped"], check=True)
    assert result["actions"] == ["start stopped"] and result["started"] == []
    assert not (units / "units" / "stopped.active").exists()


def test_a_unit_that_does_not_start_fails_the_task(units: Path) -> None:
    result = run(units, ["broken"])
    assert result["failed"] is True and "cannot start broken" in result["msg"]
