"""Three race days in a row on one lab, as the race runs them (issue 17, DESIGN section 15): `truckctl up
stage-1`, then `up stage-2`, then `up stage-7` (truck-a on the ITT paddock's other LAN), never `lab down`
in between. Each day converges and passes its smoke check; the stand-in keeps every day's telemetry,
tagged with its stage; a truck absent from a stage raises no alarm.

No shipped stage leaves a truck out of its tech zone, so this module runs on a copy of the project under
test whose stage-2 has truck-a only (truck-b is parked for the day and comes back on stage-7). The copy
has the same networks as the project under test and its own state directory (its own lab): it runs
before the session's lab is built (see conftest's FIRST_MODULES) and takes its lab down at the end.

Verified live: runs through the CLI, nodes reached over SSH with host-key checking on at their new
addresses, the host's links read from /sys and `ip`, the stand-in read over its HTTPS API.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO
from tests.lab.harness import leftovers, wait_for
from truckctl.lab import api
from truckctl.lab import state as lab_state
from truckctl.lab.ssh import ssh_run
from truckctl.lifecycle import cloudside
from truckctl.project import Project, find_project

pytestmark = pytest.mark.lab

TRUCK_A = ["truck-a-gw", "truck-a-hv1", "truck-a-hv2"]
TRUCK_B = ["truck-b-gw", "truck-b-hv1", "truck-b-hv2"]


@dataclass(frozen=True)
class Race:
    project: Project

    def truckctl(self, *args: str, timeout: float = 1500) -> tuple[int, dict[str, Any], str]:
        proc = subprocess.run([sys.executable, "-m", "truckctl", "-C", str(self.project.root), *args, "--json"],
                              capture_output=True, text=True, timeout=timeout, check=False)
        return proc.returncode, json.loads(proc.stdout), proc.stderr

    def day(self, stage: str) -> dict[str, Any]:
        # The lab's simulated transponders feed all day and night, so every stage is live here: the
        # morning's move applies what would cut telemetry (a moved truck's networking) on purpose.
        code, document, stderr = self.truckctl("up", stage, "--interrupt-telemetry")
        assert code == 0, json.dumps(document["errors"], indent=1) + stderr[-2000:]
        result: dict[str, Any] = document["result"]
        return result

    def standin(self, stage: str, path: str) -> Any:
        return cloudside.fetch(api.cloud_outputs(self.project, stage), path, timeout_s=10)


def race_copy(source: Path, root: Path) -> Path:
    """The project's inventory with stage-2's tech zone reduced to truck-a; playbooks and stacks linked."""
    shutil.copytree(source / "inventory", root / "inventory")
    for name in ("playbooks", "stacks"):
        (root / name).symlink_to((source / name).resolve())
    stage2 = root / "inventory" / "stages" / "stage-2.yaml"
    text = stage2.read_text().replace("trucks: [truck-a, truck-b]", "trucks: [truck-a]")
    assert "trucks: [truck-a]" in text
    stage2.write_text(text)
    return root


@pytest.fixture(scope="module")
def race(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Race]:
    source = find_project(Path(os.environ.get("TRUCKCTL_TEST_PROJECT") or REPO)).root
    project = Project(race_copy(source, tmp_path_factory.mktemp("daily") / "race"))
    recorded: list[lab_state.LabState] = []
    try:
        yield Race(project)
    finally:
        state = lab_state.load(project.state_dir)
        if state is not None:
            recorded.append(state)
        api.down(project)
        left = [item for s in recorded for item in leftovers(s)]
        assert not left, f"the lab left things behind: {left}"


def smoke_markers(status: dict[str, Any], stage: str, truck: str) -> list[str]:
    row = status["stages"].get(stage, {}).get(truck) or {}
    return [json.loads(m)["smoke"] for m in row.get("markers", [])]


def alarms(race: Race, stage: str) -> list[dict[str, Any]]:
    return [a["body"] for a in race.standin(stage, "/alerts")["alerts"] if a["source"] == "standin"]


def addresses_of(race: Race) -> dict[str, str]:
    return {n.name: n.address for n in api.lab_nodes(race.project)}


@pytest.mark.timeout(2400)  # three converges, the first on a fresh lab: beyond the suite's 1200 s on a busy host
def test_three_race_days_in_a_row_on_one_lab(race: Race) -> None:
    # ---- day 1: stage-1, both trucks, a lab built from nothing
    day1 = race.day("stage-1")
    assert day1["smoke"]["checked"] and set(day1["smoke"]["arrived_s"]) == {"truck-a", "truck-b"}
    assert "moved" not in day1["lab"]
    lan_a = addresses_of(race)["truck-a-gw"]
    standin_node = lab_state.load(race.project.state_dir)
    assert standin_node is not None
    standin_pid = next(r.data["pid"] for r in standin_node.of_kind(lab_state.PROCESS) if r.name == "cloud-standin")

    # ---- day 2: stage-2 without truck-b: its nodes are switched off, nothing else changes
    day2 = race.day("stage-2")
    moved = day2["lab"]["moved"]
    assert (moved["from_stage"], moved["to_stage"]) == ("stage-1", "stage-2")
    assert moved["stop"] == TRUCK_B and moved["keep"] == TRUCK_A and moved["trucks_parked"] == ["truck-b"]
    assert not (moved["start"] or moved["build"] or moved["readdress"])
    assert sorted(day2["truck"]["hosts"]) == TRUCK_A
    assert set(day2["smoke"]["arrived_s"]) == {"truck-a"}
    code, lab_status, _ = race.truckctl("lab", "status")
    assert code == 0 and lab_status["stage"] == lab_status["result"]["stage"] == "stage-2"
    parked = {n["name"]: n for n in lab_status["result"]["parked"]}
    assert sorted(parked) == TRUCK_B and not any(n["supervisor"] for n in parked.values())
    days = lab_status["result"]["standin"]["stages"]  # what each day brought in, as `lab status` shows it
    assert days["stage-1"]["truck-b"]["telemetry"] > 0 and days["stage-2"]["truck-a"]["telemetry"] > 0
    assert "truck-b" not in days["stage-2"]
    # the host no longer carries truck-b's LAN; its nodes do not answer
    state = lab_state.load(race.project.state_dir)
    assert state is not None
    bridge_b = next(n.bridge for n in state.parked if n.name == "truck-b-gw")
    assert "inet " not in subprocess.run(["ip", "-4", "addr", "show", "dev", bridge_b], capture_output=True,
                                         text=True, check=True).stdout
    # the same stand-in, never restarted
    assert next(r.data["pid"] for r in state.of_kind(lab_state.PROCESS) if r.name == "cloud-standin") == standin_pid

    # truck-b silent for longer than stale_after_s (the converge usually outlasts it; else wait): no alarm for it
    status2 = race.standin("stage-2", "/status")
    assert status2["stage"] == "stage-2" and status2["expected_trucks"] == ["truck-a"]

    def silent_long_enough() -> bool:
        seen = race.standin("stage-2", "/status")
        return bool(seen["trucks"]["truck-b"]["telemetry"]["age_s"] > seen["stale_after_s"] + 2)

    wait_for(silent_long_enough, 60, "truck-b to be silent for longer than stale_after_s")
    assert [a for a in alarms(race, "stage-2") if a.get("truck") == "truck-b"] == []

    # ---- day 3: stage-7: truck-b back, truck-a on the paddock's other LAN
    day7 = race.day("stage-7")
    moved = day7["lab"]["moved"]
    assert moved["start"] == TRUCK_B and moved["readdress"] == TRUCK_A and moved["trucks_readdressed"] == ["truck-a"]
    assert not (moved["stop"] or moved["build"])
    assert sorted(day7["truck"]["hosts"]) == TRUCK_A + TRUCK_B
    assert set(day7["smoke"]["arrived_s"]) == {"truck-a", "truck-b"}
    moved_a = addresses_of(race)["truck-a-gw"]
    assert moved_a != lan_a and moved_a.endswith(".1.11") and moved_a.split(".")[1] != lan_a.split(".")[1]
    connection = api.connection(race.project)
    code, out = ssh_run(connection, moved_a, "hostname; ip -4 -o addr show dev eth0")  # host key checked
    assert code == 0 and out.splitlines()[0] == "truck-a-gw" and f" {moved_a}/" in out and f" {lan_a}/" not in out
    code, out = ssh_run(connection, moved_a, "grep -c truck-a-hv1 /etc/hosts; grep truck-a-hv1 /etc/hosts")
    assert code == 0 and addresses_of(race)["truck-a-hv1"] in out  # reconverged by the truck tier

    # ---- the stand-in holds every day's telemetry, tagged with its stage
    status7 = race.standin("stage-7", "/status")
    assert status7["stage"] == "stage-7" and status7["expected_trucks"] == ["truck-a", "truck-b"]
    assert set(status7["stages"]) >= {"stage-1", "stage-2", "stage-7"}
    for stage, day, trucks in (("stage-1", day1, ["truck-a", "truck-b"]), ("stage-2", day2, ["truck-a"]),
                               ("stage-7", day7, ["truck-a", "truck-b"])):
        for truck in trucks:
            assert day["run_id"] in smoke_markers(status7, stage, truck), (stage, truck)
            assert status7["stages"][stage][truck]["telemetry"] > 0
        others = [m for t in status7["stages"][stage] for m in smoke_markers(status7, stage, t)]
        assert set(others) == {day["run_id"]}  # no other day's marker under this stage
    assert "truck-b" not in status7["stages"]["stage-2"]
    # nothing received is lost by a move: the totals are the sums of the days
    for truck in ("truck-a", "truck-b"):
        per_stage = sum(rows[truck]["telemetry"] for rows in status7["stages"].values() if truck in rows)
        assert status7["trucks"][truck]["counts"]["telemetry"] == per_stage
    assert [a for a in alarms(race, "stage-7") if a.get("truck") == "truck-b" and a["state"] == "ALARM"] == []
