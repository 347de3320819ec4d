"""The lifecycle on the lab, each a real run: `up` end to end, drift found and fixed, a live address
conflict stopping `up` in prechecks, two runs at once, a SIGKILLed run's stale lock, Ctrl-C.

Verified live: runs through the CLI as a user would start them, node state read over SSH with
host-key checking on, the cloud side read from the stand-in. Nodes are converged by test_truck_tier
(which runs first); the `converged` fixture makes this module work on its own too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.harness import STAGE, Lab, wait_for
from truckctl.lab import state as lab_state
from truckctl.lifecycle.journal import list_runs, show_run
from truckctl.lifecycle.lock import lock_path, read_holder

pytestmark = pytest.mark.lab


def truckctl(lab: Lab, *args: str, timeout: float = 600) -> tuple[int, dict[str, Any], str]:
    """Run the real CLI in a subprocess with --json; (exit code, envelope, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "truckctl", "-C", str(lab.project.root), *args, "--json"],
                          capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def start(lab: Lab, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "truckctl", "-C", str(lab.project.root), *args, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)




def truck_step_started(lab: Lab) -> bool:
    runs = list_runs(lab.project, STAGE)
    if not runs or runs[0]["status"] != "running":
        return False
    events = show_run(lab.project, runs[0]["run_id"])["events"]
    return any(e.get("kind") == "step-start" and e.get("step") == "truck" for e in events)


@pytest.fixture(scope="module")
def converged(lab: Lab) -> dict[str, Any]:
    """The README's main job: `truckctl up stage-1` on the lab, end to end."""
    code, document, stderr = truckctl(lab, "up", STAGE)
    assert code == 0, json.dumps(document["errors"], indent=1) + stderr
    return document


def test_up_brings_the_stage_up_end_to_end(lab: Lab, converged: dict[str, Any]) -> None:
    result = converged["result"]
    assert converged["ok"] is True and converged["command"] == "up"
    assert result["target"] == "lab" and "stand-in" in result["cloud_source"]
    assert result["cloud"]["policy_violations"] == 0 and result["cloud"]["resources"] > 50
    assert all(check["ok"] for check in result["prechecks"]["checks"].values())
    assert sorted(result["truck"]["hosts"]) == sorted(n.name for n in lab.nodes)
    assert result["truck"]["ok"] is True
    assert result["smoke"]["checked"] is True and set(result["smoke"]["arrived_s"]) == {"truck-a", "truck-b"}
    summary = show_run(lab.project, result["run_id"])["summary"]
    assert summary["status"] == "ok"
    # While the race is live (the lab's feed runs once a converge has) the truck run itself says what it held
    # back: there is no check pass (no `held` step) either way.
    assert list(summary["steps"]) == ["lab", "prechecks", "liveness", "truck", "cloud", "verify"]
    assert "held" not in result  # converged or fresh: nothing that cuts telemetry was left undone
    assert read_holder(lab.project, STAGE) is None


# ---- drift ---------------------------------------------------------------------------------------

HAND_CHANGES = {
    # node, command that changes it by hand, what drift must name
    "sshd": ("truck-a-hv1", "sed -i 's/^PasswordAuthentication no/PasswordAuthentication yes/' "
             "/etc/ssh/sshd_config.d/10-truckctl.conf", "PasswordAuthentication"),
    "broker": ("truck-b-gw", "sed -i 's/^allow_anonymous true/allow_anonymous false/' /etc/mosquitto/mosquitto.conf",
               "allow_anonymous"),
    "service": ("truck-a-hv2", "systemctl stop prometheus-node-exporter", "prometheus-node-exporter"),
}


def test_drift_finds_hand_changes_fixes_them_and_is_clean_after(lab: Lab, converged: dict[str, Any]) -> None:
    code, document, _ = truckctl(lab, "drift", STAGE)
    assert code == 0, f"expected no drift before the hand changes: {document['result'].get('items')}"
    for node, command, _ in HAND_CHANGES.values():
        rc, out = lab.ssh(lab.node(node).address, command)
        assert rc == 0, out
    code, document, _ = truckctl(lab, "drift", STAGE)
    assert code == 3, document
    items = document["result"]["items"]
    for name, (node, _, needle) in HAND_CHANGES.items():
        mine = [i for i in items if i["node"] == node]
        assert mine, f"{name}: no drift reported on {node}: {items}"
        assert any(needle in (i["diff"] + i["item"]) for i in mine), f"{name}: {needle} not in {mine}"
    # the lab's feed is live: the broker's fix restarts it, so it is allowed here (tests/lab/test_race_live.py
    # shows it held back without the flag)
    code, document, _ = truckctl(lab, "drift", STAGE, "--fix", "--yes", "--interrupt-telemetry")
    assert code == 0, document
    assert document["result"]["fixed"] is True and document["result"]["after"]["items"] == []
    code, document, _ = truckctl(lab, "drift", STAGE)
    assert code == 0 and document["result"]["items"] == []
    rc, out = lab.ssh(lab.node("truck-a-hv2").address, "systemctl is-active prometheus-node-exporter")
    assert out.strip() == "active"


