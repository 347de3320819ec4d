"""Change control that knows the race is live: the liveness decision, which changes wait (the tags in the
plain playbooks), the hold in the truck run's plan, and what up, drift --fix and down do and report while
the stage is live (exit 3, JSON, journal), with Ansible and the cloud side replaced by fakes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.helpers import REPO, FakeConnection, FakeLabTarget, make_cloud
from tests.unit.lifecycle.fakes import passed_prechecks, truck_result
from truckctl.cli.app import app
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.lifecycle import racelive
from truckctl.lifecycle.drift import DriftOptions, drift
from truckctl.lifecycle.journal import runs_dir
from truckctl.project import Project
from truckctl.truck.events import HELD_FACT_SUFFIX, Change, TruckRunResult
from truckctl.truck.plan import build_plan

REAL_OBSERVE = racelive.observe  # before the fixtures replace it
ROME = dt.timezone(dt.timedelta(hours=2))  # Europe/Rome in May (the example race's date: 2027-05-08)
FEED = "--- before\n+++ after\n-autosave_interval 30\n+autosave_interval 300\n"
SSHD = "--- before\n+++ after\n-PasswordAuthentication yes\n+PasswordAuthentication no\n"


def windowed(stage: Stage, start: str = "11:00", until: str = "17:30") -> Stage:
    info = stage.info.model_copy(update={"live_from": dt.time.fromisoformat(start),
                                         "live_until": dt.time.fromisoformat(until)})
    return stage.model_copy(update={"info": info, "race": stage.race.model_copy(update={"timezone": "Europe/Rome"})})


def no_window(stage: Stage) -> Stage:
    return stage.model_copy(update={"info": stage.info.model_copy(update={"live_from": None, "live_until": None})})


def ages(**by_truck: float | None) -> racelive.Seen:
    return racelive.Seen({"truck-a": None, "truck-b": None, **{k.replace("_", "-"): v for k, v in by_truck.items()}})


# ---- the liveness decision (pure) ------------------------------------------------------------

NOON = dt.datetime(2027, 5, 8, 12, 0, tzinfo=ROME)
EVENING = dt.datetime(2027, 5, 8, 19, 0, tzinfo=ROME)


def test_fresh_telemetry_makes_the_stage_live_naming_the_truck(stage: Stage) -> None:
    decided = racelive.decide(stage, ages(truck_a=2.5), EVENING)  # after the example's window (11:00-17:30)
    assert decided.live and decided.reasons == ("telemetry of truck-a seen 2.5 s ago at the cloud side",)


def test_stale_or_no_telemetry_outside_any_window_is_not_live(stage: Stage) -> None:
    stale = stage.defaults.telemetry.stale_after_s + 1
    assert not racelive.decide(no_window(stage), ages(truck_a=stale), NOON).live
    assert not racelive.decide(no_window(stage), ages(), NOON).live
    assert not racelive.decide(windowed(stage), ages(), EVENING).live


def test_the_example_stage_declares_its_race_window(stage: Stage) -> None:
    assert (stage.info.live_from, stage.info.live_until) == (dt.time(11, 0), dt.time(17, 30))


def test_inside_the_race_window_is_live_even_with_no_telemetry(stage: Stage) -> None:
    decided = racelive.decide(windowed(stage), ages(), NOON)
    assert decided.live and decided.reasons == ("inside the race window 2027-05-08 11:00-17:30 Europe/Rome",)
    assert not racelive.decide(windowed(stage), ages(), dt.datetime(2027, 5, 8, 17, 30, tzinfo=ROME)).live
    assert not racelive.decide(windowed(stage), ages(), dt.datetime(2027, 5, 9, 12, 0, tzinfo=ROME)).live


def test_not_knowing_without_a_window_holds_back_and_with_a_window_the_window_decides(stage: Stage) -> None:
    unknown = racelive.Seen(None, "the cloud stand-in does not answer")
    decided = racelive.decide(no_window(stage), unknown, NOON)
    assert decided.live and "cannot tell whether telemetry flows (the cloud stand-in does not answer)" in decided.why
    assert not racelive.decide(windowed(stage), unknown, EVENING).live
    assert racelive.decide(windowed(stage), unknown, NOON).live


def test_the_standin_status_becomes_ages_per_truck(stage: Stage) -> None:
    status = {"trucks": {"truck-a": {"telemetry": {"age_s": 1.5}}, "truck-b": {"telemetry": {"age_s": None}},
                         "truck-z": {"telemetry": {"age_s": 0.1}}}}
    assert racelive.seen_from_status(stage, status).ages == {"truck-a": 1.5, "truck-b": None}
    assert racelive.seen_from_status(stage, {"trucks": "junk"}).ages == {"truck-a": None, "truck-b": None}
    assert racelive.seen_from_status(stage, {"trucks": {"truck-a": {"telemetry": {"age_s": True}}}}).ages == {
        "truck-a": None, "truck-b": None}


def test_aws_telemetry_or_a_missing_standin_is_unknown(stage: Stage) -> None:
    assert REAL_OBSERVE(stage, "aws", make_cloud(stage)).ages is None
    assert REAL_OBSERVE(stage, "lab", None) == racelive.Seen(None, "no cloud stand-in is up")


# ---- what waits: marked once, in the plain playbooks ------------------------------------------

def test_the_cutting_tasks_are_tagged_in_the_playbooks() -> None:
    assert racelive.tagged_tasks(REPO / "playbooks") == {
        ("telemetry", "Restart mosquitto"), ("hardening", "Load the firewall"), ("network", "Reload networkd")}


def test_the_tagged_handlers_are_skipped_on_gateways_by_the_hold_variable() -> None:
    """Handlers ignore --skip-tags: each tagged one carries the hold in its `when` (site.yml sets it per node)."""
    import yaml

    site = yaml.safe_load((REPO / "playbooks" / "site.yml").read_text())[0]
    assert "hold_telemetry_cuts" in site["vars"]["telemetry_cuts_held"]
    assert "role_is_gateway" in site["vars"]["telemetry_cuts_held"]
    for role, name in racelive.tagged_tasks(REPO / "playbooks"):
        handlers = yaml.safe_load((REPO / "playbooks" / "roles" / role / "handlers" / "main.yml").read_text())
        entry = next(h for h in handlers if h["name"] == name)
        conditions = entry["when"] if isinstance(entry["when"], list) else [entry["when"]]
        assert "not (telemetry_cuts_held | bool)" in conditions, (role, name)


def test_each_tagged_handler_says_when_it_is_held_back() -> None:
    """A skipped handler's event does not say why it was skipped: a handler listening to the same notification
    sets `<role>_held_back: <name>` exactly when the tagged one is held (its other conditions and the hold)."""
    import yaml

    for role, name in racelive.tagged_tasks(REPO / "playbooks"):
        handlers = yaml.safe_load((REPO / "playbooks" / "roles" / role / "handlers" / "main.yml").read_text())
        held = next(h for h in handlers if h["name"] == name)
        [says] = [h for h in handlers if h.get("listen") == name]
        assert says["ansible.builtin.set_fact"] == {f"{role}{HELD_FACT_SUFFIX}": name}, (role, name)
        when = [held["when"]] if isinstance(held["when"], str) else held["when"]
        said = [says["when"]] if isinstance(says["when"], str) else says["when"]
        assert said == [c for c in when if c != "not (telemetry_cuts_held | bool)"] + ["telemetry_cuts_held | bool"]


def gw_changes() -> list[Change]:
    items = ({"kind": "broker", "item": "configuration loaded", "found": "an older version", "diff": "",
              "expected": "/etc/mosquitto/mosquitto.conf as it is now", "cuts_telemetry": True},
             {"kind": "sshd", "item": "passwordauthentication", "expected": "no", "found": "yes", "diff": "",
              "cuts_telemetry": False})
    changes = [Change("truck-a-gw", "Configure the broker, its bridge and the bridge's certificates", FEED,
                      "truck_files"),
               Change("truck-a-gw", "telemetry : Restart mosquitto", "", "systemd_service", handler=True),
               Change("truck-a-hv1", "Load the firewall", "", "systemd_service", handler=True),
               Change("truck-a-gw", "Configure sshd", SSHD, "truck_files"),
               Change("truck-b-gw", "Compare the node's live state", "", "truck_live_state", items)]
    return changes


def test_held_changes_are_the_tagged_ones_and_flagged_items_on_gateways_only(stage: Stage) -> None:
    held = racelive.held_changes(gw_changes(), racelive.gateways(stage), racelive.tagged_tasks(REPO / "playbooks"))
    assert [(h.node, h.task) for h in held] == [("truck-a-gw", "Restart mosquitto"),
                                                ("truck-b-gw", "Compare the node's live state")]
    assert "interrupts telemetry" in held[0].change
    assert held[1].change.startswith("broker configuration loaded: expected /etc/mosquitto/mosquitto.conf")


def test_the_hold_is_an_extra_var_of_the_truck_run_only_when_asked(stage: Stage) -> None:
    cloud = make_cloud(stage)
    assert build_plan(REPO / "playbooks", stage, cloud, FakeConnection(), "lab", hold_cuts=True).extravars[
        "hold_telemetry_cuts"] is True
    assert "hold_telemetry_cuts" not in build_plan(REPO / "playbooks", stage, cloud, FakeConnection(), "lab").extravars


# ---- drift --fix while live ------------------------------------------------------------------

@pytest.fixture
def live_nodes(monkeypatch: pytest.MonkeyPatch, project: Project) -> dict[str, Any]:
    """A gateway whose broker config and sshd were edited by hand; a run holding cuts fixes sshd only."""
    state: dict[str, Any] = {"broker": True, "sshd": True, "plans": [], "ages": {"truck-a": 1.0, "truck-b": None}}

    def changes() -> list[Change]:
        found = []
        if state["broker"]:
            found += [Change("truck-a-gw", "Configure the broker", FEED, "truck_files"),
                      Change("truck-a-gw", "Restart mosquitto", "", "systemd_service", handler=True)]
        if state["sshd"]:
            found.append(Change("truck-a-gw", "Configure sshd", SSHD, "truck_files"))
        return found

    def run_plan(plan: Any, settings: Any, on_event: Any, cancel: Any) -> TruckRunResult:
        state["plans"].append(plan)
        result = truck_result(plan.check, changes())
        if not plan.check:
            state["sshd"] = False
            state["broker"] = state["broker"] and plan.hold_cuts
        return result

    monkeypatch.setattr("truckctl.truck.runner.run_plan", run_plan)
    target = FakeLabTarget(project)
    monkeypatch.setattr("truckctl.targets.for_kind", lambda kind, project_: target)
    state["target"] = target
    monkeypatch.setattr(racelive, "observe", lambda stage, target, cloud: racelive.Seen(dict(state["ages"])))
    monkeypatch.setattr("truckctl.lifecycle.run.notify", lambda *a, **k: [])
    return state


def journal_events(project: Project, run_id: str) -> list[dict[str, Any]]:
    lines = (runs_dir(project) / run_id / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_live_drift_fix_holds_the_restart_fixes_the_rest_and_exits_3(project: Project,
                                                                    live_nodes: dict[str, Any]) -> None:
    typed, code = drift(live_nodes["target"], DriftOptions("stage-1", fix=True))
    result = typed.to_json()
    assert code == ExitCode.CHANGES
    assert [p.check for p in live_nodes["plans"]] == [True, False, True]
    assert live_nodes["plans"][1].hold_cuts and live_nodes["plans"][1].extravars["hold_telemetry_cuts"] is True
    assert result["live"]["live"] and result["live"]["reasons"] == [
        "telemetry of truck-a seen 1 s ago at the cloud side"]
    assert result["held"] == [{"node": "truck-a-gw", "task": "Restart mosquitto",
                               "change": "would run: a restart or reload that interrupts telemetry", "diff": ""}]
    assert "held back 1 change(s) that would interrupt telemetry while stage-1 is live" in result["held_reason"]
    assert not live_nodes["sshd"] and live_nodes["broker"]  # the rest is fixed, the broker waits
    assert [i["item"] for i in result["after"]["items"]] == ["Configure the broker"]
    events = journal_events(project, result["run_id"])
    assert [(e["node"], e["task"]) for e in events if e["kind"] == "held"] == [("truck-a-gw", "Restart mosquitto")]
    liveness = next(e for e in events if e["kind"] == "liveness")
    assert liveness["live"] is True and any(e["kind"] == "step-end" and e["step"] == "liveness" for e in events)


def test_interrupt_telemetry_applies_everything_without_asking_the_cloud_side(project: Project,
                                                                             live_nodes: dict[str, Any],
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(racelive, "observe", lambda *a: pytest.fail("liveness checked despite the flag"))
    typed, code = drift(live_nodes["target"], DriftOptions("stage-1", fix=True, interrupt_telemetry=True))
    result = typed.to_json()
    assert code == ExitCode.OK and result["fixed"] and "held" not in result
    assert not live_nodes["plans"][1].hold_cuts and not live_nodes["broker"]


def test_not_live_applies_everything(project: Project, live_nodes: dict[str, Any]) -> None:
    live_nodes["ages"] = {"truck-a": 600.0, "truck-b": None}
    typed, code = drift(live_nodes["target"], DriftOptions("stage-1", fix=True))
    result = typed.to_json()
    assert code == ExitCode.OK and result["live"]["live"] is False and not live_nodes["plans"][1].hold_cuts


def test_drift_without_fix_does_not_ask_whether_the_race_is_live(project: Project, live_nodes: dict[str, Any],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(racelive, "observe", lambda *a: pytest.fail("liveness checked without --fix"))
    typed, code = drift(live_nodes["target"], DriftOptions("stage-1"))
    result = typed.to_json()
    assert code == ExitCode.CHANGES and "live" not in result


def test_cli_json_human_output_and_the_option_alias(project: Project, live_nodes: dict[str, Any]) -> None:
    runner = CliRunner()
    as_json = runner.invoke(app, ["-C", str(REPO), "drift", "stage-1", "--fix", "--yes", "--json"])
    assert as_json.exit_code == 3
    document = json.loads(as_json.stdout)
    assert document["exit_code"] == 3 and document["result"]["held"][0]["task"] == "Restart mosquitto"
    assert document["result"]["live"]["live"] is True
    live_nodes.update(broker=True, sshd=True)
    human = runner.invoke(app, ["-C", str(REPO), "drift", "stage-1", "--fix", "--yes"])
    assert human.exit_code == 3
    assert ("held back: truck-a-gw: Restart mosquitto: would run: a restart or reload that interrupts telemetry"
            in human.stdout)
    assert "re-run after the stage, or with --interrupt-telemetry" in human.stdout
    forced = runner.invoke(app, ["-C", str(REPO), "drift", "stage-1", "--fix", "--yes", "--during-race", "--json"])
    assert forced.exit_code == 0 and not live_nodes["broker"]
    for command in ("up", "drift", "down"):
        assert "--interrupt-telemetry" in runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).stdout


# ---- down while live -------------------------------------------------------------------------

def test_down_while_live_refuses_and_changes_nothing(project: Project, stage: Stage,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from truckctl.lifecycle import down as core

    monkeypatch.setattr(racelive, "observe", lambda stage, target, cloud: racelive.Seen({"truck-a": 3.0}))
    target = FakeLabTarget(project)
    monkeypatch.setattr("truckctl.truck.runner.run_plan", lambda *a: pytest.fail("the truck tier ran"))
    with pytest.raises(TruckctlError) as caught:
        core.down(target, core.DownOptions("stage-1"), core.Confirmation(True))
    assert caught.value.exit_code == ExitCode.CHANGES and target.revoked == []
    problem = caught.value.problems[0]
    assert problem.code == "race-live" and problem.location == "--interrupt-telemetry"
    assert "stage-1 is live (telemetry of truck-a seen 3 s ago at the cloud side): down would cut" in problem.message
    assert caught.value.result["live"]["live"] is True


# ---- up while live ---------------------------------------------------------------------------

def test_up_while_live_holds_in_its_one_run_what_would_cut_telemetry_and_says_what(
        project: Project, stage: Stage, monkeypatch: pytest.MonkeyPatch) -> None:
    """No check pass: the one truck run holds the cuts back and its result says which (a held handler's own
    word, a live-state item flagged cuts_telemetry), on gateways only; journaled as `held` events, exit 3."""
    from truckctl.lifecycle import orchestrator

    plans: list[Any] = []
    item = {"kind": "broker", "item": "configuration loaded", "expected": "as it is now", "found": "an older version",
            "diff": "", "cuts_telemetry": True}

    def run_plan(plan: Any, settings: Any, on_event: Any, cancel: Any) -> TruckRunResult:
        plans.append(plan)
        result = truck_result(plan.check, [Change("truck-b-gw", "Compare the node's live state", "",
                                                  "truck_live_state", (item,))] if plan.hold_cuts else [])
        result.held = [Change("truck-b-gw", "Load the firewall", action="set_fact", handler=True),
                       Change("truck-a-hv1", "Load the firewall", action="set_fact", handler=True)
                       ] if plan.hold_cuts else []
        return result

    target = FakeLabTarget(project)
    monkeypatch.setattr(orchestrator, "prechecks", passed_prechecks)
    monkeypatch.setattr("truckctl.targets.for_kind", lambda kind, project_: target)
    monkeypatch.setattr("truckctl.truck.runner.run_plan", run_plan)
    monkeypatch.setattr(racelive, "observe", lambda stage, target, cloud: racelive.Seen({"truck-b": 0.5}))
    outcome = CliRunner().invoke(app, ["-C", str(REPO), "up", "stage-1", "--json"])
    assert outcome.exit_code == 3, outcome.stdout
    document = json.loads(outcome.stdout)["result"]
    assert document["held"] == [
        {"node": "truck-b-gw", "task": "Load the firewall",
         "change": "would run: a restart or reload that interrupts telemetry", "diff": ""},
        {"node": "truck-b-gw", "task": "Compare the node's live state",
         "change": "broker configuration loaded: expected as it is now, found an older version", "diff": ""}]
    assert "held back 2 change(s) that would interrupt telemetry while stage-1 is live" in document["held_reason"]
    [apply] = plans
    assert not apply.check and apply.hold_cuts and apply.limit is None
    events = journal_events(project, document["run_id"])
    assert "held" not in [e.get("step") for e in events if e["kind"] == "step-start"]
    assert [(e["node"], e["task"]) for e in events if e["kind"] == "held"] == [
        ("truck-b-gw", "Load the firewall"), ("truck-b-gw", "Compare the node's live state")]
    plans.clear()
    forced = CliRunner().invoke(app, ["-C", str(REPO), "up", "stage-1", "--json", "--interrupt-telemetry"])
    assert forced.exit_code == 0 and [p.check for p in plans] == [False] and not plans[0].hold_cuts


def test_the_check_decides_at_the_clock_s_time(stage: Stage) -> None:
    assert racelive.check(windowed(stage), "lab", None, clock=NOON.timestamp).live
    assert not racelive.check(windowed(stage), "lab", None, clock=EVENING.timestamp).live


# ---- the race window in the stage file ---------------------------------------------------------

@pytest.mark.parametrize(("lines", "expected"), [
    ('  live_from: 11:00\n  live_until: "17:30"\n',
     'stage-1.yaml:{line}: stage.live_from: expected a time of day in quotes such as "11:00", got the number 660'),
    ('  live_from: "11:00"\n', "stage-1.yaml:2: stage.live_until: expected live_until with live_from"),
    ('  live_from: "18:00"\n  live_until: "17:30"\n',
     "stage-1.yaml:{line2}: stage.live_until: expected a time after live_from (18:00), got 17:30"),
    ('  live_until: "25:00"\n', "stage-1.yaml:{line}: stage.live_until: expected a time of day \"HH:MM\""),
])
def test_a_bad_race_window_is_one_line_naming_file_line_and_field(example_project: Path, lines: str,
                                                                 expected: str) -> None:
    path = example_project / "inventory" / "stages" / "stage-1.yaml"
    text = "".join(line for line in path.read_text().splitlines(keepends=True) if "live_" not in line)
    head, _, tail = text.partition("  distance_km: 171\n")
    path.write_text(head + "  distance_km: 171\n" + lines + tail)
    line = head.count("\n") + 2
    outcome = CliRunner().invoke(app, ["-C", str(example_project), "validate", "stage-1"])
    assert outcome.exit_code == 5
    errors = [row for row in outcome.output.splitlines() if row.startswith("error:")]
    assert len(errors) == 1 and expected.format(line=line, line2=line + 1) in errors[0], outcome.output
