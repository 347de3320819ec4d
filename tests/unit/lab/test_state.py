"""The lab state file: what `down` relies on after a crash."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from truckctl.config.loader import load_stage
from truckctl.errors import TruckctlError
from truckctl.lab import state as st
from truckctl.lab.plan import plan_lab
from truckctl.project import Project


def new_state(project_root: Path, state_dir: Path) -> st.LabState:
    plan = plan_lab(load_stage(Project(project_root), "stage-1"), "abc123")
    return st.LabState("abc123", "stage-1", plan, plan.fingerprint(), path=st.state_file(state_dir))


def test_round_trip_keeps_plan_and_resources(example_project: Path, tmp_path: Path) -> None:
    state = new_state(example_project, tmp_path)
    state.record(st.LINK, "tlb12345678")
    state.record(st.PROCESS, "truck-a-gw", pid=1234, start=99, cgroup="truckctl-lab-abc123/truck-a-gw")
    state.complete = True
    state.save()
    loaded = st.load(tmp_path)
    assert loaded is not None
    assert loaded.to_dict() == state.to_dict()
    assert loaded.plan == state.plan
    assert loaded.of_kind(st.PROCESS)[0].data == {"pid": 1234, "start": 99, "cgroup": "truckctl-lab-abc123/truck-a-gw"}


def test_parked_nodes_survive_a_round_trip_and_an_older_state_has_none(example_project: Path,
                                                                       tmp_path: Path) -> None:
    state = new_state(example_project, tmp_path)
    state.parked = [n for n in state.plan.truck_nodes if n.truck == "truck-b"]
    state.save()
    loaded = st.load(tmp_path)
    assert loaded is not None and loaded.parked == state.parked
    older = state.to_dict()
    del older["parked"]  # a state written before the daily move existed
    assert st.LabState.from_dict(older).parked == []


def test_record_persists_at_once_and_only_once(example_project: Path, tmp_path: Path) -> None:
    state = new_state(example_project, tmp_path)
    state.record(st.NETNS, "tl-abc123-truck-a-gw")
    on_disk = json.loads(st.state_file(tmp_path).read_text())
    assert on_disk["resources"] == [{"kind": "netns", "name": "tl-abc123-truck-a-gw", "data": {}}]
    state.record(st.NETNS, "tl-abc123-truck-a-gw")
    state.record(st.PROCESS, "apt-cacher-ng", cgroup="x")
    state.record(st.PROCESS, "apt-cacher-ng", pid=7)
    assert [(r.kind, r.name) for r in state.resources] == [("netns", "tl-abc123-truck-a-gw"),
                                                          ("process", "apt-cacher-ng")]
    assert state.resources[1].data == {"cgroup": "x", "pid": 7}
    assert not list(tmp_path.glob("lab/*.tmp"))


def test_teardown_order_covers_every_kind_drills_then_processes_first() -> None:
    # Drills are undone before anything else (an impostor's namespace, a cut link), then processes.
    assert st.TEARDOWN_ORDER[:2] == [st.DRILL, st.PROCESS]
    assert st.TEARDOWN_ORDER.index(st.MOUNT) < st.TEARDOWN_ORDER.index(st.DIR)
    assert len(set(st.TEARDOWN_ORDER)) == len(st.TEARDOWN_ORDER) == 10


def test_missing_state_means_no_lab(tmp_path: Path) -> None:
    assert st.load(tmp_path) is None


@pytest.mark.parametrize("content", ["{not json", json.dumps({"version": 99}), json.dumps({"version": 1})])
def test_unreadable_state_is_a_one_line_error(tmp_path: Path, content: str) -> None:
    path = st.state_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(TruckctlError) as err:
        st.load(tmp_path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    with st.locked(tmp_path), pytest.raises(TruckctlError, match="another truckctl lab command"), st.locked(tmp_path):
        pass
    with st.locked(tmp_path):  # released after use
        pass


def test_a_dead_holders_lock_is_waited_for_not_refused(tmp_path: Path) -> None:
    """A holder killed while forking leaves its lock with a child until that child's exec: `down`
    right after the kill must wait for it, not report a lab command that no longer runs."""
    lock = st.lab_dir(tmp_path) / "lock"
    lock.parent.mkdir(parents=True)
    child = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"handle = open({str(lock)!r}, 'a+')\n"
        "fcntl.flock(handle, fcntl.LOCK_EX)\n"
        "handle.write('pid 999999999'); handle.flush()\n"  # a holder that is gone
        "print('held', flush=True)\n"
        "time.sleep(1.0)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        started = time.monotonic()
        with st.locked(tmp_path):
            waited = time.monotonic() - started
        assert 0.5 < waited < st.DEAD_HOLDER_WAIT_S  # taken once the child let go (it held it for 1 s)
    finally:
        child.wait(timeout=10)
