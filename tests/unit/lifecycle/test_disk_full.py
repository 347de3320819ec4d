"""A full disk under the state directory: writes really fail with ENOSPC (through /dev/full), and
truckctl says so in one line, releases the lock, never leaves a lock file that would later look
stale, and never lets an unrecorded run look like a clean one. (Live, on a real full tmpfs:
tests/lab/test_faults.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.helpers import REPO
from truckctl.cli.app import app
from truckctl.config.loader import load_stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.lifecycle import journal as journal_module
from truckctl.lifecycle import lock as lock_module
from truckctl.lifecycle.journal import list_runs
from truckctl.lifecycle.lock import lock_path, read_holder
from truckctl.lifecycle.run import finish_run, locked_run
from truckctl.lifecycle.steps import StepResult
from truckctl.project import Project
from truckctl.targets.lab import LabTarget

FULL = Path("/dev/full")  # every write to it fails with ENOSPC
RUN_ID = "20270508T060000Z-stage-1-up-0001"

pytestmark = pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full")


@pytest.fixture
def project(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setattr(journal_module, "new_run_id", lambda stage, command: RUN_ID)
    return project


def run_dir(project: Project) -> Path:
    return project.state_dir / "runs" / RUN_ID


def test_a_journal_that_cannot_start_stops_the_run_before_anything(project: Project) -> None:
    run_dir(project).mkdir(parents=True)
    (run_dir(project) / "summary.json.tmp").symlink_to(FULL)
    ran: list[str] = []
    stage = load_stage(project, "stage-1")
    with pytest.raises(TruckctlError) as caught, locked_run(project, stage, "up", LabTarget(project)):
        ran.append("body")
    assert ran == []
    problem = caught.value.problems[0]
    assert problem.code == "state-unwritable" and "No space left on device" in problem.message
    assert "nothing was changed" in problem.message
    assert read_holder(project, "stage-1") is None  # the lock was released
    assert not run_dir(project).exists()  # no half-made run left to list


def test_a_lock_that_cannot_be_written_is_not_left_behind(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    def fdopen_full(fd: int, mode: str) -> Any:
        os.close(fd)
        return open(FULL, mode)

    monkeypatch.setattr(lock_module.os, "fdopen", fdopen_full)
    with pytest.raises(TruckctlError) as caught, lock_module.stage_lock(project, "stage-1", "up stage-1"):
        pass
    assert caught.value.problems[0].code == "state-unwritable"
    assert not lock_path(project, "stage-1").exists()  # else the next run would find a "stale" lock


def test_a_journal_that_fills_up_mid_run_keeps_what_it_has_and_fails_the_run(project: Project) -> None:
    stage = load_stage(project, "stage-1")
    with pytest.raises(TruckctlError) as caught, locked_run(project, stage, "up", LabTarget(project)) as run:
        run.step("prechecks", lambda: StepResult({"ok": True}))
        events = run_dir(project) / "events.jsonl"
        whole = events.read_text()
        events.rename(events.with_name("events.before"))
        events.symlink_to(FULL)  # the disk is full from here on
        run.step("truck", lambda: StepResult({}, changed=3))
        assert run.journal.write_error is not None and "No space left on device" in run.journal.write_error
        finish_run(run, ExitCode.OK, {"stage": "stage-1"})
    error = caught.value
    assert error.exit_code == ExitCode.ERROR
    assert [p.code for p in error.problems] == ["journal-incomplete"]
    assert "complete up to then" in error.problems[0].message
    assert read_holder(project, "stage-1") is None
    # What was written before the disk filled is intact: whole lines, each one parseable.
    before = [json.loads(line) for line in whole.splitlines()]
    assert [e["kind"] for e in before] == ["lock", "step-start", "step-end"]  # the team lock, then the step
    # The summary says how the run ended (its last write is retried) and that the record is short.
    summary = json.loads((run_dir(project) / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["journal_incomplete"]
    assert list_runs(project)[0]["status"] == "failed"


def test_the_cli_reports_a_full_state_directory_in_one_line(project: Project) -> None:
    run_dir(project).mkdir(parents=True)
    (run_dir(project) / "summary.json.tmp").symlink_to(FULL)
    result = CliRunner().invoke(app, ["-C", str(REPO), "drift", "stage-1", "--json"])
    document = json.loads(result.stdout)
    assert result.exit_code == 1 and document["exit_code"] == 1
    assert document["errors"][0]["code"] == "state-unwritable"
    assert "Traceback" not in result.stdout + result.stderr
    assert not lock_path(project, "stage-1").exists()
