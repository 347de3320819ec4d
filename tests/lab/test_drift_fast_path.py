"""The fast path on real lab nodes (truck.fastcheck): once a full check found a converged stage clean,
`drift` asks each node for its fingerprint and live state in one SSH call; any hand change on a node sends
it back to the full check-mode run, which names the drift; what the configuration does not decide does not.
`up` shares it: on a stage as at its last clean run it runs no playbook; a hand change sends it to site.yml.

One hand change per node, all at once, so each node's answer is about its own change: a live-only firewall
rule (no file touched), a stopped unit, an edited file, a new account, a file's mode, and on the sixth
node changes the configuration does not decide (which must leave that node as it was).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.lab.harness import STAGE, Lab
from truckctl.config.loader import load_stage
from truckctl.targets.lab import LabTarget
from truckctl.truck.fastcheck import Baselines

pytestmark = pytest.mark.lab

CHANGES = {  # node -> a hand change
    "truck-a-gw": "nft insert rule inet truckctl input accept",  # live only: the fingerprint alone would not see it
    "truck-a-hv1": "systemctl stop truck-heartbeat",
    "truck-a-hv2": "echo '# tuned by hand' >> /etc/chrony/chrony.conf",
    "truck-b-gw": "useradd --no-create-home visitor-$(date +%s%N)",  # locked, no key: not drift; the accounts moved
    "truck-b-hv1": "chmod 0666 /etc/chrony/chrony.conf",
}
UNDECIDED = ("truck-b-hv2", "echo 'Welcome, race engineers' > /etc/motd && echo scratch > /tmp/notes.txt")
# The second round, after the fix: what a cache or a no_log result could hide.
QUIET_CHANGES = {
    "truck-a-gw": "chmod 0644 /etc/truck-ops/truck.key",  # a no_log secret file (its task's result is censored)
    "truck-a-hv1": "rm /etc/systemd/system/multi-user.target.wants/truck-heartbeat.service",  # no daemon-reload
}


def truckctl(lab: Lab, command: str, *args: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "truckctl", "-C", str(lab.project.root), command, STAGE, *args,
                           "--json"], capture_output=True, text=True, timeout=900, check=False)
    assert proc.stdout.strip(), proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout)


def drift(lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
    return truckctl(lab, "drift", *args)


def method(document: dict[str, Any]) -> str:
    return str(document["result"]["truck_check"]["method"])


@pytest.fixture(scope="module")
def rounds(lab: Lab) -> dict[str, Any]:
    Baselines(lab.project.state_dir, STAGE).forget()  # from no baseline
    code, document = truckctl(lab, "up")
    assert code == 0, document["errors"]
    assert document["result"]["truck_check"]["fast_path"] == "no baseline for these inputs: playbook run"
    clean = [drift(lab), drift(lab), drift(lab, "--full"), drift(lab)]
    for node, command in [*CHANGES.items(), UNDECIDED]:
        rc, out = lab.ssh(lab.node(node).address, command)
        assert rc == 0, f"{node}: {command}: {out}"
    found = drift(lab)
    fixed = drift(lab, "--fix", "--yes", "--interrupt-telemetry")
    after = drift(lab)
    return {"clean": clean, "found": found, "fixed": fixed, "after": after}


def test_after_a_clean_full_check_drift_takes_the_fast_path(rounds: dict[str, Any]) -> None:
    codes = [code for code, _ in rounds["clean"]]
    assert codes == [0, 0, 0, 0]
    methods = [method(document) for _, document in rounds["clean"]]
    # `up` left the spec: the first check takes the fingerprints around its full run, the next ones need no run;
    # --full runs the playbook all the same, and the baseline stays
    assert methods == ["playbook", "fingerprint", "playbook", "fingerprint"], [
        d["result"]["truck_check"] for _, d in rounds["clean"]]
    assert rounds["clean"][2][1]["result"]["truck_check"]["fast_path"] == "not used: --full"
    fast = rounds["clean"][1][1]["result"]
    assert fast["items"] == [] and fast["truck"]["ok"] is True and fast["truck"]["changes"] == []


def test_each_hand_changed_node_sends_drift_to_the_full_check_and_only_those(rounds: dict[str, Any]) -> None:
    code, document = rounds["found"]
    assert code == 3 and method(document) == "playbook"
    reason = document["result"]["truck_check"]["fast_path"]
    assert reason == f"changed since the last clean run on {', '.join(sorted(CHANGES))}: full check"
    assert UNDECIDED[0] not in reason
    items = {(i["node"], i["kind"], i["item"]) for i in document["result"]["items"]}
    assert {("truck-a-gw", "firewall", "live nftables ruleset"), ("truck-a-hv1", "unit", "truck-heartbeat"),
            ("truck-a-hv2", "file", "/etc/chrony/chrony.conf"), ("truck-b-hv1", "file", "/etc/chrony/chrony.conf")
            } <= items, items
    assert not any(node in ("truck-b-gw", UNDECIDED[0]) for node, _, _ in items), items


def test_after_the_fix_the_recheck_records_the_baseline_again(rounds: dict[str, Any]) -> None:
    code, fixed = rounds["fixed"]
    assert code == 0 and fixed["result"]["fixed"] is True
    assert fixed["result"]["after"]["truck_check"]["method"] == "playbook"
    code, after = rounds["after"]
    assert code == 0 and method(after) == "fingerprint" and after["result"]["items"] == []


def test_the_baseline_is_private_and_holds_no_key(lab: Lab, rounds: dict[str, Any]) -> None:
    path = Baselines(lab.project.state_dir, STAGE).path
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    outputs = LabTarget(lab.project).cloud_outputs(load_stage(lab.project, STAGE))
    keys = [access.private_key_pem.get_secret_value() for access in outputs.trucks.values()]
    assert keys and all("PRIVATE KEY" in key for key in keys)
    for key in keys:  # no line of any truck's key, not just the armour
        assert not any(line in text for line in key.strip().splitlines()[1:-1])
    assert "PRIVATE KEY" not in text


def test_a_secret_files_mode_and_a_unit_disabled_behind_systemds_back_are_seen(lab: Lab,
                                                                                rounds: dict[str, Any]) -> None:
    code, document = drift(lab)
    assert code == 0 and method(document) == "fingerprint"
    for node, command in QUIET_CHANGES.items():
        rc, out = lab.ssh(lab.node(node).address, command)
        assert rc == 0, f"{node}: {command}: {out}"
    code, document = drift(lab)
    assert code == 3 and document["result"]["truck_check"]["fast_path"] == (
        f"changed since the last clean run on {', '.join(sorted(QUIET_CHANGES))}: full check")
    items = {(i["node"], i["kind"], i["item"]) for i in document["result"]["items"]}
    assert ("truck-a-hv1", "unit", "truck-heartbeat") in items, items
    assert any(node == "truck-a-gw" and kind == "task" and "private key" in item for node, kind, item in items), items
    code, document = drift(lab, "--fix", "--yes", "--interrupt-telemetry")
    assert code == 0 and document["result"]["fixed"] is True


def test_up_on_a_stage_as_at_its_last_clean_run_runs_no_playbook_and_a_hand_change_sends_it_to_site_yml(
        lab: Lab, rounds: dict[str, Any]) -> None:
    assert drift(lab)[0] == 0  # clean, the baseline recorded
    code, fast = truckctl(lab, "up", "--tier", "truck")
    assert code == 0 and method(fast) == "fingerprint", fast["result"].get("truck_check")
    assert fast["result"]["truck"]["artifacts_dir"] == "" and fast["result"]["truck"]["changed"] == 0
    node = lab.node("truck-b-hv1")
    rc, out = lab.ssh(node.address, "echo '# tuned by hand' >> /etc/chrony/chrony.conf")
    assert rc == 0, out
    code, repaired = truckctl(lab, "up", "--tier", "truck")
    assert code == 0 and method(repaired) == "playbook"
    assert repaired["result"]["truck_check"]["fast_path"] == \
        "changed since the last clean run on truck-b-hv1: playbook run"
    assert {c["host"] for c in repaired["result"]["truck"]["changes"]} == {"truck-b-hv1"}
    rc, out = lab.ssh(node.address, "grep -c 'tuned by hand' /etc/chrony/chrony.conf")
    assert out.strip() == "0", out
    # That run changed something: the next one runs site.yml, changes nothing and becomes the baseline.
    ups = [truckctl(lab, "up", "--tier", "truck"), truckctl(lab, "up", "--tier", "truck", "--full"),
           truckctl(lab, "up", "--tier", "truck")]
    assert [code for code, _ in ups] == [0, 0, 0]
    assert [method(document) for _, document in ups] == ["playbook", "playbook", "fingerprint"]
    assert ups[0][1]["result"]["truck"]["changed"] == 0 and ups[1][1]["result"]["truck"]["artifacts_dir"]
