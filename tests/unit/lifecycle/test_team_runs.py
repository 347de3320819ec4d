"""Two operators, two state directories (two machines), one set of gateways: the team lock around
runs, the shared history in `runs` and `status`, and the recorded forced release of `unlock`.
The gateways are the real node script on directories (`gateway_dirs`); only SSH is faked."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.helpers import REPO, FakeLabTarget
from tests.unit.lifecycle.fakes import GatewayDirs
from tests.unit.lifecycle.test_status import healthy_probes, lab_side, seen
from truckctl.cli.app import app
from truckctl.config.loader import load_stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.lifecycle import status as st
from truckctl.lifecycle import teamlock
from truckctl.lifecycle.history import all_runs
from truckctl.lifecycle.journal import list_runs, show_run
from truckctl.lifecycle.run import finish_run, locked_run
from truckctl.lifecycle.steps import StepResult
from truckctl.lifecycle.unlock import unlock
from truckctl.project import Project


@contextmanager
def machine(monkeypatch: pytest.MonkeyPatch, state: Path) -> Iterator[Project]:
    """Run as the operator whose state directory is `state` (another machine, as far as truckctl knows)."""
    with monkeypatch.context() as patch:
        patch.setenv("TRUCKCTL_STATE_DIR", str(state))
        yield Project(REPO)


def one_run(project: Project, command: str = "up") -> str:
    stage = load_stage(project, "stage-1")
    with locked_run(project, stage, command, FakeLabTarget(project)) as run:
        run.step("prechecks", lambda: StepResult({"ok": True}))
        finish_run(run, ExitCode.OK, {"stage": "stage-1"})
        return run.journal.run_id


def test_a_run_holds_the_lock_on_every_gateway_records_itself_there_and_releases(
        project: Project, gateway_dirs: GatewayDirs) -> None:
    stage = load_stage(project, "stage-1")
    with locked_run(project, stage, "up", FakeLabTarget(project)) as run:
        assert run.team is None  # the lab step reaches no truck: no team lock yet
        run.step("lab", lambda: StepResult({}))
        assert run.team is None
        run.step("prechecks", lambda: StepResult({}))
        assert run.team is not None and [g.node for g in run.team.held] == ["truck-a-gw", "truck-b-gw"]
        for node in ("truck-a-gw", "truck-b-gw"):
            holder = json.loads((gateway_dirs.dir(node) / "locks" / "stage-1" / "holder.json").read_text())
            assert holder["run_id"] == run.journal.run_id and holder["command"] == "up stage-1 --target lab"
        finish_run(run, ExitCode.OK, {"stage": "stage-1"})
    for node in ("truck-a-gw", "truck-b-gw"):
        assert not (gateway_dirs.dir(node) / "locks" / "stage-1").exists()  # released
        (record,) = (gateway_dirs.dir(node) / "runs" / "stage-1").iterdir()
        shared = json.loads(record.read_text())
        assert shared["run_id"] == run.journal.run_id and shared["status"] == "ok"
        assert set(shared) == {"run_id", "stage", "command", "target", "status", "exit_code", "started",
                               "duration_s", "failed_step", "host", "user"}  # the listed fields: never a secret


def test_a_second_machine_gets_exit_4_naming_host_user_and_run_and_proceeds_after(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stage = load_stage(project, "stage-1")
    with locked_run(project, stage, "up", FakeLabTarget(project)) as run:
        run.step("prechecks", lambda: StepResult({}))
        with machine(monkeypatch, tmp_path / "ci") as ci, pytest.raises(TruckctlError) as caught, \
                locked_run(ci, stage, "drift", FakeLabTarget(ci)) as other:
            other.step("check", lambda: StepResult({}))
        finish_run(run, ExitCode.OK, {})
    error = caught.value
    assert error.exit_code == ExitCode.LOCKED
    message = error.problems[0].message
    assert f"@{socket.gethostname()}" in message and run.journal.run_id in message and "'up stage-1" in message
    assert "since " in message
    with machine(monkeypatch, tmp_path / "ci") as ci:
        assert one_run(ci, "drift")  # the first run ended: the other proceeds


def test_runs_and_status_on_either_machine_list_both_operators_runs(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gateway_dirs: GatewayDirs) -> None:
    engineer = one_run(project, "up")
    with machine(monkeypatch, tmp_path / "ci") as ci:
        fix = one_run(ci, "drift")
        listed = all_runs(FakeLabTarget(ci), "stage-1").runs
        assert [(r["run_id"], r["origin"]) for r in listed] == [
            (fix, "local"), (engineer, f"{teamlock.this_holder('', '').user}@{socket.gethostname()}")]
        assert [r["run_id"] for r in list_runs(ci)] == [fix]  # its own journal is still its own
    listing = all_runs(FakeLabTarget(project), "stage-1")
    listed = listing.runs
    assert listing.to_json()["shared"] == {"read": ["truck-a-gw", "truck-b-gw"], "unreachable": {}, "note": None}
    assert all_runs(FakeLabTarget(project), None).to_json()["shared"] == {
        "note": "give --stage to add the runs other operators recorded on the stage's gateways"}
    assert [r["run_id"] for r in listed] == [fix, engineer] and listed[1]["origin"] == "local"
    last_run = st.status(FakeLabTarget(project), "stage-1", prober=gateway_dirs.answering_team(healthy_probes),
                         cloud_reader=lambda s: lab_side(seen())).last_run
    assert last_run is not None and last_run["run_id"] == fix and last_run["origin"] != "local"
    result = CliRunner().invoke(app, ["-C", str(REPO), "runs", "--stage", "stage-1", "--json"])
    assert result.exit_code == 0, result.output
    assert [r["run_id"] for r in json.loads(result.stdout)["result"]["runs"]] == [fix, engineer]


def test_a_run_whose_lock_is_taken_away_stops_with_exit_1(project: Project, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    stage = load_stage(project, "stage-1")
    with pytest.raises(TruckctlError) as caught, locked_run(project, stage, "up", FakeLabTarget(project)) as run:
        run.step("prechecks", lambda: StepResult({}))
        assert run.team is not None
        with machine(monkeypatch, tmp_path / "lead") as lead:
            unlock(FakeLabTarget(lead), "stage-1", confirm=lambda held: True)
        run.team.renew_once()  # what the renewer does every 10 s: it finds the lock gone, stops the run
        run.step("truck", lambda: StepResult({}))
        pytest.fail("the run went on without its lock")
    assert caught.value.exit_code == ExitCode.ERROR and caught.value.problems[0].code == "lock-lost"
    summary = show_run(project, caught.value.result["run_id"])["summary"]
    assert summary["status"] == "failed" and summary["errors"][0]["code"] == "lock-lost"


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    return int(child.stdout)


def hold(gateway_dirs: GatewayDirs, host: str, pid: int) -> None:
    """A lock on both gateways held by `host`'s process `pid` (its lease not run out)."""
    holder = teamlock.Holder(host=host, user="engineer", command="up stage-1 --target lab",
                             run_id="20270501T070000Z-stage-1-up-dead", started=1_700_000_000.0, pid=pid)
    teamlock.TeamLock("stage-1", teamlock.gateways(load_stage(Project(REPO), "stage-1")), gateway_dirs, holder).take()


