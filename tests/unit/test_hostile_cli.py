"""Hostile command-line arguments: every command that takes a STAGE, a RUN_ID or a node refuses
them with exit 5 (invalid configuration: a stage name is configuration) or 2 (usage), in one
bounded line, and writes nothing: the project is unchanged and no state directory is created.

Stage names reach file paths (inventory/stages/<name>.yaml), lock files, run ids and commands on
the nodes; run ids reach paths under the state directory. Nothing here needs root or the lab: a
refused argument never gets that far (`lab up` included, which would otherwise build a lab).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.unit.test_config_corpus import snapshot
from truckctl.cli.app import app
from truckctl.lifecycle.journal import RUN_ID, new_run_id

HOSTILE_NAMES = [
    "../etc/passwd", "stage-1/../../../etc/passwd", "/etc/passwd", "stage-1/", "..", ".", "~root",
    "stage-1;rm -rf /", "$(touch /tmp/truckctl-pwned)", "`id`", "stage-1|cat", "stage-1 && reboot",
    "stage-1\x00", "\x00", "stage-1\n", "stage-1\r\nInjected: header", "stage-1\x1b[2J",
    "x" * 5000, "stage-" + "1" * 4000, "", " stage-1", "stage-1 ", "stage-01", "stage-0", "stage-100",
    "STAGE-1", "stage-1.yaml", "stage-\uff11", "stage-\u0661", "\u30b9\u30c6\u30fc\u30b8-1", "stage-1\u202e",
    "stage-1\u200b", "-stage-1", "--stage-1",
]

# Each command with where the hostile value goes; `{}` is replaced by the value.
STAGE_COMMANDS = {
    "validate": ["validate", "{}"],
    "inventory": ["inventory", "{}"],
    "plan": ["plan", "{}"],
    "up": ["up", "{}"],
    "drift": ["drift", "{}"],
    "status": ["status", "{}"],
    "down": ["down", "{}", "--yes"],
    "unlock": ["unlock", "{}"],
    "runs --stage": ["runs", "--stage", "{}"],
    "lab up": ["lab", "up", "{}"],
}
NODE_COMMANDS = {
    "up --limit": ["up", "stage-1", "--limit", "{}"],
    "drift --limit": ["drift", "stage-1", "--limit", "{}"],
}
HOSTILE_RUN_IDS = [
    *HOSTILE_NAMES,
    "20261124T181105Z-stage-1-up-6288/../../../../etc/passwd", "20261124T181105Z-stage-1-up-6288/summary.json",
    "\uff12\uff10\uff12\uff16T181105Z-stage-1-up-6288", "20261124T181105Z-stage-1-up-62\u0668\u0668",
    "20261124T181105Z-stage-1-up-6288\n", "20261124T181105Z-stage-1-up-6288;id",
]

runner = CliRunner()


@pytest.fixture
def project(example_project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example; the state directory is the default one inside it (must never appear)."""
    for name in ("TRUCKCTL_STATE_DIR", "TRUCKCTL_PROJECT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(example_project)
    return example_project


def refused(project: Path, argv: list[str], value: str) -> tuple[int, dict[str, object] | None]:
    """Run the command with --json; check it refused and wrote nothing. Returns (exit code, envelope)."""
    before = snapshot(project)
    args = ["-C", str(project), *[a.replace("{}", value) if a == "{}" else a for a in argv], "--json"]
    result = runner.invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (2, 5), (argv, value[:80], result.exit_code, result.stdout[-500:])
    assert "Traceback" not in result.stdout + result.stderr
    assert snapshot(project) == before, f"{argv} {value[:40]!r} changed the project"
    assert not (project / ".truckctl").exists(), f"{argv} {value[:40]!r} created a state directory"
    assert not Path("/tmp/truckctl-pwned").exists()
    envelope = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    if envelope is not None:
        assert envelope["ok"] is False and envelope["exit_code"] == result.exit_code
        for error in envelope["errors"]:
            line = f"{error['location']}: {error['message']}"
            assert "\n" not in line and "\r" not in line and "\x00" not in line and "\x1b" not in line
            assert len(line) < 300, f"an error line of {len(line)} characters"
    return result.exit_code, envelope


@pytest.mark.parametrize("command", list(STAGE_COMMANDS))
def test_hostile_stage_names_are_refused_and_nothing_is_written(project: Path, command: str) -> None:
    argv = STAGE_COMMANDS[command]
    for name in HOSTILE_NAMES:
        code, envelope = refused(project, argv, name)
        if code == 5:  # refused by the stage-name check itself, not by something after it
            assert envelope is not None and envelope["errors"][0]["code"] == "bad-stage-name", envelope


@pytest.mark.parametrize("command", list(NODE_COMMANDS))
def test_hostile_node_names_are_refused_before_the_lock(project: Path, command: str) -> None:
    for name in HOSTILE_NAMES:
        code, envelope = refused(project, NODE_COMMANDS[command], name)
        if envelope is not None and code == 2 and envelope["errors"]:
            assert envelope["errors"][0]["code"] in ("unknown-node", "usage"), envelope


def test_hostile_run_ids_are_usage_errors(project: Path) -> None:
    for run_id in HOSTILE_RUN_IDS:
        code, envelope = refused(project, ["runs", "show", "{}"], run_id)
        assert code == 2
        if envelope is not None and envelope["errors"]:
            assert envelope["errors"][0]["code"] in ("bad-run-id", "usage"), envelope


def test_a_real_run_id_passes_the_check_and_is_looked_up(project: Path) -> None:
    run_id = new_run_id("stage-12", "drift")
    assert RUN_ID.fullmatch(run_id)
    result = runner.invoke(app, ["-C", str(project), "runs", "show", run_id, "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["errors"][0]["code"] == "unknown-run"
    assert not (project / ".truckctl").exists()
