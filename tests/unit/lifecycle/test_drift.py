"""`truckctl drift` with the lab and Ansible replaced by fakes: exit codes, --fix flow, confirmation,
notifications, markdown, and the journal's record of drift for `status`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.helpers import REPO, FakeLabTarget
from tests.unit.lifecycle.fakes import truck_result
from truckctl.cli.app import app
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.lifecycle import drift as drift_module
from truckctl.lifecycle.drift import DriftHooks, DriftOptions, drift
from truckctl.lifecycle.journal import list_runs, show_run
from truckctl.lifecycle.report import drift_markdown
from truckctl.project import Project
from truckctl.targets import for_kind
from truckctl.truck.events import Change, TruckRunResult

SSHD_DIFF = "--- before\n+++ after\n-PasswordAuthentication yes\n+PasswordAuthentication no\n"




@pytest.fixture
def nodes(monkeypatch: pytest.MonkeyPatch, project: Project) -> dict[str, Any]:
    """A node whose sshd config was edited by hand: check mode sees it until a real run fixes it."""
    state: dict[str, Any] = {"drifted": True, "runs": [], "unreachable": False}

    def run_plan(plan: Any, settings: Any, on_event: Any, cancel: Any) -> TruckRunResult:
        state["runs"].append("check" if plan.check else "apply")
        changes = [Change("truck-a-gw", "Configure sshd", SSHD_DIFF)] if state["drifted"] else []
        if not plan.check:
            state["drifted"] = False
        return truck_result(plan.check, changes, state["unreachable"])

    monkeypatch.setattr("truckctl.truck.runner.run_plan", run_plan)
    target = FakeLabTarget(project)
    monkeypatch.setattr("truckctl.targets.for_kind", lambda kind, project_: target)  # the CLI's choice
    state["target"] = target
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr("truckctl.lifecycle.run.notify",
                        lambda channels, stage, kind, message, **details: sent.append((kind, message)) or [])
    state["notifications"] = sent
    return state


def test_drift_found_exits_3_with_the_diff_and_notifies(project: Project, nodes: dict[str, Any]) -> None:
    typed, code = drift(nodes["target"], DriftOptions("stage-1"))
    found = typed.to_json()
    assert code == ExitCode.CHANGES and nodes["runs"] == ["check"]
    assert found["drift"] is True and found["fixed"] is False
    assert found["items"] == [{"tier": "truck", "node": "truck-a-gw", "kind": "task", "item": "Configure sshd",
                               "expected": "as the roles render it", "found": "differs", "diff": SSHD_DIFF}]
    assert "offline plan" in found["cloud"]["note"]
    assert nodes["notifications"][0][0] == "drift-found" and "truck-a-gw: 1" in nodes["notifications"][0][1]
    summary = show_run(project, found["run_id"])["summary"]
    assert summary["command"] == "drift" and summary["result"]["drift"] is True  # what `status` reads


def test_fix_applies_and_rechecks_clean(project: Project, nodes: dict[str, Any]) -> None:
    typed, code = drift(nodes["target"], DriftOptions("stage-1", fix=True))
    found = typed.to_json()
    assert code == ExitCode.OK and found["fixed"] is True
    assert nodes["runs"] == ["check", "apply", "check"]
    assert found["after"]["drift"] is False


def test_clean_environment_exits_0_without_notifying(project: Project, nodes: dict[str, Any]) -> None:
    nodes["drifted"] = False
    typed, code = drift(nodes["target"], DriftOptions("stage-1", fix=True))
    found = typed.to_json()
    assert code == ExitCode.OK and found["drift"] is False and nodes["runs"] == ["check"]
    assert nodes["notifications"] == []


def test_unconfirmed_fix_changes_nothing(project: Project, nodes: dict[str, Any]) -> None:
    typed, code = drift(nodes["target"], DriftOptions("stage-1", fix=True), DriftHooks(confirm=lambda drift: False))
    found = typed.to_json()
    assert code == ExitCode.CHANGES and nodes["runs"] == ["check"]
    assert "not applied" in found["fix"]


def test_unreachable_node_is_an_error_not_a_clean_result(project: Project, nodes: dict[str, Any]) -> None:
    nodes["unreachable"] = True
    with pytest.raises(TruckctlError) as caught:
        drift(nodes["target"], DriftOptions("stage-1"))
    assert caught.value.exit_code == ExitCode.ERROR
    assert caught.value.problems[0].location == "truck-a-hv1"
    assert list_runs(project)[0]["failed_step"] == "check-truck"


def test_cli_json_and_markdown(project: Project, nodes: dict[str, Any]) -> None:
    runner = CliRunner()
    as_json = runner.invoke(app, ["-C", str(REPO), "drift", "stage-1", "--json"])
    assert as_json.exit_code == 3
    document = json.loads(as_json.stdout)
    assert document["ok"] is True and document["result"]["items"][0]["node"] == "truck-a-gw"
    markdown = runner.invoke(app, ["-C", str(REPO), "drift", "stage-1", "--format", "markdown"])
    assert markdown.exit_code == 3
    assert markdown.stdout.startswith("## truckctl drift: stage-1 (lab)")
    assert "| truck | truck-a-gw | task | Configure sshd | as the roles render it | differs |" in markdown.stdout
    assert "```diff" in markdown.stdout


def test_cli_fix_without_yes_and_without_terminal_changes_nothing(project: Project, nodes: dict[str, Any]) -> None:
    outcome = CliRunner().invoke(app, ["-C", str(REPO), "drift", "stage-1", "--fix"])
    assert outcome.exit_code == 3 and nodes["runs"] == ["check"]
    assert "--yes" in outcome.stdout
    fixed = CliRunner().invoke(app, ["-C", str(REPO), "drift", "stage-1", "--fix", "--yes", "--json"])
    assert fixed.exit_code == 0 and json.loads(fixed.stdout)["result"]["fixed"] is True


def test_json_and_markdown_together_is_a_usage_error(project: Project) -> None:
    outcome = CliRunner().invoke(app, ["-C", str(REPO), "drift", "stage-1", "--json", "--format", "markdown"])
    assert outcome.exit_code == 2


def test_markdown_escapes_table_cells(stage: Stage) -> None:
    text = drift_markdown({"stage": "stage-1", "target": "lab", "items": [
        {"tier": "truck", "node": "truck-a-gw", "kind": "file", "item": "a | b", "expected": "x", "found": "y",
         "diff": ""}]})
    assert "a \\| b" in text


@pytest.mark.parametrize("content", ["```\n# closed?\n```", "~~~\nplain\n~~~", "````` five `` two ```x",
                                     "</details>\n```diff\n- a"])
def test_markdown_diff_cannot_close_its_code_fence(content: str) -> None:
    """A node's file content (the diff) stays inside its fenced block, whatever backticks or tildes it holds."""
    from markdown_it import MarkdownIt

    diff = f"--- before\n+++ after\n+{content}\n"
    text = drift_markdown({"stage": "stage-1", "target": "lab", "items": [
        {"tier": "truck", "node": "truck-a-gw", "kind": "file", "item": "/etc/motd", "expected": "as rendered",
         "found": "differs", "diff": diff}]})
    fences = [t for t in MarkdownIt().parse(text) if t.type == "fence"]
    assert [f.content for f in fences] == [diff] and fences[0].info == "diff"


