"""The example CI workflows never paste an expression into a shell script (issue 11 item 7)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO

WORKFLOWS = sorted((REPO / "examples" / "ci").glob("*.yml"))


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w.name for w in WORKFLOWS])
def test_run_scripts_take_inputs_from_the_environment_only(workflow: Path) -> None:
    doc = yaml.safe_load(workflow.read_text())
    scripts = [(job, step.get("name", "?"), step["run"]) for job, spec in doc["jobs"].items()
               for step in spec["steps"] if "run" in step]
    assert scripts
    pasted = [(job, name) for job, name, script in scripts if "${{" in script]
    assert not pasted, f"expressions inside run: scripts (pass them through env:) in {pasted}"


def test_the_drift_workflow_refuses_a_hostile_stage_input(tmp_path: Path) -> None:
    """The stage step's script, run by bash with a hostile input: refused before any use, nothing run."""
    doc = yaml.safe_load((REPO / "examples" / "ci" / "drift.yml").read_text())
    step = next(s for s in doc["jobs"]["drift"]["steps"] if s.get("id") == "stage")
    marker = tmp_path / "PWNED"
    for hostile, code in ((f'stage-1"; touch {marker}; echo "', 2), (f"$(touch {marker})", 2),
                          ("stage-1\nstage-2", 2), ("stage-7", 0)):
        output = tmp_path / "out"
        output.write_text("")
        proc = subprocess.run(["bash", "-c", step["run"]], capture_output=True, text=True, check=False,
                              env={"STAGE_INPUT": hostile, "GITHUB_OUTPUT": str(output), "PATH": "/usr/bin:/bin"})
        assert proc.returncode == code, proc.stderr
        assert not marker.exists()
        assert output.read_text() == ("name=stage-7\n" if code == 0 else "")
    assert re.search(r"STAGE_INPUT: \$\{\{ inputs\.stage \}\}", (REPO / "examples" / "ci" / "drift.yml").read_text())
