"""Running the real CLI against the lab, for the reliability and security tests (not a test module)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.lab.harness import STAGE, Lab
from truckctl.lab import network
from truckctl.lab import state as lab_state

NODES = ["truck-a-gw", "truck-a-hv1", "truck-a-hv2", "truck-b-gw", "truck-b-hv1", "truck-b-hv2"]
RUN_TIMEOUT_S = 900  # generous: 2 cores shared with other labs


def command(lab: Lab, *args: str) -> list[str]:
    return [sys.executable, "-m", "truckctl", "-C", str(lab.project.root), *args, "--json"]


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without a webhook of its own (a failed run notifies: only the lab hears it)."""
    env = {key: value for key, value in os.environ.items() if key != "TRUCKCTL_ALERT_WEBHOOK"}
    return {**env, "NO_COLOR": "1", **(extra or {})}


def truckctl(lab: Lab, *args: str, env: dict[str, str] | None = None,
             timeout: float = RUN_TIMEOUT_S) -> tuple[int, dict[str, Any], str]:
    """Run the CLI in a subprocess with --json: (exit code, the envelope, stderr)."""
    proc = subprocess.run(command(lab, *args), capture_output=True, text=True, timeout=timeout, check=False,
                          env=environment(env))
    assert proc.stdout.strip(), f"no JSON document on stdout; stderr: {proc.stderr[-2000:]}"
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def start(lab: Lab, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the CLI in its own session (its own process group, as a terminal job would be)."""
    return subprocess.Popen(command(lab, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=environment(env))


def heartbeats_fresh(lab: Lab, max_age_s: float = 15) -> bool:
    trucks = lab.standin("/status")["trucks"]
    seen = {node: info for truck in trucks.values() for node, info in truck["heartbeats"].items()}
    return all(node in seen and (seen[node]["age_s"] or 1e9) <= max_age_s for node in NODES)


def ensure_converged(lab: Lab) -> None:
    """The truck tier applied (in CI, test_truck_tier did it): every node's heartbeat is fresh at the
    stand-in, or a truck-tier run converges them now."""
    if heartbeats_fresh(lab):
        return
    code, document, stderr = truckctl(lab, "up", STAGE, "--tier", "truck", "--interrupt-telemetry")  # a repair
    assert code == 0, json.dumps(document["errors"], indent=1) + stderr[-2000:]


def converges(lab: Lab, *extra: str) -> dict[str, Any]:
    """A plain re-run (truck tier): exit 0, every node reached, nothing failed. Returns the result."""
    code, document, stderr = truckctl(lab, "up", STAGE, "--tier", "truck", *extra)
    assert code == 0, json.dumps(document["errors"], indent=1) + stderr[-2000:]
    hosts = document["result"]["truck"]["hosts"]
    assert sorted(hosts) == NODES
    assert all(stats["failed"] == 0 and stats["unreachable"] == 0 for stats in hosts.values()), hosts
    return dict(document["result"])


def set_lan_cable(lab: Lab, node: str, plugged: bool) -> None:
    """Pull or plug a node's LAN cable: the host side of its veth on the truck's bridge."""
    state = lab_state.load(lab.project.state_dir)
    assert state is not None
    network.set_link(next(n.veth for n in state.plan.nodes if n.name == node), plugged)
