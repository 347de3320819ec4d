"""The run journal: events and summary per run, bounded, scrubbed of secrets, readable after a kill."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.keys import throwaway_private_key
from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.lifecycle import journal as journal_module
from truckctl.lifecycle.journal import Journal, Redactor, list_runs, show_run
from truckctl.lifecycle.steps import StepRecord, StepResult, StepSummary
from truckctl.project import Project

PEM = throwaway_private_key()
PEM_BODY = PEM.splitlines()[1]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.delenv("TRUCKCTL_STATE_DIR", raising=False)
    return Project(tmp_path)


def test_a_typed_step_result_is_journaled_in_one_place_and_read_back_typed(project: Project) -> None:
    """Status, changes and the summary's facts go to summary.json as they always did (older runs stay
    readable); a resuming `down` reads them back as a StepRecord, never by a dict key of its own."""
    journal = Journal(project, "stage-1", "down", "aws")
    journal.step_start("cloud")
    journal.step_done("cloud", StepResult({"destroyed": True}, "ok", 60, StepSummary(delete_data=True)))
    journal.step_start("truck")
    journal.step_done("truck", StepResult({}, "failed", 2, StepSummary(not_down=("truck-a-gw",))))
    journal.finish(ExitCode.ERROR, [])
    steps = show_run(project, journal.run_id)["summary"]["steps"]
    assert steps["cloud"]["summary_delete_data"] is True and steps["cloud"]["changed"] == 60
    assert steps["truck"]["summary_not_down"] == ["truck-a-gw"] and steps["truck"]["status"] == "failed"
    assert "destroyed" not in steps["cloud"]  # the detail is the command's result, not the journal's
    assert StepRecord.read(steps["cloud"]) == StepRecord("ok", 60, delete_data=True)
    assert StepRecord.read(steps["truck"]) == StepRecord("failed", 2, delete_data=None)


def test_run_records_steps_and_outcome(project: Project) -> None:
    journal = Journal(project, "stage-1", "up", "lab")
    journal.step_start("prechecks")
    journal.step_end("prechecks", "ok")
    journal.step_start("truck")
    journal.event("task", "truck", node="truck-a-gw", task="install mosquitto", changed=True)
    journal.step_end("truck", "failed", changed=3)
    journal.finish(ExitCode.ERROR, [Problem("truck-failed", "1 node failed")])
    shown = show_run(project, journal.run_id)
    summary = shown["summary"]
    assert summary["status"] == "failed" and summary["exit_code"] == 1
    assert summary["failed_step"] == "truck"
    assert summary["steps"]["truck"]["changed"] == 3 and summary["steps"]["prechecks"]["status"] == "ok"
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds == ["step-start", "step-end", "step-start", "task", "step-end", "run-end"]
    assert list_runs(project, "stage-1")[0]["run_id"] == journal.run_id
    assert list_runs(project, "stage-2") == []
    assert oct(journal.dir.stat().st_mode & 0o777) == "0o700"


def test_secrets_never_land_in_the_journal(project: Project) -> None:
    journal = Journal(project, "stage-1", "up", "lab", Redactor([PEM, "hunter2-passphrase"]))
    journal.event("task", "truck", output=f"copied {PEM} and hunter2-passphrase",
                  nested={"key": PEM_BODY})
    journal.finish(ExitCode.OK, [], {"echo": "hunter2-passphrase"})
    for path in journal.dir.iterdir():
        text = path.read_text()
        assert "hunter2-passphrase" not in text and PEM_BODY not in text
        assert "[redacted]" in text


def test_events_are_bounded(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "MAX_EVENTS_BYTES", 2000)
    journal = Journal(project, "stage-1", "up", "lab")
    for i in range(500):
        journal.event("task", "truck", n=i, text="x" * 50)
    journal.step_end("truck", "ok")
    size = (journal.dir / "events.jsonl").stat().st_size
    assert size < 2500
    kinds = [e["kind"] for e in show_run(project, journal.run_id)["events"]]
    assert kinds.count("truncated") == 1 and kinds[-1] == "step-end"


def test_old_runs_are_pruned(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "KEEP_RUNS", 3)
    ids = []
    for i in range(5):
        ids.append(Journal(project, "stage-1", "up", "lab", run_id=f"2026010{i}T000000Z-stage-1-up-0000").run_id)
    assert [r["run_id"] for r in list_runs(project)] == sorted(ids, reverse=True)[:3]


def test_killed_run_reads_as_died_with_torn_last_line(project: Project) -> None:
    journal = Journal(project, "stage-1", "up", "lab")
    journal.step_start("truck")
    summary = json.loads((journal.dir / "summary.json").read_text())
    summary["pid"] = 2**22 + 12345  # a PID that does not exist: the run was SIGKILLed
    (journal.dir / "summary.json").write_text(json.dumps(summary))
    with open(journal.dir / "events.jsonl", "a") as handle:
        handle.write('{"kind": "task", "ste')
    shown = show_run(project, journal.run_id)
    assert shown["summary"]["status"] == "died"
    assert shown["events"][-1]["kind"] == "unreadable"
    assert list_runs(project)[0]["status"] == "died"


@pytest.mark.parametrize("bad", ["../../etc", "a/b", "x;y"])
def test_show_rejects_odd_run_ids(project: Project, bad: str) -> None:
    with pytest.raises(TruckctlError):
        show_run(project, bad)


def test_runs_of_the_same_second_are_listed_newest_first(project: Project) -> None:
    """`down` resumes the stage's newest run: within one second run ids differ only by a random suffix,
    so the order comes from the start time, not the name."""
    older = Journal(project, "stage-1", "down", "lab", run_id="20270509T070000Z-stage-1-down-ffff", started=100.0)
    newer = Journal(project, "stage-1", "down", "lab", run_id="20270509T070000Z-stage-1-down-0000", started=100.5)
    assert [r["run_id"] for r in list_runs(project, "stage-1")] == [newer.run_id, older.run_id]
