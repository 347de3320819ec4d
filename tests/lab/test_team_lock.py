"""Two operators on the same trucks: the team lock on the gateways and the shared history, for real.

The engineer is this host's state directory; CI is a second state directory (TRUCKCTL_STATE_DIR), a
second machine as far as truckctl knows: it is given only what an operator is given (the lab's
description with the nodes' addresses, the SSH key, the pinned host keys and the operator's
certificates for the stand-in) and shares no journal and no lock file with the engineer. What both
meet is the lock on the trucks' gateways. Lease: 30 s (teamlock.LEASE_S).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from typing import Any

import pytest

from tests.lab.harness import STAGE, Lab, wait_for
from tests.lab.runs import set_lan_cable, start, truckctl
from tests.lab.test_faults import finish, run_ids, run_processes
from truckctl.config.loader import load_stage
from truckctl.lab.paths import LabPaths
from truckctl.lifecycle import teamlock
from truckctl.lifecycle.journal import list_runs, show_run
from truckctl.targets import for_kind

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def ci(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The second machine's environment: its own state directory with an operator's credentials."""
    state = tmp_path_factory.mktemp("ci-machine") / "state"
    mine, theirs = LabPaths(lab.project.state_dir), LabPaths(state)
    theirs.root.mkdir(parents=True)
    shutil.copy2(mine.root / "state.json", theirs.root / "state.json")
    shutil.copy2(mine.known_hosts, theirs.known_hosts)
    shutil.copytree(mine.ssh_key.parent, theirs.ssh_key.parent)
    shutil.copytree(mine.pki, theirs.pki)
    return {"TRUCKCTL_STATE_DIR": str(state)}


def locks(lab: Lab) -> list[teamlock.GatewayLock]:
    stage = load_stage(lab.project, STAGE)
    transport = teamlock.transport(for_kind("lab", lab.project), stage)
    return teamlock.read_locks(STAGE, teamlock.gateways(stage), transport)


def free_or_expired(lab: Lab) -> bool:
    return all(lock.state in ("free", "expired") for lock in locks(lab))


def holding_the_lock(lab: Lab) -> tuple[Any, str]:
    """This host's `drift --fix` started, returned once it holds the team lock and is at work on the
    nodes. (`drift`, not `up`: on this shared machine, under load, `up`'s clock precheck now and then
    reads a slow SSH round trip as skew, and these tests are about the lock, not the clocks.) With --full:
    its check-mode run, where on a clean stage the fast path would be done in about a second."""
    known = run_ids(lab)
    process = start(lab, "drift", STAGE, "--fix", "--yes", "--full")

    def holding() -> str | None:
        fresh = [r["run_id"] for r in list_runs(lab.project, STAGE) if r["run_id"] not in known]
        if fresh and any(e.get("kind") == "lock" for e in show_run(lab.project, fresh[0])["events"]):
            return str(fresh[0])
        assert process.poll() is None, f"drift ended before it held the lock: {finish(process)}"
        return None
    run_id = wait_for(holding, 300, "the run to hold the team lock")
    time.sleep(2)  # Ansible at work on the nodes
    return process, run_id


def unlock_here(lab: Lab) -> None:
    """This host's stale lock of a killed run (and its processes), once the test is done with it."""
    code, document, stderr = truckctl(lab, "unlock", STAGE, "--yes", timeout=120)
    assert code == 0, (document["errors"], stderr[-1000:])


def test_up_and_drift_fix_started_together_one_runs_the_other_exits_4_naming_it(lab: Lab, ci: dict[str, str]
                                                                                 ) -> None:
    engineer = start(lab, "up", STAGE, "--tier", "truck", "--full")  # a playbook run: the two overlap
    other = start(lab, "drift", STAGE, "--fix", "--yes", env=ci)
    results = {"engineer": finish(engineer), "ci": finish(other)}
    codes = {who: code for who, (code, _, _) in results.items()}
    assert sorted(codes.values())[-1] == 4 and sorted(codes.values())[0] != 4, codes  # one ran, one exit 4
    loser = next(who for who, code in codes.items() if code == 4)
    winner = "ci" if loser == "engineer" else "engineer"
    error = results[loser][1]["errors"][0]
    held = results[loser][1]["result"]["lock"]
    assert error["code"] == "lock-held" and error["location"] == "truck-a-gw"  # the first gateway in order
    assert held["run_id"] == results[winner][1]["result"]["run_id"]
    for part in (f"{held['user']}@{held['host']}", held["run_id"], "since "):
        assert part in error["message"], error["message"]
    assert free_or_expired(lab)  # the winner released it


def test_sigkilled_holder_its_lock_expires_within_the_lease_and_the_other_proceeds(lab: Lab, ci: dict[str, str]
                                                                                   ) -> None:
    process, run_id = holding_the_lock(lab)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    try:
        code, document, _ = truckctl(lab, "drift", STAGE, "--fix", "--yes", env=ci)
        assert code == 4 and document["result"]["lock"]["run_id"] == run_id, document["errors"]
        left = document["result"]["lock"]["expires_in_s"]
        assert 0 < left <= teamlock.LEASE_S  # not never, not at once
        time.sleep(left + 1)
        code, document, stderr = truckctl(lab, "drift", STAGE, "--fix", "--yes", env=ci)
        assert code != 4, (document["errors"], stderr[-1000:])  # it proceeds (what it finds is its own business)
        assert document["result"]["run_id"]
    finally:
        unlock_here(lab)
    assert not run_processes(process.pid)


def test_a_link_lost_during_a_run_does_not_leave_the_lock_for_ever(lab: Lab, ci: dict[str, str]) -> None:
    """The engineer's link to truck-a's gateway goes (its LAN cable, the only path this operator has)
    mid-run: the run can neither renew nor release the lock there. Once the run is over and the link
    back, the lock on that gateway runs out within the lease and CI proceeds."""
    process, _ = holding_the_lock(lab)
    set_lan_cable(lab, "truck-a-gw", False)
    try:
        code, _, _ = finish(process)
        assert code != 0
    finally:
        set_lan_cable(lab, "truck-a-gw", True)
    wait_for(lambda: free_or_expired(lab), teamlock.LEASE_S + 30, "the lost run's lock to run out")
    code, document, stderr = truckctl(lab, "drift", STAGE, "--fix", "--yes", env=ci)
    assert code != 4, (document["errors"], stderr[-1000:])


def test_runs_on_either_machine_lists_both_operators_runs(lab: Lab, ci: dict[str, str]) -> None:
    """(What the two drift runs find does not matter here: each ran under the lock and is recorded.)"""
    code, theirs, _ = truckctl(lab, "drift", STAGE, env=ci)
    assert code != 4 and theirs["result"]["run_id"], theirs["errors"]
    code, ours, _ = truckctl(lab, "drift", STAGE)
    assert code != 4 and ours["result"]["run_id"], ours["errors"]
    for env, own, other in ((None, ours, theirs), (ci, theirs, ours)):
        code, listed, _ = truckctl(lab, "runs", "--stage", STAGE, env=env)
        assert code == 0 and listed["result"]["shared"]["unreachable"] == {}
        origins = {r["run_id"]: r["origin"] for r in listed["result"]["runs"]}
        assert origins[own["result"]["run_id"]] == "local"
        assert origins[other["result"]["run_id"]] not in ("local", None)  # user@host of the other operator
    code, status, _ = truckctl(lab, "status", STAGE, env=ci)
    assert status["result"]["last_run"]["run_id"] == ours["result"]["run_id"]  # the last run, whoever made it


def test_lock_take_and_release_on_the_gateways(lab: Lab) -> None:
    """The cost a run pays for the team lock (figure printed; the goal is in bench/, not asserted)."""
    stage = load_stage(lab.project, STAGE)
    transport = teamlock.transport(for_kind("lab", lab.project), stage)
    lock = teamlock.TeamLock(STAGE, teamlock.gateways(stage), transport,
                             teamlock.this_holder("bench", "20270101T000000Z-stage-1-bench-0000"))
    started = time.monotonic()
    lock.take()
    assert [g.node for g in lock.held] == ["truck-a-gw", "truck-b-gw"]
    assert lock.release() == []
    print(f"\nteam lock take + release: {time.monotonic() - started:.3f} s")
    assert free_or_expired(lab)

