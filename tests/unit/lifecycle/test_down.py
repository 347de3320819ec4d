"""`truckctl down` with Ansible, the lab and the Pulumi engine replaced by fakes: confirmation (a
refusal changes nothing), the order truck -> revoke -> cloud (aws: revoke -> truck -> cloud), the
data lake kept unless --delete-data, unreachable nodes, resuming an unfinished down, secrets, and
the playbook itself. On aws the IoT API is real boto3 client code under botocore's Stubber: the
requests are built and validated against AWS's service model; no response comes from the network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.helpers import KEY_BODY, REPO, FakeConnection, FakeLabTarget, make_cloud
from truckctl.cli.app import app
from truckctl.cloud.engine import OperationResult
from truckctl.cloud.outputs import CloudOutputs
from truckctl.cloud.revoke import iot_client
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.lifecycle import down as core
from truckctl.lifecycle.journal import list_runs, runs_dir, show_run
from truckctl.lifecycle.lock import lock_path, stage_lock
from truckctl.lifecycle.steps import StepRecord
from truckctl.project import Project
from truckctl.remote import Connection
from truckctl.target import Target
from truckctl.targets.aws import AwsTarget
from truckctl.targets.lab import LabTarget
from truckctl.truck.events import HostEvent, HostStats, TruckRunResult
from truckctl.truck.plan import RunPlan

LAB, AWS = LabTarget(Project(REPO)), AwsTarget(Project(REPO))  # confirm() asks them only for words
NODES = ["truck-a-gw", "truck-a-hv1", "truck-a-hv2", "truck-b-gw", "truck-b-hv1", "truck-b-hv2"]
BIN = Path(sys.executable).parent


def truck_result(unreachable: tuple[str, ...] = ()) -> TruckRunResult:
    hosts = {name: HostStats(ok=0 if name in unreachable else 2, changed=0 if name in unreachable else 1,
                             unreachable=int(name in unreachable)) for name in NODES}
    return TruckRunResult(status="failed" if unreachable else "successful", rc=4 if unreachable else 0, check=False,
                          hosts=hosts, changes=[], duration_s=1.5, artifacts_dir="/state/truck/artifacts/down-1",
                          failures=[HostEvent(n, "Stop and disable the heartbeat, the feed and the bridge",
                                              "unreachable", "Failed to connect to the host via ssh")
                                    for n in unreachable])


REGION = "eu-south-1"
CERTIFICATES = {"truck-a": "a1" * 32, "truck-b": "b2" * 32}  # IoT certificate ids: 64 hex digits


class StubbedIot:
    """A real boto3 IoT client (made by down's own factory) whose answers come from botocore's Stubber.

    Each call is recorded in `calls` as "iot Operation truck" when botocore builds its request, so
    the order against the truck tier and the destroy is visible. An unexpected call fails the test.
    """

    def __init__(self, calls: list[str]) -> None:
        from botocore.stub import Stubber

        self.calls = calls
        self.regions: list[str] = []
        self.client = iot_client(REGION)
        self.stubber = Stubber(self.client)
        self.stubber.activate()
        self.client.meta.events.register_first("before-parameter-build.iot", self._record)
        self.trucks = {ident: truck for truck, ident in CERTIFICATES.items()}
        self.pending = 0  # answers queued and not yet asked for

    def _record(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        self.pending -= 1
        self.calls.append(f"iot {model.name} {self.trucks.get(params.get('certificateId', ''), '?')}")

    def factory(self, region: str) -> Any:
        self.regions.append(region)
        return self.client

    def status(self, truck: str, status: str) -> None:
        ident = CERTIFICATES[truck]
        self.pending += 1
        self.stubber.add_response("describe_certificate", {"certificateDescription": {
            "certificateId": ident, "certificateArn": f"arn:aws:iot:{REGION}:123456789012:cert/{ident}",
            "status": status}}, {"certificateId": ident})

    def deactivates(self, truck: str) -> None:
        self.status(truck, "ACTIVE")
        self.pending += 1
        self.stubber.add_response("update_certificate", {},
                                  {"certificateId": CERTIFICATES[truck], "newStatus": "INACTIVE"})

    def refuses(self, truck: str, code: str = "AccessDeniedException") -> None:
        self.status(truck, "ACTIVE")
        self.pending += 1
        self.stubber.add_client_error("update_certificate", code, "not authorized to perform iot:UpdateCertificate",
                                      403, expected_params={"certificateId": CERTIFICATES[truck],
                                                            "newStatus": "INACTIVE"})


class FakeEngine:
    def __init__(self, calls: list[str], stage: Stage, fail_destroy: BaseException | None = None) -> None:
        self.calls, self.stage, self.fail_destroy = calls, stage, fail_destroy

    def certificates(self) -> tuple[str, dict[str, str]]:
        """What AwsEngine.certificates reads from the stack outputs, through the same mapping."""
        from truckctl.cloud.stack_outputs import truck_certificates

        self.calls.append("certificates")
        return truck_certificates({"region": REGION, "trucks": {
            name: {"certificateId": ident, "certificateRef": f"arn:aws:iot:{REGION}:123456789012:cert/{ident}"}
            for name, ident in CERTIFICATES.items()}})

    def outputs(self) -> CloudOutputs:
        self.calls.append("cloud-outputs")
        return make_cloud(self.stage, target="aws", region="eu-south-1",
                          datalake_bucket="gdf27-datalake-123456789012")

    def destroy(self, delete_data: bool = False) -> OperationResult:
        self.calls.append(f"destroy(delete_data={delete_data})")
        if self.fail_destroy is not None:
            raise self.fail_destroy
        return OperationResult("destroy", {"delete": 60, "same": 0})

    def end_day(self) -> OperationResult:
        self.calls.append("end-day")
        if self.fail_destroy is not None:
            raise self.fail_destroy
        return OperationResult("end-day", {"delete": 10, "update": 2, "same": 61})


class Fakes:
    """Fake targets and a fake truck run that record the order of calls; nothing real runs."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.calls: list[str] = []
        self.plans: list[RunPlan] = []
        self.truck = truck_result()
        self.lab_up = True
        self.fail_destroy: BaseException | None = None
        self.iot = StubbedIot(self.calls)

    def iot_deactivates_all(self) -> None:
        for truck in CERTIFICATES:
            self.iot.deactivates(truck)

    def run_plan(self, plan: RunPlan, settings: Any, on_event: Any, cancel: Any) -> TruckRunResult:
        self.calls.append("truck")
        self.plans.append(plan)
        on_event(HostEvent("truck-a-gw", "Remove the truck's certificate and key from the gateway", "changed"))
        return self.truck

    def target(self, kind: str, project: Project) -> Target:
        """The fake target of that kind: what the CLI's `for_kind` returns in these tests."""
        if not self.iot.pending:  # the test queued no IoT answer: both certificates are ACTIVE
            self.iot_deactivates_all()
        if kind == "aws":
            return FakeAwsTarget(project, self.calls, self.stage, self)
        return FakeLab(project, self)


class FakeLab(FakeLabTarget):
    def __init__(self, project: Project, fakes: Fakes) -> None:
        super().__init__(project, lab_up=fakes.lab_up)
        self.calls = fakes.calls
        self.standin = {"trucks": {"truck-a": {"counts": {"telemetry": 812, "heartbeat": 300}},
                                   "truck-b": {"counts": {"telemetry": 790, "heartbeat": 301}}}}

    def preflight(self) -> None:
        self.calls.append("preflight lab")

    def cloud_outputs(self, stage: Stage) -> CloudOutputs:
        super().cloud_outputs(stage)  # refuses when no lab is up
        return make_cloud(stage, alert_webhook_url="http://100.64.10.2:8080/alerts")

    def revoke_truck(self, truck: str) -> dict[str, Any]:
        self.calls.append(f"revoke {truck}")
        return {"truck": truck, "revoked_serial": "abc", "replacement_serial": "def"}


class FakeAwsTarget(AwsTarget):
    """The aws target with Pulumi faked (FakeEngine), a real boto3 IoT client answered by botocore's Stubber,
    and SSH through FakeConnection."""

    def __init__(self, project: Project, calls: list[str], stage: Stage, fakes: Fakes) -> None:
        super().__init__(project, engine=lambda project_, stage_, on_event: FakeEngine(calls, stage_,
                                                                                      fakes.fail_destroy),
                         iot_client=fakes.iot.factory, require_pulumi=lambda: calls.append("preflight aws"))

    def connection(self, stage: Stage) -> Connection:
        return FakeConnection()  # type: ignore[return-value]


@pytest.fixture
def fakes(stage: Stage, monkeypatch: pytest.MonkeyPatch) -> Fakes:
    made = Fakes(stage)
    monkeypatch.setattr("truckctl.targets.for_kind", made.target)  # what the CLI path constructs
    monkeypatch.setattr("truckctl.truck.runner.run_plan", made.run_plan)
    return made


REVOKED = ["certificates", "iot DescribeCertificate truck-a", "iot UpdateCertificate truck-a",
           "iot DescribeCertificate truck-b", "iot UpdateCertificate truck-b"]


def run_down(project: Project, fakes: Fakes, target: str = "lab", delete_data: bool = False,
             race: bool = True) -> dict[str, Any]:
    return core.down(fakes.target(target, project), core.DownOptions("stage-1", delete_data, race),
                     core.Confirmation(True, delete_data)).to_json()


def nothing_changed(project: Project, fakes: Fakes) -> None:
    assert fakes.calls == []
    assert not runs_dir(project).exists() or not any(runs_dir(project).iterdir())
    assert not lock_path(project, "stage-1").exists()


# ---- confirmation ----------------------------------------------------------------------------

def never_asked(prompt: str) -> str:
    raise AssertionError("must not prompt")


def test_no_terminal_and_no_yes_is_refused_as_usage() -> None:
    with pytest.raises(TruckctlError) as caught:
        core.confirm("stage-1", LAB, yes=False, delete_data=False, confirm_delete_data=None, interactive=False,
                     ask=never_asked)
    assert caught.value.exit_code == ExitCode.USAGE
    assert "pass --yes" in str(caught.value) and "nothing was changed" in str(caught.value)


def test_yes_confirms_without_a_prompt() -> None:
    assert core.confirm("stage-1", AWS, yes=True, delete_data=False, confirm_delete_data=None, interactive=True,
                        ask=never_asked) == core.Confirmation(True, False)


def test_on_a_terminal_the_stage_name_must_be_typed() -> None:
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return " stage-1 \n"

    assert core.confirm("stage-1", AWS, yes=False, delete_data=False, confirm_delete_data=None, interactive=True,
                        ask=ask) == core.Confirmation(True, False)
    assert "keeps the data lake" in prompts[0] and "Type the stage name" in prompts[0]
    with pytest.raises(TruckctlError) as caught:
        core.confirm("stage-1", AWS, yes=False, delete_data=False, confirm_delete_data=None, interactive=True,
                     ask=lambda prompt: "stage-2")
    assert caught.value.exit_code == ExitCode.ERROR and "nothing was changed" in str(caught.value)


def test_delete_data_needs_the_name_typed_even_with_yes() -> None:
    prompts: list[str] = []
    confirmation = core.confirm("stage-1", AWS, yes=True, delete_data=True, confirm_delete_data=None,
                                interactive=True, ask=lambda prompt: prompts.append(prompt) or "stage-1")
    assert confirmation == core.Confirmation(True, True) and "DELETES the data lake" in prompts[0]
    with pytest.raises(TruckctlError) as caught:
        core.confirm("stage-1", AWS, yes=True, delete_data=True, confirm_delete_data=None, interactive=False,
                     ask=never_asked)
    assert caught.value.exit_code == ExitCode.USAGE and "--confirm-delete-data stage-1" in str(caught.value)


def test_ci_deletes_data_only_with_the_stage_name_repeated() -> None:
    assert core.confirm("stage-1", AWS, yes=True, delete_data=True, confirm_delete_data="stage-1",
                        interactive=False, ask=never_asked) == core.Confirmation(True, True)
    for wrong in ("stage-2", ""):
        with pytest.raises(TruckctlError) as caught:
            core.confirm("stage-1", AWS, yes=True, delete_data=True, confirm_delete_data=wrong, interactive=False,
                         ask=never_asked)
        assert caught.value.exit_code == ExitCode.USAGE
    with pytest.raises(TruckctlError, match="only goes with --delete-data"):
        core.confirm("stage-1", AWS, yes=True, delete_data=False, confirm_delete_data="stage-1",
                     interactive=False, ask=never_asked)


def test_core_refuses_an_unconfirmed_down_before_any_lock_or_journal(project: Project, fakes: Fakes) -> None:
    for confirmation, delete in ((core.Confirmation(False, False), False), (core.Confirmation(True, False), True)):
        with pytest.raises(TruckctlError) as caught:
            core.down(fakes.target("lab", project), core.DownOptions("stage-1", delete), confirmation)
        assert caught.value.exit_code == ExitCode.USAGE
    nothing_changed(project, fakes)


def test_cli_without_yes_and_without_a_terminal_changes_nothing(project: Project, fakes: Fakes) -> None:
    result = CliRunner().invoke(app, ["down", "stage-1", "--json"])  # CliRunner's stdin is not a terminal
    document = json.loads(result.stdout)
    assert result.exit_code == 2 and document["errors"][0]["code"] == "not-confirmed"
    nothing_changed(project, fakes)
    result = CliRunner().invoke(app, ["down", "stage-1", "--race", "--target", "aws", "--yes", "--delete-data"])
    assert result.exit_code == 2 and "--confirm-delete-data stage-1" in result.stderr
    nothing_changed(project, fakes)


# ---- order, journal, what is kept ------------------------------------------------------------

def test_lab_tears_down_trucks_then_certificates_then_cloud(project: Project, fakes: Fakes) -> None:
    result = run_down(project, fakes, race=False)
    assert fakes.calls == ["preflight lab", "truck", "revoke truck-a", "revoke truck-b"]  # nothing to destroy
    summary = show_run(project, result["run_id"])["summary"]
    assert summary["command"] == "down" and summary["status"] == "ok"
    assert list(summary["steps"]) == ["liveness", "truck", "revoke", "cloud"]  # liveness: is the race live? (no)
    assert all(step["status"] == "ok" for step in summary["steps"].values())
    assert result["cloud"]["destroyed"] is False and "nothing is deployed" in result["cloud"]["note"]
    kept = {item["what"]: item for item in result["kept"]}
    assert "truck-a: 812 telemetry and 300 heartbeat messages" in kept[
        "the stand-in's received data (the lab's data lake)"]["detail"]
    assert {"gateway message store", "run journal"} <= set(kept) and result["deleted"] == []
    assert not lock_path(project, "stage-1").exists()


def test_the_teardown_plan_is_down_yml_without_cloud_values_or_secrets(project: Project, fakes: Fakes) -> None:
    run_down(project, fakes)
    plan = fakes.plans[0]
    assert plan.playbook == "down.yml" and plan.project_dir == REPO / "playbooks"
    assert plan.hosts == NODES and plan.limit is None and plan.check is False and plan.forks == 6
    assert plan.secret_vars == {} and not any(key.startswith("cloud_") for key in plan.extravars)
    assert plan.extravars["truck_target"] == "lab"
    common = plan.inventory["all"]["vars"]["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=yes" in common and """'UserKnownHostsFile="/lab/known_hosts"'""" in common


def test_aws_destroys_the_cloud_after_the_trucks_and_keeps_the_data_lake(project: Project, fakes: Fakes) -> None:
    result = run_down(project, fakes, target="aws")
    assert fakes.calls == ["preflight aws", *REVOKED, "truck", "cloud-outputs", "destroy(delete_data=False)"]
    assert [(c["truck"], c["before"], c["after"]) for c in result["revoke"]["certificates"]] == [
        ("truck-a", "ACTIVE", "INACTIVE"), ("truck-b", "ACTIVE", "INACTIVE")]
    kept = {item["what"]: item["name"] for item in result["kept"]}
    assert kept["data lake"] == "gdf27-datalake-123456789012"
    assert "KMS key" in kept["data lake key"] and "stage-1" not in kept["data lake key"]  # the race's key
    assert result["deleted"] == [] and result["cloud"]["operation"]["changes"] == {"delete": 60, "same": 0}


def test_delete_data_is_passed_to_the_destroy_and_listed_as_deleted(project: Project, fakes: Fakes) -> None:
    result = run_down(project, fakes, target="aws", delete_data=True)
    assert fakes.calls[-1] == "destroy(delete_data=True)"
    assert [item["what"] for item in result["deleted"]] == ["data lake", "data lake key"]
    assert "data lake" not in {item["what"] for item in result["kept"]}


def test_no_secret_reaches_the_journal(project: Project, fakes: Fakes) -> None:
    result = run_down(project, fakes, target="aws")
    text = "".join(p.read_text() for p in (runs_dir(project) / result["run_id"]).iterdir())
    assert text and all(body not in text for body in KEY_BODY.values())
    assert all(body not in json.dumps(result, default=str) for body in KEY_BODY.values())


def test_a_missing_pulumi_cli_stops_aws_before_any_node_is_touched(project: Project, fakes: Fakes) -> None:
    def no_pulumi() -> None:
        raise TruckctlError.single("pulumi-missing", "the aws target needs the Pulumi CLI")

    target = AwsTarget(project, require_pulumi=no_pulumi)
    with pytest.raises(TruckctlError, match="Pulumi CLI"):
        core.down(target, core.DownOptions("stage-1"), core.Confirmation(True))
    nothing_changed(project, fakes)


def test_a_locked_stage_is_refused_with_exit_4_and_nothing_runs(project: Project, fakes: Fakes) -> None:
    with stage_lock(project, "stage-1", "up stage-1"):
        result = CliRunner().invoke(app, ["down", "stage-1", "--yes", "--json"])
    assert result.exit_code == ExitCode.LOCKED and "truck" not in fakes.calls


def test_no_lab_up_means_nothing_to_tear_down(project: Project, fakes: Fakes) -> None:
    fakes.lab_up = False
    result = run_down(project, fakes)
    assert fakes.calls == ["preflight lab"] and "no lab is up" in result["note"]
    assert show_run(project, result["run_id"])["summary"]["status"] == "ok"


def test_cli_renders_what_was_kept(project: Project, fakes: Fakes) -> None:
    result = CliRunner().invoke(app, ["down", "stage-1", "--race", "--target", "aws", "--yes"])
    assert result.exit_code == 0, result.stderr
    assert "truck tier: stage-1 on aws" in result.stdout
    assert "kept: data lake: gdf27-datalake-123456789012" in result.stdout
    assert "cloud tier: destroyed (delete 60, same 0)" in result.stdout
    assert "certificates (first): truck-a INACTIVE, truck-b INACTIVE: 2 IoT certificate(s) set INACTIVE" \
        in result.stdout


# ---- unreachable nodes, resume ---------------------------------------------------------------

def test_an_unreachable_node_keeps_the_cloud_and_fails_then_a_rerun_completes(project: Project,
                                                                            fakes: Fakes) -> None:
    fakes.truck = truck_result(unreachable=("truck-b-gw",))
    with pytest.raises(TruckctlError) as caught:
        run_down(project, fakes, target="lab")
    error = caught.value
    assert error.exit_code == ExitCode.ERROR and error.problems[0].location == "truck-b-gw"
    assert "cloud tier is left in place" in error.problems[0].message
    assert fakes.calls == ["preflight lab", "truck", "revoke truck-a", "revoke truck-b"]  # revoked all the same
    assert error.result["cloud"] == {"destroyed": False, "reason": "nodes were not taken down"}
    first = list_runs(project, "stage-1")[0]
    assert (first["status"], first["failed_step"]) == ("failed", "truck")

    fakes.calls.clear()
    fakes.truck = truck_result()
    result = run_down(project, fakes, target="lab")
    assert result["resumed_from"] == first["run_id"] and result["skipped_steps"] == ["revoke"]
    assert fakes.calls == ["preflight lab", "truck"]  # the truck tier again; the revocation was done


def test_aws_with_an_unreachable_node_never_destroys(project: Project, fakes: Fakes) -> None:
    fakes.truck = truck_result(unreachable=("truck-a-hv2",))
    with pytest.raises(TruckctlError) as caught:
        run_down(project, fakes, target="aws")
    assert not any(call.startswith("destroy") for call in fakes.calls)
    kept = {item["what"]: item for item in caught.value.result["kept"]}
    assert "not destroyed" in kept["cloud tier"]["detail"]


def test_an_interrupted_down_resumes_where_it_stopped(project: Project, fakes: Fakes) -> None:
    fakes.fail_destroy = KeyboardInterrupt()
    with pytest.raises(TruckctlError) as caught:
        run_down(project, fakes, target="aws")
    assert caught.value.exit_code == ExitCode.INTERRUPTED
    assert not lock_path(project, "stage-1").exists()
    fakes.calls.clear()
    fakes.fail_destroy = None
    result = run_down(project, fakes, target="aws")
    assert result["skipped_steps"] == ["revoke", "truck"]
    assert fakes.calls == ["preflight aws", "cloud-outputs", "destroy(delete_data=False)"]


# ---- the day's down (without --race): the race's cloud stays ------------------------------------

def test_aws_day_down_takes_the_trucks_down_and_only_the_day_parts_of_the_cloud(project: Project,
                                                                                fakes: Fakes) -> None:
    """No certificate is deactivated (they last the race), nothing is destroyed: the race stack leaves
    the stage."""
    result = run_down(project, fakes, target="aws", race=False)
    assert fakes.calls == ["preflight aws", "truck", "end-day"]
    assert result["scope"] == "day" and "revoke" not in result
    assert result["cloud"]["destroyed"] is False and result["cloud"]["operation"]["operation"] == "end-day"
    kept = {item["what"]: item for item in result["kept"]}
    assert "certificates" in kept["the race's cloud"]["detail"] and result["deleted"] == []
    assert show_run(project, result["run_id"])["summary"]["command"] == "down"


def test_a_day_down_never_deletes_data(project: Project, fakes: Fakes) -> None:
    with pytest.raises(TruckctlError) as caught:
        core.down(fakes.target("aws", project), core.DownOptions("stage-1", delete_data=True, race=False),
                  core.Confirmation(True, True))
    assert caught.value.exit_code == ExitCode.USAGE and "--race" in caught.value.problems[0].message
    nothing_changed(project, fakes)


def test_a_day_down_does_not_resume_a_race_down_nor_the_reverse(project: Project, fakes: Fakes) -> None:
    fakes.fail_destroy = KeyboardInterrupt()
    with pytest.raises(TruckctlError):
        run_down(project, fakes, target="aws")  # the race's teardown, interrupted in its cloud step
    fakes.fail_destroy = None
    fakes.calls.clear()
    day = run_down(project, fakes, target="aws", race=False)
    assert day["resumed_from"] is None and fakes.calls == ["preflight aws", "truck", "end-day"]
    fakes.calls.clear()
    fakes.fail_destroy = KeyboardInterrupt()
    with pytest.raises(TruckctlError):
        run_down(project, fakes, target="aws", race=False)  # a day's down, interrupted in end_day
    fakes.fail_destroy = None
    fakes.calls.clear()
    resumed = run_down(project, fakes, target="aws", race=False)
    assert resumed["resumed_from"] is not None and resumed["skipped_steps"] == ["truck"]
    assert fakes.calls == ["preflight aws", "end-day"]


# ---- aws: the trucks' IoT certificates first ---------------------------------------------------

def journal_events(project: Project, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in show_run(project, run_id)["events"] if e["kind"] == kind]


def test_aws_deactivates_every_certificate_first_even_with_a_node_unreachable(project: Project,
                                                                               fakes: Fakes) -> None:
    """The docstring's promise: a truck that cannot be stopped (unreachable, stolen) is refused by the
    cloud all the same, before anything else happens; the cloud tier stays (nodes were not down)."""
    fakes.truck = truck_result(unreachable=("truck-b-gw",))
    with pytest.raises(TruckctlError) as caught:
        run_down(project, fakes, target="aws")
    assert fakes.calls == ["preflight aws", *REVOKED, "truck"]  # IoT before the truck tier, no destroy
    assert fakes.iot.regions == [REGION] and fakes.iot.pending == 0
    result = caught.value.result
    assert [(c["truck"], c["after"], c["changed"]) for c in result["revoke"]["certificates"]] == [
        ("truck-a", "INACTIVE", True), ("truck-b", "INACTIVE", True)]
    assert result["cloud"] == {"destroyed": False, "reason": "nodes were not taken down"}
    run = show_run(project, list_runs(project, "stage-1")[0]["run_id"])
    ends = {e["step"]: e["status"] for e in run["events"] if e["kind"] == "step-end"}
    assert ends == {"liveness": "ok", "revoke": "ok", "truck": "failed"}
    starts = [e["step"] for e in run["events"] if e["kind"] == "step-start"]
    assert starts == ["liveness", "revoke", "truck"]
    assert [(e["truck"], e["certificate_id"], e["before"], e["after"])
            for e in journal_events(project, run["summary"]["run_id"], "certificate")] == [
        ("truck-a", CERTIFICATES["truck-a"], "ACTIVE", "INACTIVE"),
        ("truck-b", CERTIFICATES["truck-b"], "ACTIVE", "INACTIVE")]

    fakes.calls.clear()  # the node is back: the re-run does not touch the certificates again
    fakes.truck = truck_result()
    result = run_down(project, fakes, target="aws")
    assert result["skipped_steps"] == ["revoke"]
    assert fakes.calls == ["preflight aws", "truck", "cloud-outputs", "destroy(delete_data=False)"]


def test_aws_stops_before_the_trucks_and_the_destroy_when_revocation_fails(project: Project, fakes: Fakes) -> None:
    fakes.iot.deactivates("truck-a")
    fakes.iot.refuses("truck-b")
    with pytest.raises(TruckctlError) as caught:
        run_down(project, fakes, target="aws")
    error = caught.value
    assert fakes.calls == ["preflight aws", *REVOKED]  # both tried; nothing after
    assert error.exit_code == ExitCode.ERROR and [p.code for p in error.problems] == ["revoke-failed"]
    (problem,) = error.problems
    assert problem.location == "truck-b" and "AccessDeniedException" in problem.message
    assert "still trusted" in problem.message and "re-run `truckctl down`" in problem.message
    assert f"aws iot update-certificate --certificate-id {CERTIFICATES['truck-b']} --new-status INACTIVE" \
        in problem.message
    assert error.result["failed_step"] == "revoke" and error.result["cloud"]["destroyed"] is False
    assert "no truck node and no cloud resource was touched" in error.result["note"]
    assert [c["truck"] for c in error.result["revoke"]["certificates"]] == ["truck-a"]  # what did happen
    first = list_runs(project, "stage-1")[0]
    assert (first["status"], first["failed_step"]) == ("failed", "revoke")
    assert [e["truck"] for e in journal_events(project, first["run_id"], "certificate")] == ["truck-a"]

    # The resumed down asks again and changes only what is still trusted: truck-a is INACTIVE already.
    fakes.calls.clear()
    fakes.iot.status("truck-a", "INACTIVE")
    fakes.iot.deactivates("truck-b")
    result = run_down(project, fakes, target="aws")
    assert result["resumed_from"] == first["run_id"] and result["skipped_steps"] == []
    assert fakes.calls == ["preflight aws", "certificates", "iot DescribeCertificate truck-a",
                           "iot DescribeCertificate truck-b", "iot UpdateCertificate truck-b", "truck",
                           "cloud-outputs", "destroy(delete_data=False)"]
    assert [(c["truck"], c["before"], c["changed"]) for c in result["revoke"]["certificates"]] == [
        ("truck-a", "INACTIVE", False), ("truck-b", "ACTIVE", True)]
    assert fakes.iot.pending == 0


def test_aws_revocation_counts_revoked_and_deleted_certificates_as_done(project: Project, fakes: Fakes) -> None:
    fakes.iot.status("truck-a", "REVOKED")
    fakes.iot.pending += 1
    fakes.iot.stubber.add_client_error("describe_certificate", "ResourceNotFoundException", "gone", 404,
                                       expected_params={"certificateId": CERTIFICATES["truck-b"]})
    result = run_down(project, fakes, target="aws")
    assert [(c["truck"], c["before"], c["after"]) for c in result["revoke"]["certificates"]] == [
        ("truck-a", "REVOKED", "REVOKED"), ("truck-b", "absent", "absent")]
    assert not any("UpdateCertificate" in call for call in fakes.calls)
    assert fakes.calls[-1] == "destroy(delete_data=False)"


def test_aws_cli_says_the_revocation_failed_and_what_to_do(project: Project, fakes: Fakes) -> None:
    fakes.iot.refuses("truck-a", "ThrottlingException")
    fakes.iot.deactivates("truck-b")
    result = CliRunner().invoke(app, ["down", "stage-1", "--race", "--target", "aws", "--yes"])
    assert result.exit_code == ExitCode.ERROR
    assert "truck truck-a's IoT certificate" in result.stderr and "update-certificate" in result.stderr
    assert "truck" not in fakes.calls and not any(c.startswith("destroy") for c in fakes.calls)


def test_a_finished_down_or_another_command_is_not_resumed(project: Project, fakes: Fakes) -> None:
    run_down(project, fakes)
    assert run_down(project, fakes)["resumed_from"] is None  # a completed down: everything runs again
    fakes.calls.clear()
    fakes.truck = truck_result(unreachable=("truck-a-gw",))
    with pytest.raises(TruckctlError):
        run_down(project, fakes, target="lab")
    fakes.truck = truck_result()
    assert run_down(project, fakes, target="aws")["resumed_from"] is None  # another target


def test_resume_redoes_a_destroy_that_kept_the_data_when_deletion_is_now_asked() -> None:
    steps = {"truck": {"status": "ok"}, "revoke": {"status": "ok"},
             "cloud": {"status": "ok", "summary_delete_data": False}}
    records = core.step_records(steps)
    assert records["cloud"] == StepRecord("ok", 0, delete_data=False)  # a typed record, read once
    assert core.steps_done(records, delete_data=False) == {"truck", "revoke", "cloud"}
    assert core.steps_done(records, delete_data=True) == {"truck", "revoke"}
    assert core.steps_done(core.step_records({"truck": {"status": "running"}, "revoke": {"status": "failed"},
                                              "cloud": "not a record"}), False) == set()


# ---- the playbook ----------------------------------------------------------------------------

def test_down_playbook_passes_the_syntax_check(tmp_path: Path) -> None:
    from truckctl.config.loader import load_stage
    from truckctl.truck.inventory import inventory_yaml

    inventory = tmp_path / "stage-1.yml"
    inventory.write_text(inventory_yaml(load_stage(Project(REPO), "stage-1")))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(REPO / "playbooks" / "ansible.cfg")}
    proc = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(inventory), "down.yml"],
                          cwd=REPO / "playbooks", capture_output=True, text=True, check=False, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_down_without_race_on_aws_ends_the_day_and_destroys_nothing(project: Project, fakes: Fakes) -> None:
    """`down STAGE --target aws` must not tear the race's one stack down: only `--race` does."""
    result = CliRunner().invoke(app, ["down", "stage-1", "--target", "aws", "--yes", "--json"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)["result"]
    assert document["scope"] == "day" and "revoke" not in document
    assert fakes.calls == ["preflight aws", "truck", "end-day"]
    result = CliRunner().invoke(app, ["down", "stage-1", "--target", "aws", "--yes", "--delete-data",
                                      "--confirm-delete-data", "stage-1", "--json"])
    assert result.exit_code == ExitCode.USAGE and "--race" in json.loads(result.stdout)["errors"][0]["message"]
    assert fakes.calls == ["preflight aws", "truck", "end-day"]  # nothing more ran
