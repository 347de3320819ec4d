"""The configuration commands through the real CLI: envelopes, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from truckctl import __version__, ansible_data
from truckctl.cli.app import app
from truckctl.errors import ExitCode

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout


def test_validate_all_json(repo: Path) -> None:
    code, out = invoke("-C", str(repo), "validate", "--all", "--json")
    doc = json.loads(out)
    assert code == 0
    assert doc["ok"] is True and doc["exit_code"] == 0 and doc["errors"] == []
    assert doc["truckctl"] == __version__ and doc["schema"] == 1 and doc["command"] == "validate"
    assert doc["result"]["count"] == 21
    assert [s["name"] for s in doc["result"]["stages"]] == [f"stage-{i}" for i in range(1, 22)]
    assert all(s["nodes"] == 6 for s in doc["result"]["stages"])


def test_validate_reports_invalid_configuration(example_project: Path) -> None:
    race = example_project / "inventory" / "race.yaml"
    race.write_text(race.read_text().replace("    lan: 10.32.1.0/24", "    lan: 10.31.1.0/24"))
    code, out = invoke("-C", str(example_project), "validate", "--all", "--json")
    doc = json.loads(out)
    assert code == ExitCode.INVALID_CONFIG == doc["exit_code"]
    assert doc["ok"] is False
    first = doc["errors"][0]
    assert first["code"] == "network-overlap"
    assert "truck 'truck-a'" in first["message"] and "truck 'truck-b'" in first["message"]
    assert first["location"].startswith("inventory/race.yaml:")


def test_human_error_is_one_line_per_problem_without_traceback(example_project: Path) -> None:
    stage = example_project / "inventory" / "stages" / "stage-2.yaml"
    stage.write_text(stage.read_text().replace("truck-b]", "truck-z]"))
    proc = subprocess.run([sys.executable, "-m", "truckctl", "-C", str(example_project), "validate", "stage-2"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 5
    assert proc.stderr.strip() == ("error: inventory/stages/stage-2.yaml:12: tech_zone.trucks[1]: truck 'truck-z' "
                                   "is not defined in inventory/race.yaml, did you mean 'truck-b'?")
    assert "Traceback" not in proc.stderr + proc.stdout


def test_inventory_is_accepted_by_ansible_inventory(repo: Path, tmp_path: Path) -> None:
    code, out = invoke("-C", str(repo), "inventory", "stage-1")
    assert code == 0
    path = tmp_path / "inventory.yml"
    path.write_text(out)
    ansible_inventory = Path(sys.executable).parent / "ansible-inventory"
    proc = subprocess.run([str(ansible_inventory), "-i", str(path), "--list"], capture_output=True, text=True,
                          check=True, env={**os.environ, "ANSIBLE_INVENTORY_UNPARSED_WARNING": "true"})
    listed = json.loads(proc.stdout)
    hosts = set(listed["_meta"]["hostvars"])
    assert hosts == {f"truck-{t}-{n}" for t in "ab" for n in ("gw", "hv1", "hv2")}
    assert set(listed["gateway"]["hosts"]) == {"truck-a-gw", "truck-b-gw"}
    assert set(listed["truck_a"]["hosts"]) == {"truck-a-gw", "truck-a-hv1", "truck-a-hv2"}
    # Every string is data to Ansible: marked unsafe (ansible_data), which --list shows as __ansible_unsafe.
    assert listed["_meta"]["hostvars"]["truck-b-hv1"]["ansible_host"] == {"__ansible_unsafe": "10.32.1.12"}
    assert listed["_meta"]["hostvars"]["truck-b-hv1"]["truck_gateway_address"] == {"__ansible_unsafe": "10.32.1.11"}
    assert "[WARNING]" not in proc.stderr


def test_inventory_json_and_stage_override(repo: Path) -> None:
    code, out = invoke("-C", str(repo), "inventory", "stage-7", "--json")
    doc = json.loads(out)
    assert code == 0
    truck_a = doc["result"]["inventory"]["all"]["children"]["trucks"]["children"]["truck_a"]
    assert truck_a["hosts"]["truck-a-gw"]["ansible_host"] == "10.33.1.11"  # the stage's tech-zone choice
    assert truck_a["vars"]["truck_lan"] == "10.33.1.0/24"
    assert ansible_data.load(doc["result"]["yaml"]) == doc["result"]["inventory"]


def test_stage_overrides_race_defaults(repo: Path) -> None:
    _, out = invoke("-C", str(repo), "inventory", "stage-10", "--json")
    variables = json.loads(out)["result"]["inventory"]["all"]["vars"]
    assert variables["uplink"] == {"kind": "satellite", "mtu": 1280}
    assert variables["telemetry"]["heartbeat_interval_s"] == 3
    assert variables["telemetry"]["stale_after_s"] == 20  # untouched default from the race file


def test_stages_lists_all(repo: Path) -> None:
    code, out = invoke("-C", str(repo), "stages", "--json")
    stages = json.loads(out)["result"]["stages"]
    assert code == 0 and len(stages) == 21
    assert stages[0]["start"] == "Torino" and stages[0]["date"] == "2027-05-08"
    assert all(s["state"] for s in stages)


@pytest.mark.parametrize("name", ["../etc/passwd", "stage-1;rm -rf /", "stage-1/..", "$(id)", "stage-0", "x" * 500])
def test_hostile_stage_names_are_refused(repo: Path, name: str) -> None:
    code, out = invoke("-C", str(repo), "inventory", name, "--json")
    doc = json.loads(out)
    assert code == 5 and doc["errors"][0]["code"] == "bad-stage-name"
    assert len(doc["errors"][0]["message"]) < 120


def test_missing_project_says_where_it_looked(tmp_path: Path) -> None:
    code, out = invoke("-C", str(tmp_path), "validate", "--json")
    doc = json.loads(out)
    assert code == 5
    assert str(tmp_path) in doc["errors"][0]["message"]


def test_project_found_from_a_subdirectory(example_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from truckctl.project import find_project

    nested = example_project / "inventory" / "stages"
    monkeypatch.delenv("TRUCKCTL_PROJECT_DIR", raising=False)
    assert find_project(cwd=nested).root == example_project.resolve()
    monkeypatch.setenv("TRUCKCTL_PROJECT_DIR", str(example_project))
    assert find_project(cwd=Path("/")).root == example_project.resolve()
    monkeypatch.setenv("TRUCKCTL_STATE_DIR", str(example_project / "elsewhere"))
    assert find_project().state_dir == (example_project / "elsewhere").resolve()


def test_usage_error_with_json_is_an_envelope(repo: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "truckctl", "-C", str(repo), "validate", "--bogus", "--json"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == ExitCode.USAGE
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == 2 and doc["errors"][0]["code"] == "usage" and "--bogus" in doc["errors"][0]["message"]


def test_version() -> None:
    code, out = invoke("--version")
    assert code == 0 and out.strip() == f"truckctl {__version__}"


def test_help_does_not_import_heavy_modules() -> None:
    probe = ("import sys; from truckctl.cli.app import app; "
             "heavy = ('pulumi', 'pulumi_aws', 'ansible_runner', 'ansible', 'pydantic'); "
             "heavy = [m for m in heavy if m in sys.modules]; "
             "print(','.join(heavy))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""
