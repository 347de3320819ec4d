"""`truckctl plan` through the real CLI (typer's CliRunner): envelope, exit codes, human output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.helpers import REPO
from truckctl.cli.app import app
from truckctl.cloud import policy
from truckctl.errors import ExitCode


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["-C", str(REPO), *args])


def test_plan_stage_json_envelope() -> None:
    result = invoke("plan", "stage-1", "--offline", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert {"truckctl", "schema", "command", "stage", "ok", "exit_code", "result", "errors"} <= set(doc)
    assert (doc["command"], doc["stage"], doc["ok"], doc["exit_code"]) == ("plan", "stage-1", True, 0)
    assert doc["errors"] == []
    cloud = doc["result"]["cloud"]
    assert cloud["policy"] == [] and cloud["mode"] == "offline"
    assert all({"type", "name", "inputs", "depends_on"} <= set(r) for r in cloud["resources"])
    assert cloud["counts"]["total"] == len(cloud["resources"])
    assert cloud["outputs_preview"]["placeholder"] is True


def test_plan_human_output_on_the_lab_target_says_it_is_the_offline_plan() -> None:
    result = invoke("plan", "stage-1")
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith("offline plan:") and "lab" in out.splitlines()[0]
    for component in ("kms", "network", "datalake", "ingest", "analytics", "alerting", "vpn"):
        assert f"\n{component} (" in out
    assert "resources to create" in out and f"policy: {len(policy.RULES)} rules, no violation" in out
    assert "\x1b[" not in out  # plain when not a terminal


@pytest.mark.parametrize("args", [["plan"], ["plan", "stage-1", "--all"]])
def test_plan_needs_one_stage_or_all(args: list[str]) -> None:
    assert invoke(*args).exit_code == ExitCode.USAGE


def test_plan_unknown_stage_is_invalid_configuration() -> None:
    result = invoke("plan", "stage-30", "--json")
    doc = json.loads(result.stdout)
    assert result.exit_code == ExitCode.INVALID_CONFIG == doc["exit_code"]
    assert doc["errors"][0]["code"] == "unknown-stage"


def test_policy_violations_make_plan_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    import truckctl.cloud.offline as offline

    violation = {"rule": "kms-rotation", "resource": "key", "message": "key rotation is off"}
    cloud = {"stage": "stage-1", "region": "eu-south-1", "resources": [], "policy": [violation],
             "policy_rules": ["kms-rotation"], "counts": {"total": 0, "by_component": {}, "by_type": {}}}
    monkeypatch.setattr(offline, "plan_offline", lambda project, names, jobs=None, settings=None: [cloud])
    result = invoke("plan", "stage-1", "--offline", "--json")
    doc = json.loads(result.stdout)
    assert result.exit_code == ExitCode.ERROR and doc["ok"] is False
    assert doc["result"]["cloud"]["policy"] == [violation]
    assert doc["errors"] == [{"code": "policy-violation", "message": "kms-rotation: key rotation is off",
                              "location": "stage-1: key"}]
    human = invoke("plan", "stage-1", "--offline")
    assert human.exit_code == ExitCode.ERROR and "kms-rotation" in human.stdout


def test_aws_target_without_pulumi_cli_exits_1_and_writes_nothing(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("TRUCKCTL_STATE_DIR", str(state))
    monkeypatch.setenv("PATH", str(tmp_path))  # no pulumi anywhere on it
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "not used")
    stacks_before = sorted(p.name for p in (REPO / "stacks").iterdir())
    result = invoke("plan", "stage-1", "--target", "aws")
    assert result.exit_code == ExitCode.ERROR
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Pulumi CLI" in lines[0]
    assert "Traceback" not in result.output
    doc = json.loads(invoke("plan", "stage-1", "--target", "aws", "--json").stdout)
    assert doc["exit_code"] == 1 and doc["errors"][0]["code"] == "pulumi-missing"
    assert not state.exists()
    assert sorted(p.name for p in (REPO / "stacks").iterdir()) == stacks_before


def test_help_stays_free_of_pulumi() -> None:
    code = "import sys, truckctl.cli.app; print(sorted(m for m in ('pulumi', 'pulumi_aws') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_help_imports_neither_boto3_nor_parliament() -> None:
    """Both load large catalogues (botocore's service models, parliament's IAM actions): only `down
    --target aws` and the plan's policy check import them, inside the function that needs them."""
    probe = ("import sys\nfrom truckctl.cli.app import main\nsys.argv = ['truckctl', '--help']\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(','.join(m for m in ('boto3', 'botocore', 'parliament', 'jsoncfg') if m in sys.modules), "
             "file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "Usage" in proc.stdout and proc.stderr.strip() == ""