def test_truck_changes_become_items_with_kind_expected_and_found() -> None:
    live = {"kind": "sudo", "item": "/etc/sudoers.d/x", "expected": "no such file", "found": "a sudoers file",
            "diff": "+x ALL=(ALL) NOPASSWD: ALL\n"}
    unit = {"kind": "unit", "item": "mosquitto", "expected": "enabled and active", "found": "not enabled, not active"}
    changes = [
        Change("gw", "Compare live", "", "truck_live_state", (live,)),
        Change("gw", "Configure the broker", "start mosquitto\n", "truck_files", (unit,)),
        Change("gw", "Restart mosquitto", "", "systemd_service", handler=True),
        Change("gw", "Create the ops users", "+raceops\n", "user"),
    ]
    items = [i.to_json() for c in changes for i in drift_module.truck_items(c)]
    assert items == [
        {"tier": "truck", "node": "gw", **live},
        {"tier": "truck", "node": "gw", **unit, "diff": ""},
        {"tier": "truck", "node": "gw", "kind": "task", "item": "Create the ops users",
         "expected": "as the roles render it", "found": "differs", "diff": "+raceops\n"},
    ]


def test_markdown_shows_a_hostile_diff_as_escapes() -> None:
    """A compromised node's diff holds escape sequences: `--format markdown` prints them as escapes."""
    import io

    from truckctl.cli.cmd_drift import render_markdown
    from truckctl.cli.dispatch import Outcome
    from truckctl.cli.output import Env

    stream = io.StringIO()
    render_markdown(Env(stdout=stream), Outcome({"stage": "stage-1", "target": "lab", "items": [
        {"tier": "truck", "node": "truck-a-gw", "kind": "file", "item": "x", "expected": "", "found": "",
         "diff": "+a\x1b]0;pwned\x07\x1b[2J\x9b2J\u202eb\n"}]}))
    shown = stream.getvalue()
    assert "+a\\x1b]0;pwned\\x07\\x1b[2J\\x9b2J\\u202eb" in shown
    assert all(char.isprintable() or char == "\n" for char in shown), repr(shown)


def test_an_unknown_target_is_refused_as_usage(project: Project) -> None:
    with pytest.raises(TruckctlError) as caught:
        for_kind("gcp", project)
    assert caught.value.exit_code == ExitCode.USAGE and "lab or aws" in caught.value.problems[0].message