def test_unlock_asks_before_releasing_another_machines_lock_and_records_the_release(
        project: Project, gateway_dirs: GatewayDirs) -> None:
    hold(gateway_dirs, "engineer-laptop", 4242)
    asked: list[Any] = []
    with pytest.raises(TruckctlError) as caught:
        unlock(FakeLabTarget(project), "stage-1", confirm=lambda held: asked.append(held) or False)
    assert caught.value.exit_code == ExitCode.USAGE and "not confirmed" in caught.value.problems[0].message
    assert [lock.gateway for lock in asked[0]] == ["truck-a-gw", "truck-b-gw"]
    assert (gateway_dirs.dir("truck-a-gw") / "locks" / "stage-1").exists()  # not confirmed: kept
    result = unlock(FakeLabTarget(project), "stage-1", confirm=lambda held: True)
    assert result.cleared and "engineer@engineer-laptop" in result.message
    assert not (gateway_dirs.dir("truck-a-gw") / "locks" / "stage-1").exists()
    assert result.run_id is not None
    recorded = show_run(project, result.run_id)
    assert recorded["summary"]["command"] == "unlock"
    assert next(e for e in recorded["events"] if e["kind"] == "lock-forced")["holders"][0]["host"] == "engineer-laptop"
    runs = teamlock.remote_runs("stage-1", teamlock.gateways(load_stage(project, "stage-1")), gateway_dirs)[0]
    assert [(r.record.run_id, r.record.command) for r in runs] == [(result.run_id, "unlock")]  # and on the gateways


