"""Looking at running nodes from the host: boot state (via nsenter), SSH, the stand-in's endpoints."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from truckctl.lab.plan import STANDIN_HTTP_PORT, STANDIN_MQTT_PORT, LabPlan, NodePlan
from truckctl.lab.ssh import LabConnection, ssh_run
from truckctl.lab.system import cgroup_pids
from truckctl.lifecycle.webhttp import ClientTls, ExchangeFailed, Target, exchange

READY = ("running", "degraded")


def container_init(cgroup: str, roots: list[Path]) -> int | None:
    """The host pid of the node's systemd: the process of its cgroup that is pid 1 in its own namespace."""
    for pid in sorted(cgroup_pids(cgroup, roots)):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("NSpid:"):
                    ids = line.split()[1:]
                    if len(ids) > 1 and ids[-1] == "1":
                        return pid
        except OSError:
            continue
    return None


def systemd_state(node: NodePlan, roots: list[Path]) -> str:
    """`systemctl is-system-running` inside the node, without going through SSH."""
    pid = container_init(node.cgroup, roots)
    if pid is None:
        return "not-running"
    try:
        proc = subprocess.run(["nsenter", f"--target={pid}", "--mount", "--uts", "--ipc", "--net", "--pid", "--",
                               "systemctl", "is-system-running"], capture_output=True, text=True, timeout=10,
                              check=False)
    except subprocess.TimeoutExpired:
        return "unknown"
    return proc.stdout.strip() or "unknown"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def standin_json(plan: LabPlan, tls: ClientTls, path: str, timeout: float = 2.0) -> Any:
    """GET from the stand-in's HTTPS API with truckctl's client certificate, bounded."""
    target = Target("https", plan.uplink.standin_address, STANDIN_HTTP_PORT, path)
    reply = exchange(target, "GET", deadline_s=timeout, max_bytes=1 << 20, tls=tls)
    return json.loads(reply.body) if reply.status == 200 else {}


def wait_ready(node: NodePlan, conn: LabConnection, plan: LabPlan, deadline: float,
               standin_tls: ClientTls | None = None) -> dict[str, Any]:
    """Wait for sshd, then for boot to finish (`is-system-running --wait`), then the stand-in's endpoints."""
    started = time.monotonic()
    state = "unreachable"
    while time.monotonic() < deadline:
        if not port_open(node.address, 22, timeout=0.3):
            time.sleep(0.1)
            continue
        code, out = ssh_run(conn, node.address, "systemctl is-system-running --wait",
                            timeout=max(1.0, deadline - time.monotonic()))
        if code != 255:
            state = out.splitlines()[-1] if out else "unknown"
            break
        time.sleep(0.2)
    ready = state in READY
    if ready and node.is_standin:
        ready = standin_tls is not None and _wait_standin(plan, standin_tls, deadline)
    return {"node": node.name, "ready": ready, "systemd": state, "seconds": round(time.monotonic() - started, 1)}


def _wait_standin(plan: LabPlan, tls: ClientTls, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            if port_open(plan.uplink.standin_address, STANDIN_MQTT_PORT) and \
                    standin_json(plan, tls, "/healthz", timeout=1).get("ok"):
                return True
        except (ExchangeFailed, ValueError, AttributeError):
            pass
        time.sleep(0.2)
    return False


def ssh_answers(node: NodePlan, conn: LabConnection) -> bool:
    code, out = ssh_run(conn, node.address, "hostname", timeout=8)
    return code == 0 and out == node.name
