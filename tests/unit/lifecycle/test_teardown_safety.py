"""Teardown safety as a property, over every way of asking: the data lake is destroyed only with
--delete-data AND the stage name typed (or, where nobody can type, repeated with
--confirm-delete-data); a teardown happens only when confirmed; every refusal changes nothing.

The whole matrix of flags, terminal or not, and what is typed at the prompt goes through the
confirmation policy and `down` (aws target, the Pulumi engine replaced by a recorder); the same
matrix without a terminal goes through the real CLI too. (`tests/unit/lifecycle/test_down.py` has
the examples; `tests/lab/test_teardown.py` resumes an interrupted down on the lab.)
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.helpers import REPO
from tests.unit.lifecycle.test_down import Fakes
from truckctl.cli.app import app
from truckctl.config.model import Stage
from truckctl.errors import TruckctlError
from truckctl.lifecycle import down as core
from truckctl.lifecycle.journal import runs_dir
from truckctl.lifecycle.lock import lock_path
from truckctl.project import Project

STAGE = "stage-1"
CONFIRM_VALUES = (None, STAGE, "stage-2", "STAGE-1", "")
TYPED = (STAGE, f" {STAGE} ", "", "stage-2", "yes", "y", "stage-1 --delete-data")


@pytest.fixture
def project(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: f"/usr/bin/{name}")  # a pulumi CLI "is there"
    return project


def expected(yes: bool, delete_data: bool, confirm: str | None, interactive: bool, typed: str) -> str | None:
    """What may happen to the cloud tier: 'keep data', 'delete data', or None (refused, nothing)."""
    if confirm is not None and (not delete_data or confirm != STAGE):
        return None
    name_typed = interactive and typed.strip() == STAGE
    if delete_data:
        return "delete data" if (confirm == STAGE and yes) or name_typed else None
    return "keep data" if yes or name_typed else None


def attempt(project: Project, stage: Stage, yes: bool, delete_data: bool, confirm: str | None, interactive: bool,
            typed: str) -> tuple[list[str], bool]:
    """Ask as the CLI does, then tear down if confirmed. (calls made, whether anything was left behind)"""
    fakes = Fakes(stage)
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return typed

    try:
        target = fakes.target("aws", project)
        confirmation = core.confirm(STAGE, target, yes=yes, delete_data=delete_data, confirm_delete_data=confirm,
                                    interactive=interactive, ask=ask)
        core.down(target, core.DownOptions(STAGE, delete_data, race=True), confirmation, runner=fakes.run_plan)
    except TruckctlError:
        pass
    if asked and delete_data:
        assert "DELETES the data lake" in asked[0]  # the prompt says what is at stake
    written = lock_path(project, STAGE).exists() or (runs_dir(project).exists() and any(runs_dir(project).iterdir()))
    return fakes.calls, written


def test_the_data_lake_goes_only_with_delete_data_and_the_stage_name(project: Project, stage: Stage,
                                                                      tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cases = 0
    outcomes: Counter[str | None] = Counter()
    for yes, delete_data, confirm, interactive, typed in itertools.product(
            (False, True), (False, True), CONFIRM_VALUES, (False, True), TYPED):
        monkeypatch.setenv("TRUCKCTL_STATE_DIR", str(tmp_path / f"state-{cases}"))
        calls, written = attempt(Project(REPO), stage, yes, delete_data, confirm, interactive, typed)
        case = dict(yes=yes, delete_data=delete_data, confirm=confirm, interactive=interactive, typed=typed)
        destroys = [c for c in calls if c.startswith("destroy")]
        outcome = expected(yes, delete_data, confirm, interactive, typed)
        outcomes[outcome] += 1
        if outcome is None:
            assert calls == [] and not written, case  # a refusal changes nothing, not even the journal
        else:
            assert destroys == [f"destroy(delete_data={outcome == 'delete data'})"], (case, calls)
        cases += 1
    assert cases == 2 * 2 * len(CONFIRM_VALUES) * 2 * len(TYPED)
    assert min(outcomes["delete data"], outcomes["keep data"], outcomes[None]) > 0, outcomes


@pytest.mark.parametrize(("yes", "delete_data", "confirm"),
                         list(itertools.product((False, True), (False, True), CONFIRM_VALUES)))
def test_the_cli_without_a_terminal_follows_the_same_rule(project: Project, stage: Stage,
                                                          monkeypatch: pytest.MonkeyPatch, yes: bool,
                                                          delete_data: bool, confirm: str | None) -> None:
    fakes = Fakes(stage)
    monkeypatch.setattr("truckctl.targets.for_kind", fakes.target)
    monkeypatch.setattr("truckctl.truck.runner.run_plan", fakes.run_plan)
    args = ["-C", str(REPO), "down", STAGE, "--race", "--target", "aws", "--json"]
    args += ["--yes"] if yes else []
    args += ["--delete-data"] if delete_data else []
    args += ["--confirm-delete-data", confirm] if confirm is not None else []
    result = CliRunner().invoke(app, args)  # stdin is not a terminal: nobody can type the name
    document: dict[str, Any] = json.loads(result.stdout)
    outcome = expected(yes, delete_data, confirm, False, "")
    destroys = [c for c in fakes.calls if c.startswith("destroy")]
    if outcome is None:
        assert result.exit_code == 2 and fakes.calls == [], (args, document["errors"])
        assert not lock_path(project, STAGE).exists() and not runs_dir(project).exists()
    else:
        assert result.exit_code == 0, document["errors"]
        assert destroys == [f"destroy(delete_data={outcome == 'delete data'})"]
        deleted = {item["what"] for item in document["result"]["deleted"]}
        kept = {item["what"] for item in document["result"]["kept"]}
        assert ("data lake" in deleted) == (outcome == "delete data") and ("data lake" in kept) != ("data lake"
                                                                                                   in deleted)
