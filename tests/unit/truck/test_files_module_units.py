"""truck_files' units against a stand-in systemctl (first on PATH, its units' state in files): what it
enables and starts, what it reports as started (the roles' restart handlers skip those), check mode, the
drift items, and the daemon-reload that a changed unit file needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO

MODULE = REPO / "playbooks" / "library" / "truck_files.py"
FAKE_SYSTEMCTL = """#!/bin/sh
cmd=$1; shift; [ "$1" = "--quiet" ] && shift
case $cmd in
  is-enabled) [ -e "$FAKE_UNITS/$1.enabled" ];;
  is-active) [ -e "$FAKE_UNITS/$1.active" ];;
  enable) touch "$FAKE_UNITS/$1.enabled";;
  start) [ "$1" != broken ] && touch "$FAKE_UNITS/$1.active";;
  daemon-reload) touch "$FAKE_UNITS/reloaded";;
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


def run(units: Path, names: list[str], check: bool = False, files: list[dict[str, str]] | None = None,
        diff: bool = False) -> dict[str, Any]:
    args = units / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"services": names, "files": files or [],
                                                        "_ansible_check_mode": check, "_ansible_diff": diff}}))
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
    assert result["changed_paths"] == [] and not (units / "units" / "reloaded").exists()
    again = run(units, ["running", "stopped", "new"])
    assert (again["changed"], again["actions"], again["started"], again["drift"]) == (False, [], [], [])


def test_check_mode_reports_the_actions_and_the_drift_but_starts_nothing(units: Path) -> None:
    result = run(units, ["running", "stopped", "new"], check=True, diff=True)
    assert result["actions"] == ["start stopped", "enable new", "start new"] and result["started"] == []
    assert result["drift"] == [
        {"kind": "unit", "item": "stopped", "expected": "enabled and active", "found": "not active"},
        {"kind": "unit", "item": "new", "expected": "enabled and active", "found": "not enabled, not active"},
    ]
    assert result["diff"] == [{"prepared": "start stopped\nenable new\nstart new\n"}]
    assert not (units / "units" / "stopped.active").exists()


def test_a_unit_that_does_not_start_fails_the_task(units: Path) -> None:
    result = run(units, ["broken"])
    assert result["failed"] is True and "cannot start broken" in result["msg"]


def test_a_changed_file_is_a_drift_item_with_its_diff_and_comes_before_the_units(units: Path) -> None:
    target = units / "app.conf"
    target.write_text("port 1\n")
    result = run(units, ["stopped"], check=True, diff=True, files=[{"path": str(target), "content": "port 2\n",
                                                                   "owner": "root", "group": "root"}])
    first = result["drift"][0]
    assert (first["kind"], first["item"], first["found"]) == ("file", str(target), "differs")
    assert first["diff"]["before"] == "port 1\n" and first["diff"]["after"] == "port 2\n"
    assert [i["kind"] for i in result["drift"]] == ["file", "unit"] and target.read_text() == "port 1\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="writes files owned by root")
def test_only_a_changed_unit_file_reloads_systemd(units: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside the unit directories a changed file needs no daemon-reload; this test's unit directory is its own
    (the module's UNIT_DIRS, pointed at the temporary directory through a copy of the module)."""
    copy = units / "truck_files.py"
    unit_dir = units / "system"
    copy.write_text(MODULE.read_text().replace('UNIT_DIRS = ("/etc/systemd/system/",',
                                               f'UNIT_DIRS = ("{unit_dir}/",'))
    monkeypatch.setattr(sys.modules[__name__], "MODULE", copy)
    plain = {"path": str(units / "app.conf"), "content": "x\n"}
    run(units, ["running"], files=[plain])
    assert not (units / "units" / "reloaded").exists()
    run(units, ["running"], files=[{"path": str(unit_dir / "app.service"), "content": "[Unit]\n"}])
    assert (units / "units" / "reloaded").exists()