def test_unlocks_result_keeps_the_envelopes_keys_in_order(project: Project, gateway_dirs: GatewayDirs) -> None:
    assert list(unlock(FakeLabTarget(project), "stage-1", confirm=lambda held: True).to_json()) == [
        "stage", "local", "cleared", "gateways", "message"]  # nothing held: nothing forced, no run
    hold(gateway_dirs, "engineer-laptop", 4242)
    forced = unlock(FakeLabTarget(project), "stage-1", confirm=lambda held: True).to_json()
    assert list(forced) == ["stage", "local", "cleared", "run_id", "gateways", "message"]
    assert [(g["gateway"], g["state"]) for g in forced["gateways"]] == [("truck-a-gw", "forced"),
                                                                        ("truck-b-gw", "forced")]


def test_unlock_releases_a_dead_local_holders_lock_without_asking(project: Project,
                                                                  gateway_dirs: GatewayDirs) -> None:
    hold(gateway_dirs, socket.gethostname(), _dead_pid())  # a SIGKILLed truckctl of this host
    result = unlock(FakeLabTarget(project), "stage-1", confirm=lambda held: pytest.fail("asked"))
    assert result.cleared and result.run_id


def test_the_cli_unlock_without_a_terminal_needs_yes(project: Project, gateway_dirs: GatewayDirs) -> None:
    hold(gateway_dirs, "engineer-laptop", 4242)
    refused = CliRunner().invoke(app, ["-C", str(REPO), "unlock", "stage-1", "--json"])
    assert refused.exit_code == 2 and "--yes" in json.loads(refused.stdout)["errors"][0]["message"]
    done = CliRunner().invoke(app, ["-C", str(REPO), "unlock", "stage-1", "--yes", "--json"])
    assert done.exit_code == 0 and json.loads(done.stdout)["result"]["cleared"] is True


def test_a_lost_lock_reported_by_the_truck_tier_as_interrupted_is_said_as_lost(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The truck tier turns the renewer's interrupt into its own `interrupted` error: the run still
    ends with exit 1 and `lock-lost`, not as if someone had pressed Ctrl-C."""
    stage = load_stage(project, "stage-1")

    with pytest.raises(TruckctlError) as caught, locked_run(project, stage, "up", FakeLabTarget(project)) as run:
        run.step("prechecks", lambda: StepResult({}))
        team = run.team
        assert team is not None
        team.on_lost = lambda reason: None  # only the truck tier hears of it here

        def truck_run_interrupted() -> StepResult:  # the lock is taken away while Ansible runs
            with machine(monkeypatch, tmp_path / "lead") as lead:
                unlock(FakeLabTarget(lead), "stage-1", confirm=lambda held: True)
            team.renew_once()
            raise TruckctlError.single("interrupted", "the truck run was interrupted",
                                       exit_code=ExitCode.INTERRUPTED)

        run.step("truck", truck_run_interrupted)
    assert caught.value.exit_code == ExitCode.ERROR and [p.code for p in caught.value.problems] == ["lock-lost"]
