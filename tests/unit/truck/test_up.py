"""`truckctl up`: what is supported, how results map to exit codes, and the CLI around it (the
truck run itself is replaced by canned results: no Ansible, no lab)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
from typer.testing import CliRunner

from tests.unit.truck.conftest import REPO, FakeConnection, make_cloud
from truckctl.cli.app import app
from truckctl.config.model import Stage
from truckctl.core import up as core
from truckctl.errors import ExitCode, TruckctlError
from truckctl.project import Project
from truckctl.truck.events import Change, HostEvent, HostStats, TruckRunResult
from truckctl.truck.plan import RunPlan


def canned(changed: int = 0, failed: bool = False, check: bool = False) -> TruckRunResult:
    hosts = {"truck-a-gw": HostStats(ok=20, changed=changed), "truck-a-hv1": HostStats(ok=11, failed=int(failed))}
    return TruckRunResult(
        status="failed" if failed else "successful", rc=2 if failed else 0, check=check, hosts=hosts,
        changes=[Change("truck-a-gw", "Configure chrony", "--- a\n+++ b\n-x\n+y\n")] * changed,
        failures=[HostEvent("truck-a-hv1", "Run chrony", "failed", "cannot start chrony")] if failed else [],
        duration_s=1.5, artifacts_dir="/state/truck/artifacts/run-1")


@pytest.fixture
def fake_truck_run(monkeypatch: pytest.MonkeyPatch, stage: Stage) -> dict[str, Any]:
    """Replace the lab inputs and the ansible-runner call; record the plan that would run."""
    seen: dict[str, Any] = {"result": canned()}

    def inputs(project: Project, stage_: Stage, target: str) -> tuple[FakeConnection, Any]:
        return FakeConnection(), make_cloud(stage_)

    def run_plan(plan: RunPlan, settings: Any, on_event: Any, cancel: Any) -> TruckRunResult:
        seen["plan"], seen["settings"] = plan, settings
        on_event(HostEvent("truck-a-gw", "Configure chrony", "changed"))
        return seen["result"]

    monkeypatch.setattr(core, "_target_inputs", inputs)
    monkeypatch.setattr("truckctl.truck.runner.run_plan", run_plan)
    return seen


@pytest.mark.parametrize(("target", "tier"), [("aws", "all"), ("aws", "truck"), ("lab", "cloud"), ("lab", "all")])
def test_unimplemented_combinations_say_what_is_supported(target: str, tier: str) -> None:
    with pytest.raises(TruckctlError) as caught:
        core.check_request(core.UpRequest("stage-1", target, tier))
    assert caught.value.exit_code == ExitCode.USAGE
    assert "supported is --target lab --tier truck" in caught.value.problems[0].message


def test_unknown_target_and_tier_are_usage_errors() -> None:
    for request in (core.UpRequest("stage-1", "gcp", "truck"), core.UpRequest("stage-1", "lab", "trucks")):
        with pytest.raises(TruckctlError) as caught:
            core.check_request(request)
        assert caught.value.exit_code == ExitCode.USAGE


def test_up_runs_the_truck_tier_with_the_state_dir_and_playbooks(fake_truck_run: dict[str, Any]) -> None:
    events: list[HostEvent] = []
    hosts: list[list[str]] = []
    result = core.up(Project(REPO), core.UpRequest("stage-1", "lab", "truck", limit="truck-a-gw"),
                     core.UpCallbacks(on_host_event=events.append, on_hosts=hosts.append))
    plan = fake_truck_run["plan"]
    assert plan.project_dir == REPO / "playbooks"
    assert plan.limit == "truck-a-gw" and plan.check is False
    assert fake_truck_run["settings"].state_dir == Project(REPO).state_dir
    assert hosts == [["truck-a-gw"]]
    assert events == [HostEvent("truck-a-gw", "Configure chrony", "changed")]
    assert result.tiers == ["truck"]
    assert result.exit_code == ExitCode.OK
    assert result.as_dict()["truck"]["hosts"]["truck-a-gw"]["ok"] == 20


def test_check_mode_with_changes_exits_3(fake_truck_run: dict[str, Any]) -> None:
    fake_truck_run["result"] = canned(changed=1, check=True)
    result = core.up(Project(REPO), core.UpRequest("stage-1", "lab", "truck", check=True))
    assert fake_truck_run["plan"].check is True
    assert result.exit_code == ExitCode.CHANGES


def test_applied_changes_are_success(fake_truck_run: dict[str, Any]) -> None:
    fake_truck_run["result"] = canned(changed=3)
    assert core.up(Project(REPO), core.UpRequest("stage-1", "lab", "truck")).exit_code == ExitCode.OK


def test_a_failed_node_raises_with_the_result_attached(fake_truck_run: dict[str, Any]) -> None:
    fake_truck_run["result"] = canned(failed=True)
    with pytest.raises(TruckctlError) as caught:
        core.up(Project(REPO), core.UpRequest("stage-1", "lab", "truck"))
    assert caught.value.exit_code == ExitCode.ERROR
    problem = caught.value.problems[0]
    assert (problem.code, problem.location) == ("truck-failed", "truck-a-hv1")
    assert "Run chrony: cannot start chrony" in problem.message
    truck = cast(dict[str, Any], caught.value.result["truck"])
    assert truck["hosts"]["truck-a-hv1"]["state"] == "failed"


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, ["-C", str(REPO), *args])


def test_cli_json_envelope_for_an_unsupported_target() -> None:
    result = cli("up", "stage-1", "--json")
    document = json.loads(result.stdout)
    assert result.exit_code == 2
    assert document["command"] == "up" and document["ok"] is False
    assert document["errors"][0]["code"] == "unsupported"


def test_cli_json_result_of_a_lab_run(fake_truck_run: dict[str, Any]) -> None:
    result = cli("up", "stage-1", "--target", "lab", "--tier", "truck", "--json")
    assert result.exit_code == 0, result.stdout
    document = json.loads(result.stdout)  # exactly one JSON document, no progress lines
    assert document["ok"] is True
    assert document["result"]["truck"]["hosts"]["truck-a-hv1"]["state"] == "ok"


def test_cli_plain_output_has_progress_lines_and_a_summary(fake_truck_run: dict[str, Any]) -> None:
    result = cli("up", "stage-1", "--target", "lab", "--tier", "truck")
    assert result.exit_code == 0
    out = result.stdout
    assert "truck-a-gw: changed: Configure chrony" in out
    assert "truck-a-gw" in out and "truck-a-hv1" in out and "unreachable" in out  # the summary table
    assert "artifacts: /state/truck/artifacts/run-1" in out


def test_cli_failure_shows_the_summary_and_the_error(fake_truck_run: dict[str, Any]) -> None:
    fake_truck_run["result"] = canned(failed=True)
    result = cli("up", "stage-1", "--target", "lab", "--tier", "truck")
    assert result.exit_code == 1
    assert "failed" in result.stdout
    assert "truck-a-hv1: Run chrony: cannot start chrony" in result.stderr


def test_up_help_does_not_import_heavy_modules() -> None:
    import subprocess
    import sys

    code = ("import sys; from truckctl.cli.app import app; "
            "print(sorted(m for m in ('ansible_runner', 'ansible', 'rich.live', 'truckctl.truck.runner') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(REPO)).stdout
    assert out.strip() == "[]"
