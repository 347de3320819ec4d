"""The live race (issue 14): with telemetry flowing from the transponder simulator through truck-a's broker and
bridge to the stand-in, `drift --fix --yes` of a hand-edited broker setting holds the broker's restart back
(exit 3, saying so), fixes the rest (an sshd setting on the same gateway, a stopped heartbeat on another node),
and the stand-in, which follows every rider's sequence numbers, misses not one telemetry message; with
`--during-race` the restart happens and a re-check is clean.

Verified live: the stand-in's count of received and missing messages (the feed's own sequence numbers, per
rider), the broker's main PID (unchanged while held, new after the flag), sshd's effective setting, the
heartbeat unit, and the run journal's `held` events.

`up` while live has no check pass of its own: its one truck run holds the broker's restart back and says so
(the journal has no `held` step, yet lists the held change).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.harness import STAGE, Lab, wait_for
from tests.lab.runs import ensure_converged, truckctl
from truckctl.lifecycle.journal import runs_dir

pytestmark = pytest.mark.lab

GW, HV1 = "truck-a-gw", "truck-a-hv1"
BROKER_EDIT = "sed -i 's/^autosave_interval .*/autosave_interval 300/' /etc/mosquitto/mosquitto.conf"
SSHD_EDIT = "sed -i '1i PasswordAuthentication yes' /etc/ssh/sshd_config"
HEARTBEAT_STOP = "systemctl disable --now truck-heartbeat"


def ssh(lab: Lab, node: str, command: str) -> str:
    rc, out = lab.ssh(lab.node(node).address, command)
    assert rc == 0, f"{node}: {command}: {out}"
    return out


def feed(lab: Lab) -> dict[str, Any]:
    """truck-a's telemetry as the stand-in sees it: count, age, and the sequence follow-up."""
    telemetry: dict[str, Any] = lab.standin("/status")["trucks"]["truck-a"]["telemetry"]
    return telemetry


def broker_pid(lab: Lab) -> str:
    return ssh(lab, GW, "systemctl show --property=MainPID --value mosquitto").strip()


@pytest.fixture(scope="module")
def live_fix(lab: Lab) -> dict[str, Any]:
    """Telemetry flowing; three hand changes; `drift --fix --yes` without the flag; the feed afterwards."""
    ensure_converged(lab)
    code, clean, _ = truckctl(lab, "drift", STAGE)
    assert code == 0, f"drift on a converged lab: {clean['result'].get('items')}"
    before = wait_for(lambda: (f := feed(lab))["age_s"] is not None and f["age_s"] < 5 and f, 60,
                      "truck-a's telemetry flowing at the stand-in")
    pid = broker_pid(lab)
    assert "autosave_interval 30" in ssh(lab, GW, "cat /etc/mosquitto/mosquitto.conf")
    for node, command in ((GW, BROKER_EDIT), (GW, SSHD_EDIT), (HV1, HEARTBEAT_STOP)):
        ssh(lab, node, command)
    code, document, stderr = truckctl(lab, "drift", STAGE, "--fix", "--yes")
    # The feed goes on after the run: two more rounds of every rider reach the stand-in, so a message lost
    # (or still queued) at the end of the run would show as a gap.
    ended = int(feed(lab)["count"])
    after = wait_for(lambda: (f := feed(lab))["count"] >= ended + 6 and f, 120, "telemetry arriving after the fix")
    return {"code": code, "document": document, "stderr": stderr, "before": before, "after": after, "pid": pid}


def test_the_fix_holds_the_broker_restart_back_and_exits_3_saying_so(lab: Lab, live_fix: dict[str, Any]) -> None:
    assert live_fix["code"] == 3, live_fix["document"]["errors"]
    result = live_fix["document"]["result"]
    assert result["live"]["live"] is True
    assert any(r.startswith("telemetry of truck-a seen") for r in result["live"]["reasons"])
    held = {(h["node"], h["task"]) for h in result["held"]}
    assert (GW, "Restart mosquitto") in held
    assert all(node == GW for node, _ in held), held  # only the gateway's broker waits
    assert "held back" in result["held_reason"] and "--interrupt-telemetry" in result["held_reason"]
    assert broker_pid(lab) == live_fix["pid"]  # not restarted
    left = result["after"]["items"]
    assert left and all(i["node"] == GW and i["kind"] == "broker" for i in left), left
    events = [json.loads(line) for line in
              (runs_dir(lab.project) / result["run_id"] / "events.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "held" and e["node"] == GW and e["task"] == "Restart mosquitto" for e in events)


def test_the_rest_is_fixed(lab: Lab, live_fix: dict[str, Any]) -> None:
    assert "passwordauthentication no" in ssh(lab, GW, "sshd -T").splitlines()
    assert ssh(lab, HV1, "systemctl is-enabled truck-heartbeat; systemctl is-active truck-heartbeat").split() == [
        "enabled", "active"]
    assert "autosave_interval 30" in ssh(lab, GW, "cat /etc/mosquitto/mosquitto.conf")  # the file is back


def test_not_one_telemetry_message_is_lost(lab: Lab, live_fix: dict[str, Any]) -> None:
    before, after = live_fix["before"], live_fix["after"]
    assert after["sequence"]["sources"] == 3
    assert after["sequence"]["missing"] == before["sequence"]["missing"], (before["sequence"], after["sequence"])
    assert after["count"] > before["count"]


def test_with_the_flag_the_restart_is_applied(lab: Lab, live_fix: dict[str, Any]) -> None:
    code, document, _ = truckctl(lab, "drift", STAGE, "--fix", "--yes", "--during-race")
    assert code == 0, document["result"].get("after")
    assert document["result"]["fixed"] is True and "held" not in document["result"]
    assert broker_pid(lab) != live_fix["pid"]
    code, document, _ = truckctl(lab, "drift", STAGE)
    assert code == 0 and document["result"]["items"] == []


@pytest.fixture
def live_up(lab: Lab, live_fix: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """After the drift tests (converged, the feed flowing): a hand edit of the broker's config, then a live `up`
    of the truck tier. Put back afterwards with the flag."""
    wait_for(lambda: (f := feed(lab))["age_s"] is not None and f["age_s"] < 5, 60, "truck-a's telemetry flowing")
    pid = broker_pid(lab)
    ssh(lab, GW, BROKER_EDIT)
    code, document, stderr = truckctl(lab, "up", STAGE, "--tier", "truck")
    yield {"code": code, "document": document, "stderr": stderr, "pid": pid}
    code, document, _ = truckctl(lab, "up", STAGE, "--tier", "truck", "--during-race")
    assert code == 0, document["errors"]


def test_up_while_live_holds_the_restart_in_its_one_run_and_says_so(lab: Lab, live_up: dict[str, Any]) -> None:
    assert live_up["code"] == 3, live_up["document"]["errors"] or live_up["stderr"][-2000:]
    result = live_up["document"]["result"]
    assert result["live"]["live"] is True and result["truck"]["ok"] is True
    held = {(h["node"], h["task"]) for h in result["held"]}
    assert (GW, "Restart mosquitto") in held and all(node == GW for node, _ in held), held
    assert "held back" in result["held_reason"] and "--interrupt-telemetry" in result["held_reason"]
    assert broker_pid(lab) == live_up["pid"]  # not restarted
    assert "autosave_interval 30" in ssh(lab, GW, "cat /etc/mosquitto/mosquitto.conf")  # the rest is applied
    run_dir = runs_dir(lab.project) / result["run_id"]
    steps = json.loads((run_dir / "summary.json").read_text())["steps"]
    assert list(steps) == ["lab", "prechecks", "liveness", "truck", "verify"]  # no check pass before the run
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "held" and e["node"] == GW and e["task"] == "Restart mosquitto" for e in events)
