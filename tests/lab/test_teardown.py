"""Teardown safety on the lab: an interrupted `down` is resumed by the next one, and a `down` that
could not take every node down never goes on to the cloud tier until a re-run completes it.

Verified live, each step a real run of the CLI:
1. `down --yes` interrupted by Ctrl-C (SIGINT to its process group) in its truck step: exit 130,
   lock released, the journal closed as interrupted;
2. `down --yes` again while one node's cable is pulled: it resumes the interrupted run, takes the
   other nodes down and revokes the certificates, but leaves the cloud tier (exit 1, naming the node);
3. the cable plugged back, `down --yes` once more: it resumes run 2, skips the revocation done
   there, takes the last node down, completes (exit 0) and lists the data as kept.
The module ends by converging the nodes again (`up --tier truck`) for whatever runs after it.
(Confirmation and --delete-data, over every combination of flags and answers:
tests/unit/lifecycle/test_teardown_safety.py.)
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.harness import STAGE, Lab, wait_for
from tests.lab.runs import converges, ensure_converged, set_lan_cable, start, truckctl
from tests.lab.test_faults import journal, run_ids, truck_step_started
from truckctl.lifecycle.lock import read_holder

pytestmark = pytest.mark.lab

OFFLINE = "truck-b-hv1"


@pytest.fixture(scope="module")
def torn_down(lab: Lab) -> Iterator[dict[str, Any]]:
    ensure_converged(lab)
    seen: dict[str, Any] = {}
    yield seen
    set_lan_cable(lab, OFFLINE, True)
    started = time.monotonic()
    converges(lab, "--interrupt-telemetry")  # back up: new certificates deployed, every service running again
    print(f"\nconverged again after the teardown tests in {time.monotonic() - started:.1f} s")


def test_an_interrupted_down_is_resumed_and_never_reaches_the_cloud_with_a_node_left(lab: Lab,
                                                                                    torn_down: dict[str, Any]
                                                                                    ) -> None:
    known = run_ids(lab)
    process = start(lab, "down", STAGE, "--yes", "--interrupt-telemetry")
    first = wait_for(lambda: truck_step_started(lab, known), 300, "down to reach its truck step")
    time.sleep(2)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130 and json.loads(out)["exit_code"] == 130, err[-2000:]
    assert read_holder(lab.project, STAGE) is None
    assert journal(lab, first)["summary"]["status"] == "interrupted"

    set_lan_cable(lab, OFFLINE, False)
    try:
        code, document, stderr = truckctl(lab, "down", STAGE, "--yes", "--interrupt-telemetry")
    finally:
        set_lan_cable(lab, OFFLINE, True)
    assert code == 1, stderr[-2000:]
    result = document["result"]
    assert result["resumed_from"] == first and result["skipped_steps"] == []
    assert [(e["code"], e["location"]) for e in document["errors"]] == [("node-not-down", OFFLINE)]
    assert {item["node"] for item in result["truck"]["not_down"]} == {OFFLINE}
    assert {item["truck"] for item in result["revoke"]["revoked"]} == {"truck-a", "truck-b"}
    assert result["cloud"] == {"destroyed": False, "reason": "nodes were not taken down"}
    second = result["run_id"]
    steps = journal(lab, second)["summary"]["steps"]
    assert steps["truck"]["status"] == "failed" and steps["revoke"]["status"] == "ok" and "cloud" not in steps

    code, document, stderr = truckctl(lab, "down", STAGE, "--yes", "--interrupt-telemetry")
    assert code == 0, json.dumps(document["errors"]) + stderr[-2000:]
    result = document["result"]
    assert result["resumed_from"] == second and result["skipped_steps"] == ["revoke"]
    assert result["truck"]["not_down"] == [] and "revoke" not in result
    assert any(item["what"].startswith("the stand-in's received data") for item in result["kept"])
    assert result["deleted"] == []
    steps = journal(lab, result["run_id"])["summary"]["steps"]
    assert list(steps) == ["truck", "cloud"] and all(s["status"] == "ok" for s in steps.values())
    code, out = lab.ssh(lab.node(OFFLINE).address, "systemctl is-active truck-heartbeat")
    assert out == "inactive", out  # the node left out before is down now too