def test_drift_markdown_for_a_pull_request(lab: Lab, converged: dict[str, Any]) -> None:
    proc = subprocess.run([sys.executable, "-m", "truckctl", "-C", str(lab.project.root), "drift", STAGE, "--format",
                           "markdown"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith(f"## truckctl drift: {STAGE} (lab)")
    assert "no drift" in proc.stdout


# ---- address conflict ------------------------------------------------------------------------------

@pytest.fixture
def impostor(lab: Lab) -> Iterator[tuple[str, str, str]]:
    """A foreign host plugged into truck-a's LAN, answering on truck-a-hv1's address (as when two
    trucks in one tech zone collided). Lives in a namespace this test makes and removes."""
    state = lab_state.load(lab.project.state_dir)
    assert state is not None
    bridge = next(t.bridge for t in state.plan.trucks if t.name == "truck-a")
    victim = lab.node("truck-a-hv1")
    namespace, host_side = f"tl-{state.lab_id}-impostor", f"tli{state.lab_id}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        subprocess.run(["ip", "link", "add", host_side, "type", "veth", "peer", "name", "eth0", "netns", namespace],
                       check=True)
        subprocess.run(["ip", "link", "set", host_side, "master", bridge, "up"], check=True)
        for command in (["link", "set", "lo", "up"], ["addr", "add", f"{victim.address}/24", "dev", "eth0"],
                        ["link", "set", "eth0", "up"]):
            subprocess.run(["ip", "-n", namespace, *command], check=True)
        out = subprocess.run(["ip", "-n", namespace, "-j", "link", "show", "eth0"], capture_output=True, text=True,
                             check=True).stdout
        yield victim.name, victim.address, json.loads(out)[0]["address"]
    finally:
        subprocess.run(["ip", "link", "del", host_side], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)
        # The impostor's MAC stays in ARP caches (the host's and the truck's nodes'): forget it, as an
        # engineer would after unplugging the offending host, so the next runs reach the real node.
        subprocess.run(["ip", "neigh", "flush", "dev", bridge], check=False, capture_output=True)
        for node in lab.nodes:
            if node.truck == "truck-a":
                subprocess.run(["ip", "-n", f"tl-{state.lab_id}-{node.name}", "neigh", "flush", "all"], check=False,
                               capture_output=True)


def test_live_address_conflict_stops_up_in_prechecks(lab: Lab, converged: dict[str, Any],
                                                     impostor: tuple[str, str, str]) -> None:
    node, address, foreign_mac = impostor
    before = len(list_runs(lab.project, STAGE))
    code, document, _ = truckctl(lab, "up", STAGE)
    assert code == 1
    conflicts = [e for e in document["errors"] if e["code"] == "address-conflict"]
    assert conflicts, document["errors"]
    message = conflicts[0]["message"]
    assert address in message and node in message and foreign_mac in message
    runs = list_runs(lab.project, STAGE)
    assert len(runs) == before + 1 and runs[0]["failed_step"] == "prechecks"
    steps = show_run(lab.project, runs[0]["run_id"])["summary"]["steps"]
    assert "truck" not in steps and "cloud" not in steps  # nothing was changed


# ---- the stage lock ---------------------------------------------------------------------------------

def test_two_runs_at_once_exactly_one_proceeds(lab: Lab, converged: dict[str, Any]) -> None:
    first = start(lab, "up", STAGE, "--tier", "truck", "--full")  # --full: a playbook run, long enough to meet
    wait_for(lambda: lock_path(lab.project, STAGE).exists(), 60, "the first run to take the lock")
    code, document, _ = truckctl(lab, "up", STAGE, "--tier", "truck", timeout=60)
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out
    assert code == 4 and document["exit_code"] == 4
    assert f"pid {first.pid}" in document["errors"][0]["message"]


def test_sigkilled_run_leaves_a_stale_lock_that_unlock_clears(lab: Lab, converged: dict[str, Any]) -> None:
    victim = start(lab, "up", STAGE, "--tier", "truck", "--full")  # the playbook runs (no fast path)
    wait_for(lambda: truck_step_started(lab), 120, "the killed run to reach the truck step")
    # The whole session dies (as on a power cut or OOM kill): truckctl and the Ansible it started.
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    code, document, _ = truckctl(lab, "up", STAGE, "--tier", "truck", timeout=60)
    assert code == 4 and "STALE" in document["errors"][0]["message"]
    assert list_runs(lab.project, STAGE)[0]["status"] == "died"
    code, document, _ = truckctl(lab, "unlock", STAGE)
    assert code == 0 and document["result"]["cleared"] is True
    code, document, _ = truckctl(lab, "up", STAGE, "--tier", "truck")
    assert code == 0, document["errors"]


def test_ctrl_c_stops_cleanly_with_130_and_releases_the_lock(lab: Lab, converged: dict[str, Any]) -> None:
    run = start(lab, "up", STAGE, "--tier", "truck", "--full")  # the playbook runs (no fast path)
    wait_for(lambda: truck_step_started(lab), 120, "the run to reach the truck step")
    time.sleep(2)  # well inside the playbook
    os.kill(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, out + err
    assert json.loads(out)["exit_code"] == 130
    assert read_holder(lab.project, STAGE) is None
    assert list_runs(lab.project, STAGE)[0]["status"] == "interrupted"
    code, document, _ = truckctl(lab, "up", STAGE, "--tier", "truck")
    assert code == 0, document["errors"]  # and a plain re-run converges
