"""Drift is the node's live, effective state (issue 13), on real lab nodes.

Hand changes as an intruder or a hurried engineer would make them over SSH, one per kind, made in one
batch (one `drift`, one `drift --fix --yes`, one re-check for all of them: each kind is then asserted
by name in its own test): `drift` exits 3 naming each, `--fix --yes` restores each (verified live over
SSH afterwards), a second `drift` exits 0, and hand changes to what the configuration does not decide
are never reported.

Verified live: every kind below. Not here: kernel settings (sysctl), because the lab's containers
mount /proc/sys read-only, so nobody can change one by hand there; the comparison and its fix are
tested on a fake node in tests/unit/truck/test_live_state.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.lab.harness import STAGE, Lab

pytestmark = pytest.mark.lab

GW, HV1, HV2 = "truck-a-gw", "truck-a-hv1", "truck-a-hv2"
INTRUDER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL1veDr1ftIntruderIntruderIntruderIntruderIntr intruder@outside"

# kind -> (node, the hand change, the (kind, item) drift must name)
HAND_CHANGES: dict[str, tuple[str, str, tuple[str, str]]] = {
    "sshd": (GW, "sed -i '1i PasswordAuthentication yes' /etc/ssh/sshd_config",
             ("sshd", "passwordauthentication")),
    "firewall": (GW, "nft insert rule inet truckctl input accept", ("firewall", "live nftables ruleset")),
    "sudoers": (GW, "printf 'backup ALL=(ALL) NOPASSWD: ALL\\n' > /etc/sudoers.d/zz-quickfix && "
                    "chmod 0440 /etc/sudoers.d/zz-quickfix", ("sudo", "/etc/sudoers.d/zz-quickfix")),
    "root-key": (GW, f"echo '{INTRUDER_KEY}' >> /root/.ssh/authorized_keys",
                 ("authorized-keys", "root /root/.ssh/authorized_keys")),
    "account": (GW, "useradd --create-home --shell /bin/bash helpdesk && echo helpdesk:Tr0ub4dor-3 | chpasswd",
                ("account", "helpdesk")),
    "listener": (GW, "systemd-run --unit=quick-share python3 -m http.server 8765", ("listener", "tcp 0.0.0.0:8765")),
    "time-source": (GW, "chronyc add server 192.0.2.55 iburst", ("time-source", "192.0.2.55")),
    "broker": (GW, "echo 'listener 8884 0.0.0.0' >> /etc/mosquitto/mosquitto.conf && systemctl restart mosquitto",
               ("broker", "listeners")),
    "unit": (HV1, "systemctl disable --now truck-heartbeat", ("unit", "truck-heartbeat")),
}
# What the configuration does not decide: never drift.
UNDECIDED = [
    (HV2, "echo 'Welcome, race engineers' > /etc/motd"),
    (HV2, "echo scratch > /tmp/notes.txt"),
    (HV2, "mkdir -p /etc/truck-notes && echo 'cable 3 is loose' > /etc/truck-notes/today"),
]
# After the fix, per kind: a command over SSH and what its output must (not) contain.
RESTORED: dict[str, tuple[str, str, str, bool]] = {
    "sshd": (GW, "sshd -T | grep -i '^passwordauthentication'", "passwordauthentication no", True),
    "firewall": (GW, "nft list chain inet truckctl input", "\t\taccept\n\t\tiif", False),
    "sudoers": (GW, "ls /etc/sudoers.d", "zz-quickfix", False),
    "root-key": (GW, "cat /root/.ssh/authorized_keys", "intruder@outside", False),
    "account": (GW, "getent passwd helpdesk; passwd -S helpdesk", "/usr/sbin/nologin", True),
    "listener": (GW, "ss -Hltn", ":8765", False),
    "time-source": (GW, "chronyc -c -N sources", "192.0.2.55", False),
    "broker": (GW, "ss -Hltn", ":8884", False),
    "unit": (HV1, "systemctl is-enabled truck-heartbeat; systemctl is-active truck-heartbeat", "enabled\nactive",
             True),
}


def truckctl(lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "truckctl", "-C", str(lab.project.root), *args, "--json"],
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.stdout.strip(), proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout)


def ssh(lab: Lab, node: str, command: str) -> str:
    rc, out = lab.ssh(lab.node(node).address, command)
    assert rc == 0, f"{node}: {command}: {out}"
    return out


@pytest.fixture(scope="module")
def rounds(lab: Lab) -> dict[str, Any]:
    """Converge, check it is clean, make every hand change, drift, fix, re-check: each step's document."""
    code, document = truckctl(lab, "up", STAGE)
    assert code == 0, document["errors"]
    code, before = truckctl(lab, "drift", STAGE)
    assert code == 0, f"drift on a converged lab: {before['result'].get('items')}"
    for node, command, _ in HAND_CHANGES.values():
        ssh(lab, node, command)
    for node, command in UNDECIDED:
        ssh(lab, node, command)
    found = truckctl(lab, "drift", STAGE)
    fixed = truckctl(lab, "drift", STAGE, "--fix", "--yes", "--interrupt-telemetry")  # broker, firewall: the feed
    after = truckctl(lab, "drift", STAGE)
    restored = {kind: ssh(lab, node, command) for kind, (node, command, _, _) in RESTORED.items()}
    undecided = ssh(lab, HV2, "cat /etc/motd /tmp/notes.txt /etc/truck-notes/today")
    return {"found": found, "fixed": fixed, "after": after, "restored": restored, "undecided": undecided}


@pytest.mark.parametrize("kind", sorted(HAND_CHANGES))
def test_each_hand_change_is_found_named_and_fixed(rounds: dict[str, Any], kind: str) -> None:
    node, _, (item_kind, item) = HAND_CHANGES[kind]
    code, document = rounds["found"]
    assert code == 3
    items = document["result"]["items"]
    mine = [i for i in items if i["node"] == node and i["kind"] == item_kind and i["item"] == item]
    assert mine, f"{kind}: no {item_kind} item {item!r} on {node}: {[(i['node'], i['kind'], i['item']) for i in items]}"
    assert all(i["expected"] and i["found"] and i["expected"] != i["found"] for i in mine)
    code, fixed = rounds["fixed"]
    assert code == 0 and fixed["result"]["fixed"] is True and fixed["result"]["after"]["items"] == []
    output = rounds["restored"][kind]
    _, _, needle, present = RESTORED[kind]
    assert (needle in output) is present, f"{kind} not restored: {output!r}"


def test_diffs_are_shown_where_the_drift_is_text(rounds: dict[str, Any]) -> None:
    items = rounds["found"][1]["result"]["items"]
    by_key = {(i["node"], i["kind"], i["item"]): i for i in items}
    assert "+\t\taccept" in by_key[GW, "firewall", "live nftables ruleset"]["diff"]
    assert "NOPASSWD: ALL" in by_key[GW, "sudo", "/etc/sudoers.d/zz-quickfix"]["diff"]
    assert "intruder@outside" in by_key[GW, "authorized-keys", "root /root/.ssh/authorized_keys"]["diff"]


def test_a_second_drift_after_the_fix_is_clean(rounds: dict[str, Any]) -> None:
    code, document = rounds["after"]
    assert code == 0 and document["result"]["items"] == []


def test_what_the_configuration_does_not_decide_is_not_drift(rounds: dict[str, Any]) -> None:
    items = rounds["found"][1]["result"]["items"]
    assert not [i for i in items if i["node"] == HV2], items
    assert "Welcome, race engineers" in rounds["undecided"] and "cable 3 is loose" in rounds["undecided"]
