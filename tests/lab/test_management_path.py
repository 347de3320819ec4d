"""The outside operator (issue 16, one path): a second machine that reaches the trucks only through
the cloud stand-in acting as the jump host.

Verified live: `truckctl lab operator add ci` makes the operator's namespace (one link, into the
stand-in; no route to any truck LAN) and its own state directory; from that namespace, with that
state directory, `up --tier truck` converges stage-1 through the jump (prechecks, Ansible, the smoke
check) and its run is journaled there, not in the lab's; the jump account forwards only to the nodes'
SSH port and has no shell; a broken hop (link down, key refused) is named by the prechecks; a changed
host key on the jump host is refused. The host and the stand-in never forward IP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.lab.harness import STAGE, Lab
from truckctl.lab import operator, rootwrite
from truckctl.lab import state as lab_state
from truckctl.lab.node import merged_dir
from truckctl.lab.paths import LabPaths
from truckctl.lab.probe import container_init
from truckctl.lab.system import cgroup_roots
from truckctl.remote import explain_ssh_failure

pytestmark = pytest.mark.lab

NAME = "ci"


@dataclass(frozen=True)
class Outside:
    netns: str
    state_dir: Path
    result: dict[str, Any]

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """truckctl as the outside operator: in its namespace, with its state directory only."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRUCKCTL_")}
        env["TRUCKCTL_STATE_DIR"] = str(self.state_dir)
        return subprocess.run(["ip", "netns", "exec", self.netns, sys.executable, "-m", "truckctl", *args],
                              capture_output=True, text=True, timeout=timeout, env=env, check=False)

    def cli(self, lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
        proc = self.run("-C", str(lab.project.root), *args, "--json")
        return proc.returncode, json.loads(proc.stdout)

    def ssh_config(self) -> Path:
        return next((self.state_dir / "ssh").glob("config-*"))


@pytest.fixture(scope="module")
def outside(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Outside:
    state_dir = tmp_path_factory.mktemp("operator") / "state"
    proc = subprocess.run([sys.executable, "-m", "truckctl", "-C", str(lab.project.root), "lab", "operator", "add",
                           NAME, "--state-dir", str(state_dir), "--json"], capture_output=True, text=True,
                          timeout=300, check=False)
    document = json.loads(proc.stdout)
    assert proc.returncode == 0, document["errors"]
    return Outside(document["result"]["netns"], state_dir, document["result"])


@pytest.fixture(scope="module")
def converged(lab: Lab, outside: Outside) -> dict[str, Any]:
    code, document = outside.cli(lab, "up", STAGE, "--tier", "truck")
    assert code == 0, document["errors"]
    return document


def test_the_operator_has_only_what_it_was_given(lab: Lab, outside: Outside) -> None:
    given = sorted(str(p.relative_to(outside.state_dir)) for p in outside.state_dir.rglob("*") if p.is_file())
    assert given == sorted(["via", "lab/outside.json", "lab/known_hosts", "lab/ssh/id_ed25519",
                            "lab/ssh/id_ed25519.pub", "lab/pki/ca.pem", "lab/pki/truckctl-operator.pem",
                            "lab/pki/truckctl-operator.key", "lab/pki/truck-truck-a.pem", "lab/pki/truck-truck-a.key",
                            "lab/pki/truck-truck-b.pem", "lab/pki/truck-truck-b.key"])
    assert not (outside.state_dir / "lab" / "pki" / "ca.key").exists()  # never the CA's key
    assert (outside.state_dir / "via").read_text().strip() == "management"
    # the lab's own commands refuse this state directory: the lab is another machine's
    proc = outside.run("-C", str(lab.project.root), "lab", "down", "--json")
    assert proc.returncode == 2 and json.loads(proc.stdout)["errors"][0]["code"] == "lab-outside-operator"


def test_the_outside_namespace_reaches_no_truck_directly(lab: Lab, outside: Outside) -> None:
    routes = subprocess.run(["ip", "-n", outside.netns, "-4", "-o", "route"], capture_output=True, text=True,
                            check=True).stdout
    assert f"{lab.standin_address} dev" in routes
    for node in lab.nodes:
        got = subprocess.run(["ip", "-n", outside.netns, "route", "get", node.address], capture_output=True,
                             text=True, check=False)
        assert got.returncode != 0, f"{node.name} is routable from outside: {got.stdout}"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"
    standin = lab_state.load(lab.project.state_dir)
    assert standin is not None
    forward = subprocess.run(["ip", "netns", "exec", standin.plan.standin.netns, "cat",
                              "/proc/sys/net/ipv4/ip_forward"], capture_output=True, text=True, check=True).stdout
    assert forward.strip() == "0"


def test_the_outside_operator_converges_stage_1_through_the_jump(lab: Lab, outside: Outside,
                                                                  converged: dict[str, Any]) -> None:
    result = converged["result"]
    hop = result["prechecks"]["checks"]["management-path"]
    assert hop["ok"] and [h["hop"] for h in hop["hops"]] == ["cloud-gw"]
    assert all(n["reachable"] for n in result["prechecks"]["checks"]["ssh"]["nodes"].values())
    assert result["smoke"]["checked"] and set(result["smoke"]["arrived_s"]) == {"truck-a", "truck-b"}
    assert result["lab"]["outside_operator"]
    assert set(result["truck"]["hosts"]) == {n.name for n in lab.nodes}
    # the run is journaled on the operator's machine, not in the lab's state directory
    run_id = converged["result"].get("run_id") or json.loads(outside.run(
        "-C", str(lab.project.root), "runs", "--json").stdout)["result"]["runs"][0]["id"]
    assert (outside.state_dir / "runs" / run_id).is_dir()
    assert not (lab.project.state_dir / "runs" / run_id).exists()
    _, seen = outside.cli(lab, "status", STAGE)  # status through the jump too
    rows = [row for truck in seen["result"]["trucks"] for row in truck["nodes"]]
    # status's probe is short (2 s to connect per hop): on a loaded host one may time out, but none is
    # refused (host key, SSH key) and the nodes answer through the jump
    assert any(row["reachable"] for row in rows), rows
    assert not [row for row in rows if "host key" in row["detail"] or "refused" in row["detail"]], rows


def jump(outside: Outside, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", outside.netns, "ssh", "-F", str(outside.ssh_config()), *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


def test_the_jump_account_only_forwards_to_the_nodes_ssh_port(lab: Lab, outside: Outside,
                                                              converged: dict[str, Any]) -> None:
    gateway = lab.node("truck-a-gw")
    allowed = jump(outside, "-W", f"{gateway.address}:22", "truckctl-hop-1")
    assert allowed.stdout.startswith("SSH-2.0-"), allowed.stderr
    broker = jump(outside, "-W", f"{gateway.address}:1883", "truckctl-hop-1")
    assert broker.returncode == 255 and not broker.stdout
    # said by the hop itself, or by the shared connection to it
    assert explain_ssh_failure(broker.stderr) == "the jump host refused to forward the connection", broker.stderr
    close_hop_connections(outside)  # the account itself, not a shared connection, must refuse a shell
    shell = jump(outside, "-o", "ControlPath=none", "truckctl-hop-1", "id")
    assert shell.returncode != 0 and "uid=" not in shell.stdout  # no shell, no command


@pytest.fixture
def standin_root(lab: Lab) -> Path:
    state = lab_state.load(lab.project.state_dir)
    assert state is not None
    return merged_dir(LabPaths(lab.project.state_dir).root, state.plan.standin)


def close_hop_connections(outside: Outside) -> None:
    """The hop's shared connection (ControlPersist) of earlier runs: each failure is met by a new one."""
    jump(outside, "-O", "exit", "truckctl-hop-1")


def hop_failure(lab: Lab, outside: Outside) -> str:
    close_hop_connections(outside)
    code, document = outside.cli(lab, "up", STAGE, "--tier", "truck")
    assert code == 1, document
    assert [e["code"] for e in document["errors"]] == ["hop-failed"]
    assert document["errors"][0]["location"] == "cloud-gw"
    return str(document["errors"][0]["message"])


def test_an_unreachable_hop_is_named_by_the_prechecks(lab: Lab, outside: Outside, converged: dict[str, Any]) -> None:
    subprocess.run(["ip", "-n", outside.netns, "link", "set", operator.OPERATOR_IF, "down"], check=True)
    try:
        message = hop_failure(lab, outside)
    finally:
        subprocess.run(["ip", "-n", outside.netns, "link", "set", operator.OPERATOR_IF, "up"], check=True)
        subprocess.run(["ip", "-n", outside.netns, "route", "replace", f"{lab.standin_address}/32", "dev",
                        operator.OPERATOR_IF], check=True)
    assert message == f"management path: hop 'cloud-gw' (truckctl-jump@{lab.standin_address}:22) failed: unreachable"


def test_a_refused_key_at_the_hop_is_named_by_the_prechecks(lab: Lab, outside: Outside, converged: dict[str, Any],
                                                            standin_root: Path) -> None:
    keys = rootwrite.read_file(standin_root, operator.JUMP_KEYS)
    rootwrite.write_file(standin_root, operator.JUMP_KEYS, b"")
    try:
        message = hop_failure(lab, outside)
    finally:
        rootwrite.write_file(standin_root, operator.JUMP_KEYS, keys)
    assert message.endswith("failed: SSH key refused")


def restart_standin_sshd(lab: Lab) -> None:
    """Inside the stand-in through its systemd (the host's own SSH would refuse a changed key too)."""
    state = lab_state.load(lab.project.state_dir)
    assert state is not None
    pid = container_init(state.plan.standin.cgroup, cgroup_roots())
    assert pid is not None
    subprocess.run(["nsenter", f"--target={pid}", "--mount", "--uts", "--ipc", "--net", "--pid", "--", "systemctl",
                    "restart", "ssh"], check=True, timeout=60, capture_output=True)


@pytest.fixture
def changed_host_key(lab: Lab, standin_root: Path) -> Iterator[None]:
    """The jump host presents another host key (as a machine put in its place would), then its own again."""
    original = rootwrite.read_file(standin_root, "etc/ssh/ssh_host_ed25519_key")
    other = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    rootwrite.write_file(standin_root, "etc/ssh/ssh_host_ed25519_key", other, 0o600)
    try:
        restart_standin_sshd(lab)
        yield
    finally:
        rootwrite.write_file(standin_root, "etc/ssh/ssh_host_ed25519_key", original, 0o600)
        restart_standin_sshd(lab)


def test_a_changed_host_key_on_the_jump_host_is_refused(lab: Lab, outside: Outside, converged: dict[str, Any],
                                                        changed_host_key: None) -> None:
    message = hop_failure(lab, outside)
    assert message.endswith("failed: host key does not match the pinned one (another machine on this address?)")
    # and nothing else gets through: a plain SSH to a node through the path is refused at the hop
    close_hop_connections(outside)
    refused = jump(outside, f"root@{lab.node('truck-a-gw').address}", "true")
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr
