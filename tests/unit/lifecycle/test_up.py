"""`truckctl up` as one run, with the lab, SSH, Ansible and the offline plan replaced by fakes:
step order, the journal, the lock, failures named by step, secrets scrubbed, Ctrl-C, the CLI."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from tests.helpers import KEY_BODY, REPO, FakeConnection, FakeLabTarget, make_cloud
from truckctl.cli.app import app
from truckctl.cloud.engine import OperationResult
from truckctl.config.loader import load_stage
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.lifecycle import orchestrator
from truckctl.lifecycle.journal import list_runs, show_run
from truckctl.lifecycle.lock import read_holder, stage_lock
from truckctl.lifecycle.plan import OfflineMove
from truckctl.lifecycle.prechecks import PrecheckReport
from truckctl.lifecycle.steps import StepResult
from truckctl.project import Project
from truckctl.targets.aws import AwsTarget
from truckctl.truck.events import HostEvent, HostStats, TruckRunResult
from truckctl.truck.fastcheck import FastCheck
from truckctl.truck.plan import build_plan


def truck_result(failed: bool = False) -> TruckRunResult:
    hosts = {"truck-a-gw": HostStats(ok=20, changed=2), "truck-a-hv1": HostStats(ok=11, failed=int(failed))}
    return TruckRunResult(status="failed" if failed else "successful", rc=2 if failed else 0, check=False,
                          hosts=hosts, changes=[], duration_s=1.0, artifacts_dir="/state/truck/artifacts/run-1",
                          failures=[HostEvent("truck-a-hv1", "Run chrony", "failed", "cannot start")] if failed
                          else [])


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, project: Project) -> dict[str, Any]:
    target = FakeLabTarget(project)
    calls = target.calls
    seen: dict[str, Any] = {"calls": calls, "truck": truck_result(), "precheck_problems": [], "target": target}

    def prechecks(stage_: Stage, options: Any, connection: Any, target_: Any, reports: list[PrecheckReport]
                  ) -> StepResult:
        calls.append("prechecks")
        if seen["precheck_problems"]:
            raise TruckctlError(seen["precheck_problems"], ExitCode.ERROR, {})
        reports.append(PrecheckReport())
        return StepResult({"ok": True, "checks": {}})

    def run_plan(plan: Any, settings: Any, on_event: Any, cancel: Any) -> TruckRunResult:
        calls.append("truck")
        seen["plan"] = plan
        if seen.get("interrupt"):
            raise KeyboardInterrupt
        on_event(HostEvent("truck-a-gw", "Install the key", "changed", f"wrote {KEY_BODY['truck-a']}"))
        return seen["truck"]

    monkeypatch.setattr(orchestrator, "prechecks", prechecks)
    monkeypatch.setattr("truckctl.truck.runner.run_plan", run_plan)
    monkeypatch.setattr("truckctl.targets.for_kind", lambda kind, project_: target)  # the CLI's choice
    return seen


def test_up_runs_every_step_and_journals_it(project: Project, fakes: dict[str, Any]) -> None:
    result = orchestrator.up(fakes["target"], orchestrator.UpRequest("stage-1")).to_json()
    assert fakes["calls"][:2] == ["lab", "prechecks"]
    assert set(fakes["calls"][2:4]) == {"cloud", "truck"}  # the offline plan runs beside the truck tier
    assert fakes["calls"][-1] == "verify"
    assert result["cloud"]["resources"] == 67 and result["truck"]["changed"] == 2
    assert "stand-in" in result["cloud_source"]
    summary = show_run(project, result["run_id"])["summary"]
    assert summary["status"] == "ok" and summary["command"] == "up" and summary["target"] == "lab"
    assert list(summary["steps"]) == ["lab", "prechecks", "liveness", "truck", "cloud", "verify"]
    assert read_holder(project, "stage-1") is None  # lock released


def test_secrets_never_reach_the_journal(project: Project, fakes: dict[str, Any]) -> None:
    result = orchestrator.up(fakes["target"], orchestrator.UpRequest("stage-1")).to_json()
    run_dir = project.state_dir / "runs" / result["run_id"]
    text = "".join(p.read_text() for p in run_dir.iterdir())
    assert KEY_BODY["truck-a"] not in text and "[redacted]" in text
    assert KEY_BODY["truck-a"] not in json.dumps(result)


def test_failed_precheck_stops_before_any_change(project: Project, fakes: dict[str, Any]) -> None:
    fakes["precheck_problems"] = [Problem("address-conflict", "address 10.31.1.11 is also answered by MAC x",
                                          "truck-a-gw")]
    with pytest.raises(TruckctlError) as caught:
        orchestrator.up(fakes["target"], orchestrator.UpRequest("stage-1"))
    assert caught.value.exit_code == ExitCode.ERROR
    assert fakes["calls"] == ["lab", "prechecks"]  # nothing after: no cloud, no truck
    assert list_runs(project)[0]["failed_step"] == "prechecks"
    assert read_holder(project, "stage-1") is None


def test_failed_node_names_the_step_and_node(project: Project, fakes: dict[str, Any]) -> None:
    fakes["truck"] = truck_result(failed=True)
    with pytest.raises(TruckctlError) as caught:
        orchestrator.up(fakes["target"], orchestrator.UpRequest("stage-1"))
    problem = caught.value.problems[0]
    assert (problem.code, problem.location) == ("truck-failed", "truck-a-hv1")
    assert caught.value.result["failed_step"] == "truck"
    assert "verify" not in fakes["calls"]
    assert list_runs(project)[0]["status"] == "failed"


def test_policy_violation_fails_the_run(project: Project, fakes: dict[str, Any]) -> None:
    fakes["target"].policy = [{"rule": "s3-encrypted", "resource": "datalake", "message": "no SSE-KMS"}]
    with pytest.raises(TruckctlError) as caught:
        orchestrator.up(fakes["target"], orchestrator.UpRequest("stage-1"))
    assert caught.value.problems[0].code == "policy-violation"
    assert caught.value.result["failed_step"] == "cloud"


def test_locked_stage_exits_4_and_runs_nothing(project: Project, fakes: dict[str, Any]) -> None:
    with stage_lock(project, "stage-1", "up stage-1 (another run)"), pytest.raises(TruckctlError) as caught:
        orchestrator.up(fakes["target"], orchestrator.UpRequest("stage-1"))
    assert caught.value.exit_code == ExitCode.LOCKED and "another run" in caught.value.problems[0].message
    assert fakes["calls"] == []


def test_ctrl_c_exits_130_releases_the_lock_and_closes_the_journal(project: Project, fakes: dict[str, Any]
                                                                   ) -> None:
    fakes["interrupt"] = True
    with pytest.raises(TruckctlError) as caught:
        orchestrator.up(fakes["target"], orchestrator.UpRequest("stage-1"))
    assert caught.value.exit_code == ExitCode.INTERRUPTED
    assert read_holder(project, "stage-1") is None
    assert list_runs(project)[0]["status"] == "interrupted"


def test_tier_truck_skips_the_cloud_and_limit_skips_the_smoke_check(project: Project, fakes: dict[str, Any]
                                                                   ) -> None:
    orchestrator.up(fakes["target"], orchestrator.UpRequest("stage-1", tier="truck", limit="truck-a-gw"))
    assert fakes["calls"] == ["lab", "prechecks", "truck"]
    assert fakes["plan"].limit == "truck-a-gw"


def test_aws_without_pulumi_writes_nothing(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: None)
    with pytest.raises(TruckctlError) as caught:
        orchestrator.up(AwsTarget(project), orchestrator.UpRequest("stage-1"))
    assert caught.value.exit_code == ExitCode.ERROR
    assert "pulumi" in caught.value.problems[0].message.lower()
    assert not project.state_dir.exists()


@pytest.mark.parametrize("args", [["--target", "gcp"], ["--tier", "trucks"]])
def test_bad_target_or_tier_is_a_usage_error(project: Project, args: list[str], monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Click refuses a choice outside the enum; the console entry point still prints one JSON document."""
    from truckctl.cli.app import main

    monkeypatch.setattr("sys.argv", ["truckctl", "-C", str(REPO), "up", "stage-1", *args, "--json"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == ExitCode.USAGE
    assert json.loads(capsys.readouterr().out)["exit_code"] == 2


def test_cli_json_is_one_document(project: Project, fakes: dict[str, Any]) -> None:
    result = CliRunner().invoke(app, ["-C", str(REPO), "up", "stage-1", "--json"])
    assert result.exit_code == 0, result.stdout
    document = json.loads(result.stdout)
    assert document["ok"] is True and document["command"] == "up"
    assert document["result"]["truck"]["hosts"]["truck-a-hv1"]["state"] == "ok"


def test_cli_plain_output_has_steps_progress_and_summary(project: Project, fakes: dict[str, Any]) -> None:
    result = CliRunner().invoke(app, ["-C", str(REPO), "up", "stage-1"])
    assert result.exit_code == 0
    out = result.stdout
    assert "prechecks:" in out and "the cloud tier is the offline plan" in out
    assert "truck-a-gw: changed: Install the key" in out
    assert "truck-a-gw" in out and "truck-a-hv1" in out and "unreachable" in out  # the summary table
    assert "smoke check: telemetry reached the cloud side" in out
    assert KEY_BODY["truck-a"] not in out


def test_cli_failure_shows_the_error_per_node(project: Project, fakes: dict[str, Any]) -> None:
    fakes["truck"] = truck_result(failed=True)
    result = CliRunner().invoke(app, ["-C", str(REPO), "up", "stage-1"])
    assert result.exit_code == 1
    assert "truck-a-hv1: Run chrony: cannot start" in result.stderr


# ---- the fast path: a stage as at its last clean run runs no playbook (truck.fastcheck) -------


class FakeFastPath:
    """The fast path as the orchestrator sees it: clean unless --full; the full runs it saw."""

    runs: ClassVar[list[TruckRunResult]] = []

    def __init__(self, state_dir: Any, stage: str, plan: Any, connection: Any, addresses: dict[str, str]) -> None:
        self.hosts = list(addresses)

    def try_clean(self, full: bool = False) -> FastCheck:
        if full:
            return FastCheck(False, "not used: --full", 0.4)
        return FastCheck(True, f"every node as at the last clean run ({len(self.hosts)} nodes)", 0.4)

    def after_full_run(self, run: TruckRunResult) -> None:
        FakeFastPath.runs.append(run)


@pytest.fixture
def fast_path(monkeypatch: pytest.MonkeyPatch) -> type[FakeFastPath]:
    FakeFastPath.runs = []
    monkeypatch.setattr(orchestrator, "FastPath", FakeFastPath)
    return FakeFastPath


def test_a_stage_as_at_its_last_clean_run_is_converged_without_a_playbook_run(
        project: Project, fakes: dict[str, Any], fast_path: type[FakeFastPath]) -> None:
    result = CliRunner().invoke(app, ["-C", str(REPO), "up", "stage-1"])
    assert result.exit_code == 0, result.output
    assert "truck" not in fakes["calls"] and "verify" in fakes["calls"]  # the smoke check still runs
    assert "every node as at the last clean run (6 nodes)" in result.stdout and "no playbook run" in result.stdout
    document = json.loads(CliRunner().invoke(app, ["-C", str(REPO), "up", "stage-1", "--json"]).stdout)["result"]
    assert document["truck_check"]["method"] == "fingerprint" and document["truck"]["changed"] == 0
    assert not document["truck"]["check"] and len(document["truck"]["hosts"]) == 6
    events = show_run(project, document["run_id"])["events"]
    assert sum(1 for e in events if e.get("kind") == "node" and e.get("state") == "ok") == 6
    assert fast_path.runs == []


def test_full_runs_site_yml_and_lets_it_record_the_baseline(project: Project, fakes: dict[str, Any],
                                                          fast_path: type[FakeFastPath]) -> None:
    result = orchestrator.up(fakes["target"], orchestrator.UpRequest("stage-1", full=True)).to_json()
    assert "truck" in fakes["calls"] and result["truck_check"]["fast_path"] == "not used: --full"
    assert fast_path.runs == [fakes["truck"]]


@pytest.mark.parametrize("request_", [
    orchestrator.UpRequest("stage-1", limit="truck-a-gw"),
    orchestrator.UpRequest("stage-1", check=True),
    orchestrator.UpRequest("stage-1", exclude=("truck-b-hv1",)),
])
def test_a_limit_a_check_or_a_node_left_out_always_runs_site_yml(project: Project, fakes: dict[str, Any],
                                                                 request_: orchestrator.UpRequest) -> None:
    stage = load_stage(project, "stage-1")
    assert orchestrator.converge_fast_path(project, stage, request_, fakes.get("plan"), FakeConnection()) is None
    whole = orchestrator.converge_fast_path(project, stage, orchestrator.UpRequest("stage-1"), build_plan(
        project.playbooks_dir, stage, make_cloud(stage), FakeConnection(), "lab"), FakeConnection())
    assert whole is not None and whole.fallback == "playbook run"


# ---- a node down before the run: left out, the others converge, exit 1 naming it ------------

REAL_PRECHECKS = orchestrator.prechecks  # the fakes replace it; these tests use the real one


def unreachable_report(*nodes: str) -> PrecheckReport:
    report = PrecheckReport()
    report.add("ssh", [Problem("node-unreachable", f"node {n} (10.0.0.1) is not reachable over SSH: unreachable", n)
                       for n in nodes])
    return report


@pytest.fixture
def down_nodes(fakes: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    nodes: list[str] = []
    monkeypatch.setattr(orchestrator, "prechecks", REAL_PRECHECKS)
    monkeypatch.setattr(orchestrator, "run_prechecks", lambda stage_, target, connection, chosen:
                        unreachable_report(*[n.name for _, n in chosen if n.name in nodes]))
    fakes["smoke_trucks"] = fakes["target"].smoked
    return nodes


def test_an_unreachable_node_is_left_out_the_others_converge_and_the_run_fails_naming_it(
        project: Project, fakes: dict[str, Any], down_nodes: list[str]) -> None:
    down_nodes.append("truck-b-hv2")
    with pytest.raises(TruckctlError) as caught:
        orchestrator.up(fakes["target"], orchestrator.UpRequest("stage-1"))
    error = caught.value
    assert error.exit_code == ExitCode.ERROR
    assert [(p.code, p.location) for p in error.problems] == [("node-unreachable", "truck-b-hv2")]
    assert "left out of this run" in error.problems[0].message
    plan = fakes["plan"]
    assert "truck-b-hv2" not in plan.hosts and len(plan.hosts) == 5
    assert plan.limit == ",".join(plan.hosts)  # Ansible is told exactly which nodes to run on
    assert fakes["calls"][-1] == "verify" and fakes["smoke_trucks"] == ["truck-a", "truck-b"]
    run = show_run(project, error.result["run_id"])
    summary = run["summary"]
    assert summary["status"] == "failed" and summary["failed_step"] == "prechecks"
    assert summary["steps"]["prechecks"]["status"] == "partial"
    assert summary["steps"]["prechecks"]["summary_unreachable"] == ["truck-b-hv2"]
    assert summary["steps"]["truck"]["status"] == "ok"
    assert [e["node"] for e in run["events"] if e["kind"] == "node" and e.get("state") == "unreachable"] == [
        "truck-b-hv2"]
    assert read_holder(project, "stage-1") is None


def test_a_truck_whose_gateway_is_unreachable_is_not_smoke_checked(project: Project, fakes: dict[str, Any],
                                                                   down_nodes: list[str]) -> None:
    down_nodes.append("truck-b-gw")
    with pytest.raises(TruckctlError) as caught:
        orchestrator.up(fakes["target"], orchestrator.UpRequest("stage-1"))
    assert caught.value.problems[0].location == "truck-b-gw"
    assert fakes["smoke_trucks"] == ["truck-a"]


def test_every_node_unreachable_stops_in_the_prechecks(project: Project, fakes: dict[str, Any],
                                                       down_nodes: list[str]) -> None:
    down_nodes.append("truck-a-hv1")
    with pytest.raises(TruckctlError) as caught:
        orchestrator.up(fakes["target"], orchestrator.UpRequest("stage-1", limit="truck-a-hv1"))
    assert caught.value.problems[0].code == "node-unreachable"
    assert "truck" not in fakes["calls"]
    assert list_runs(project)[0]["failed_step"] == "prechecks"


def test_an_unknown_limit_is_refused_before_the_lock_and_the_journal(project: Project, fakes: dict[str, Any]
                                                                     ) -> None:
    with pytest.raises(TruckctlError) as caught:
        orchestrator.up(fakes["target"], orchestrator.UpRequest("stage-1", limit="truck-z-gw"))
    assert caught.value.exit_code == ExitCode.USAGE and fakes["calls"] == []
    assert not project.state_dir.exists()


# ---- the race's one cloud: each up is a move from the stage the race is at -------------------------

def test_lab_up_records_the_stage_and_the_next_move_starts_there(project: Project, fakes: dict[str, Any]) -> None:
    from truckctl.cloud import current
    from truckctl.lifecycle.plan import move_origin

    orchestrator.up(fakes["target"], orchestrator.UpRequest("stage-1"))
    assert current.read(project, "lab") == "stage-1" and current.read(project, "aws") is None
    assert move_origin(project, "stage-7", "lab") == "stage-1"  # from the stage the race is at
    current.write(project, "lab", None)  # after `down`: between stages
    assert move_origin(project, "stage-7", "lab") == "stage-6"  # the stage before in race order
    assert move_origin(project, "stage-1", "lab") is None  # the race's first deployment


class RecordingEngine:
    """What AwsTarget asks of Pulumi, recorded; `up` answers with the example race's outputs."""

    def __init__(self, calls: list[str], stage: Stage) -> None:
        self.calls, self.stage = calls, stage

    def up(self) -> tuple[Any, Any]:
        self.calls.append("pulumi up")
        return make_cloud(self.stage, target="aws"), OperationResult("up", {"update": 2, "same": 70})


def aws_target(project: Project, calls: list[str], move: dict[str, Any]) -> AwsTarget:
    def move_check(project_: Project, stage: str, target: str) -> OfflineMove:
        calls.append(f"move check {stage} on {target}")
        return OfflineMove({"policy": [], "policy_rules": ["s3-encrypted"], "counts": {"total": 1, "by_component": {}}},
                           move)

    return AwsTarget(project, engine=lambda project_, stage_, on_event: RecordingEngine(calls, stage_),
                     require_pulumi=lambda: None, move_check=move_check)


def test_aws_up_refuses_a_move_that_would_replace_data_before_pulumi_runs(project: Project, fakes: dict[str, Any]
                                                                        ) -> None:
    from truckctl.cloud import current

    violation = {"rule": "move-keeps-data-and-identity", "resource": "datalake",
                 "message": "moving stage-1 -> stage-2 would replace it (race data (the data lake))"}
    calls: list[str] = []
    target = aws_target(project, calls, {"policy": [violation], "counts": {}, "from": "stage-1"})
    with pytest.raises(TruckctlError) as caught:
        orchestrator.up(target, orchestrator.UpRequest("stage-2", tier="cloud"))
    assert [p.code for p in caught.value.problems] == ["policy-violation"]
    assert "move-keeps-data-and-identity" in caught.value.problems[0].message
    assert calls == ["move check stage-2 on aws"]  # pulumi up never ran
    assert current.read(project, "aws") is None  # the race is not recorded at stage-2


def test_aws_up_checks_the_move_then_moves_the_race_and_records_the_stage(project: Project, fakes: dict[str, Any]
                                                                        ) -> None:
    from truckctl.cloud import current

    calls: list[str] = []
    move = {"policy": [], "counts": {"update": 2, "same": 70}, "from": "stage-1",
            "changes": [{"op": "update", "name": "truck-a-lan-route", "keys": ["destinationCidrBlock"]}]}
    up = orchestrator.up(aws_target(project, calls, move), orchestrator.UpRequest("stage-2", tier="cloud"))
    result = up.to_json()
    assert calls == ["move check stage-2 on aws", "pulumi up"]
    assert result["cloud"]["move"]["from"] == "stage-1" and result["cloud"]["operation"] == "up"
    assert current.read(project, "aws") == "stage-2"
    summary = show_run(project, result["run_id"])["summary"]
    assert summary["steps"]["cloud"]["summary_move"] == "update 2"
