"""The lab fixture: one lab of stage-1 for the whole session, always torn down at the end.

Other lab tests reuse `lab` (session-scoped): it returns the project, the stage, the truck nodes and
helpers (SSH with host-key checking on, the stand-in's HTTP API, the lab's CloudOutputs).
Tests marked `lab` are skipped, with the reason, where the lab cannot run (not root, tools missing).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import REPO

# nspawn_pids and wait_for: re-exported for tests that still import them from here (use tests.lab.harness)
from tests.lab.harness import STAGE, Lab, lab_skip_reason, leftovers, nspawn_pids, wait_for  # noqa: F401
from truckctl.lab import api
from truckctl.lab import state as lab_state
from truckctl.project import find_project


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("lab") is not None:
        reason = lab_skip_reason()
        if reason:
            pytest.skip(reason)


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Lab:
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    # TRUCKCTL_TEST_PROJECT: run the lab tests on another project (its own networks and state),
    # e.g. to develop beside a lab that is already up.
    project = find_project(Path(os.environ.get("TRUCKCTL_TEST_PROJECT") or REPO))
    recorded: list[lab_state.LabState] = []

    def teardown() -> None:
        api.down(project)
        left = [item for state in recorded for item in leftovers(state)]
        assert not left, f"the lab left things behind: {left}"

    request.addfinalizer(teardown)  # registered before up: a half-built lab is torn down too
    api.up(project, STAGE)
    state = lab_state.load(project.state_dir)
    assert state is not None
    recorded.append(state)
    return Lab(project, STAGE, api.lab_nodes(project), api.connection(project), state.plan.uplink.standin_address)


# The lab is shared by the whole session: build it (test_lab), converge it (test_truck_tier), then
# run the lifecycle tests on converged nodes, whatever their file names. test_daily runs before, on a
# lab of its own with the same networks (a copy of the project), taken down before the session's is built.
FIRST_MODULES = ("test_daily.py", "test_lab.py", "test_truck_tier.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent

    def rank(item: pytest.Item) -> int:
        if item.path.parent != here:
            return -1  # everything outside tests/lab keeps running first
        name = item.path.name
        return FIRST_MODULES.index(name) if name in FIRST_MODULES else len(FIRST_MODULES)

    items.sort(key=rank)  # stable: keeps the order within each module
