"""The stage lock: one holder at a time, stale holders reported and cleared by unlock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from truckctl.errors import ExitCode, TruckctlError
from truckctl.lifecycle.lock import lock_path, lock_status, read_holder, stage_lock, unlock
from truckctl.project import Project


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.delenv("TRUCKCTL_STATE_DIR", raising=False)
    return Project(tmp_path)


def test_second_holder_is_refused_naming_the_first(project: Project) -> None:
    with stage_lock(project, "stage-1", "up stage-1") as holder:
        assert read_holder(project, "stage-1") == holder
        with pytest.raises(TruckctlError) as caught, stage_lock(project, "stage-1", "drift stage-1"):
            pass
        assert caught.value.exit_code == ExitCode.LOCKED
        message = caught.value.problems[0].message
        assert f"pid {os.getpid()}" in message and socket.gethostname() in message and "'up stage-1'" in message
        assert "STALE" not in message
    assert not lock_path(project, "stage-1").exists()  # released


def test_other_stages_are_independent(project: Project) -> None:
    with stage_lock(project, "stage-1", "up"), stage_lock(project, "stage-2", "up"):
        assert lock_status(project, "stage-2") is not None


def test_lock_released_on_error(project: Project) -> None:
    with pytest.raises(RuntimeError), stage_lock(project, "stage-1", "up"):
        raise RuntimeError("boom")
    assert read_holder(project, "stage-1") is None


def _dead_holder(project: Project) -> int:
    """A lock left by a process that no longer exists (as after SIGKILL)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    pid = int(child.stdout)
    path = lock_path(project, "stage-1")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "user": "ci", "command": "up stage-1",
                                "started": 1.0, "run_id": None, "pid_start": "1"}))
    return pid


def test_dead_holder_is_reported_stale_and_unlock_clears_it(project: Project) -> None:
    pid = _dead_holder(project)
    with pytest.raises(TruckctlError) as caught, stage_lock(project, "stage-1", "up"):
        pass
    assert caught.value.exit_code == ExitCode.LOCKED
    assert "STALE" in caught.value.problems[0].message and f"pid {pid}" in caught.value.problems[0].message
    assert "truckctl unlock stage-1" in caught.value.problems[0].message
    status = lock_status(project, "stage-1")
    assert status is not None and status["stale"] is True
    cleared = unlock(project, "stage-1")
    assert cleared["cleared"] is True
    with stage_lock(project, "stage-1", "up"):
        pass


def test_unlock_refuses_a_live_holder(project: Project) -> None:
    with stage_lock(project, "stage-1", "up"):
        with pytest.raises(TruckctlError) as caught:
            unlock(project, "stage-1")
        assert caught.value.exit_code == ExitCode.LOCKED
        assert lock_path(project, "stage-1").exists()


def test_unlock_when_not_locked(project: Project) -> None:
    assert unlock(project, "stage-3")["cleared"] is False


def test_other_host_lock_needs_force(project: Project) -> None:
    path = lock_path(project, "stage-1")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": 1, "host": "other-laptop", "user": "x", "command": "up", "started": 1.0}))
    with pytest.raises(TruckctlError):
        unlock(project, "stage-1")
    assert unlock(project, "stage-1", force=True)["cleared"] is True


def test_torn_lock_file_counts_as_stale(project: Project) -> None:
    path = lock_path(project, "stage-1")
    path.parent.mkdir(parents=True)
    path.write_text('{"pid": 12')
    with pytest.raises(TruckctlError) as caught, stage_lock(project, "stage-1", "up"):
        pass
    assert "STALE" in caught.value.problems[0].message
    assert unlock(project, "stage-1")["cleared"] is True
