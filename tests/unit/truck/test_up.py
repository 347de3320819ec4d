"""The truck tier as one call: the plan it runs (playbooks, state dir, limit, check mode) and how a
cancelled run ends (the ansible-runner call itself is replaced by canned results)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import REPO, FakeConnection, make_cloud
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.project import Project
from truckctl.truck import tier as core
from truckctl.truck.events import Change, HostEvent, HostStats, TruckRunResult
from truckctl.truck.plan import RunPlan


def canned(changed: int = 0, failed: bool = False, check: bool = False, status: str = "") -> TruckRunResult:
    hosts = {"truck-a-gw": HostStats(ok=20, changed=changed), "truck-a-hv1": HostStats(ok=11, failed=int(failed))}
    return TruckRunResult(
        status=status or ("failed" if failed else "successful"), rc=2 if failed else 0, check=check, hosts=hosts,
        changes=[Change("truck-a-gw", "Configure chrony", "--- a\n+++ b\n-x\n+y\n")] * changed,
        failures=[HostEvent("truck-a-hv1", "Run chrony", "failed", "cannot start chrony")] if failed else [],
        duration_s=1.5, artifacts_dir="/state/truck/artifacts/run-1")


@pytest.fixture
def fake_truck_run(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace the ansible-runner call; record the plan that would run."""
    seen: dict[str, Any] = {"result": canned()}

    def run_plan(plan: RunPlan, settings: Any, on_event: Any, cancel: Any) -> TruckRunResult:
        seen["plan"], seen["settings"] = plan, settings
        on_event(HostEvent("truck-a-gw", "Configure chrony", "changed"))
        return seen["result"]

    monkeypatch.setattr("truckctl.truck.runner.run_plan", run_plan)
    return seen


def test_truck_tier_runs_the_playbooks_with_the_state_dir(fake_truck_run: dict[str, Any], stage: Stage) -> None:
    events: list[HostEvent] = []
    hosts: list[list[str]] = []
    result = core.truck_tier(Project(REPO), stage, core.UpRequest("stage-1", "lab", "truck", limit="truck-a-gw"),
                             FakeConnection(), make_cloud(stage),
                             core.UpCallbacks(on_host_event=events.append, on_hosts=hosts.append))
    plan = fake_truck_run["plan"]
    assert plan.project_dir == REPO / "playbooks"
    assert plan.limit == "truck-a-gw" and plan.check is False
    assert fake_truck_run["settings"].state_dir == Project(REPO).state_dir
    assert hosts == [["truck-a-gw"]]
    assert events == [HostEvent("truck-a-gw", "Configure chrony", "changed")]
    assert result.hosts["truck-a-gw"].ok == 20


def test_check_mode_reaches_the_plan(fake_truck_run: dict[str, Any], stage: Stage) -> None:
    fake_truck_run["result"] = canned(changed=1, check=True)
    result = core.truck_tier(Project(REPO), stage, core.UpRequest("stage-1", "lab", "truck", check=True),
                             FakeConnection(), make_cloud(stage), core.UpCallbacks())
    assert fake_truck_run["plan"].check is True
    assert result.changed == 1 and result.changes[0].diff.startswith("--- a")


def test_a_cancelled_run_is_an_interruption(fake_truck_run: dict[str, Any], stage: Stage) -> None:
    fake_truck_run["result"] = canned(status="canceled")
    with pytest.raises(TruckctlError) as caught:
        core.truck_tier(Project(REPO), stage, core.UpRequest("stage-1", "lab", "truck"), FakeConnection(),
                        make_cloud(stage), core.UpCallbacks())
    assert caught.value.exit_code == ExitCode.INTERRUPTED
