"""Planted secrets never show: not on screen, not in any file truckctl writes, not in what it sends.

Planted, with values made for this test: PULUMI_CONFIG_PASSPHRASE; TRUCKCTL_ALERT_WEBHOOK, a URL
whose path and query carry tokens, pointing at a receiver on this host's loopback; the lab's
trucks' private keys (each body line) and the lab's SSH login key.
Runs, through the real CLI: `up` end to end (--json), `up` failing (a node's cable pulled:
prechecks, notifications to the planted webhook; --json and human output), `plan` (the offline
plan: what Pulumi is given), `drift`, `status`, `runs`, `runs show`.
Scanned for every planted value: stdout and stderr of each run; the state directory (the run
journal, ansible-runner's artifacts and work directory, pulumi/ if present, locks), all but lab/
where the keys themselves live; the notifications the webhook received; the lab's alert receiver.
Zero hits. test_truck_tier scans the nodes' journals for the trucks' keys.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.lab.harness import STAGE, Lab
from tests.lab.runs import command, ensure_converged, environment, set_lan_cable
from tests.lab.test_truck_tier import secret_fragments

pytestmark = pytest.mark.lab


class Receiver:
    """The planted webhook: an HTTP receiver on loopback recording every notification's body."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append(self.rfile.read(length).decode("utf-8", "replace"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def planted(receiver: Receiver) -> dict[str, str]:
    token, key = secrets.token_hex(16), secrets.token_urlsafe(24)
    return {
        "PULUMI_CONFIG_PASSPHRASE": f"canary-passphrase-{secrets.token_hex(12)}",
        "TRUCKCTL_ALERT_WEBHOOK": f"http://127.0.0.1:{receiver.port}/hooks/T0/{token}?key={key}",
        "webhook path token": token,
        "webhook query token": key,
    }


def run(lab: Lab, env: dict[str, str], *args: str, json_output: bool = True) -> subprocess.CompletedProcess[str]:
    argv = command(lab, *args) if json_output else command(lab, *args)[:-1]  # without the final --json
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False, env=environment(env))


@pytest.fixture(scope="module")
def outputs(lab: Lab, planted: dict[str, str], receiver: Receiver) -> dict[str, str]:
    """Every run's stdout and stderr, keyed by what was run."""
    ensure_converged(lab)
    env = {k: v for k, v in planted.items() if k.isupper()}
    seen: dict[str, str] = {}

    def record(name: str, proc: subprocess.CompletedProcess[str], codes: tuple[int, ...]) -> None:
        seen[f"{name}: stdout"], seen[f"{name}: stderr"] = proc.stdout, proc.stderr
        assert proc.returncode in codes, f"{name} exited {proc.returncode}: {proc.stderr[-2000:]}"

    record("up --json", run(lab, env, "up", STAGE), (0,))
    set_lan_cable(lab, "truck-b-hv1", False)
    try:
        record("up failing --json", run(lab, env, "up", STAGE, "--tier", "truck"), (1,))
        record("up failing (human)", run(lab, env, "up", STAGE, "--tier", "truck", json_output=False), (1,))
    finally:
        set_lan_cable(lab, "truck-b-hv1", True)
    record("plan --json", run(lab, env, "plan", STAGE), (0,))
    record("drift --json", run(lab, env, "drift", STAGE), (0, 3))
    record("status --json", run(lab, env, "status", STAGE), (0, 1))
    runs = run(lab, env, "runs")
    record("runs --json", runs, (0,))
    for item in json.loads(runs.stdout)["result"]["runs"][:6]:
        record(f"runs show {item['run_id']}", run(lab, env, "runs", "show", item["run_id"]), (0,))
    assert receiver.bodies, "the planted webhook was never called: the failing runs did not notify"
    return seen


def needles(lab: Lab, planted: dict[str, str]) -> dict[str, str]:
    """Every planted value, and each line of each private key (a leak of one line is a leak)."""
    found = dict(planted)
    for index, fragment in enumerate(secret_fragments(lab)):
        found[f"truck key line {index}"] = fragment
    login_key = Path(lab.connection.private_key).read_text()
    for index, line in enumerate(line for line in login_key.splitlines() if not line.startswith("-----")):
        found[f"lab SSH key line {index}"] = line
    assert all(len(value) >= 16 for value in found.values())
    return found


def state_files(lab: Lab) -> dict[str, str]:
    """Every file of the state directory but lab/ (the keys' own home), as text."""
    state = lab.project.state_dir
    texts: dict[str, str] = {}
    for directory, dirs, files in os.walk(state):
        if Path(directory) == state:
            dirs[:] = [d for d in dirs if d != "lab"]
        for name in files:
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                texts[str(path.relative_to(state))] = path.read_bytes().decode("utf-8", "replace")
    return texts


def test_no_planted_secret_is_printed_written_or_sent(lab: Lab, planted: dict[str, str], outputs: dict[str, str],
                                                     receiver: Receiver) -> None:
    scanned = dict(outputs)
    files = state_files(lab)
    assert any(name.startswith("runs/") for name in files), "no run journal to scan"
    assert any(name.startswith("truck/artifacts/") and name.endswith("stdout") for name in files), \
        "no ansible-runner artifacts to scan"
    scanned.update({f"state: {name}": text for name, text in files.items()})
    scanned.update({f"webhook notification {i}": body for i, body in enumerate(receiver.bodies)})
    scanned["the lab's alert receiver"] = json.dumps(lab.standin("/alerts"))
    hits = sorted({f"{what} in {where}" for what, value in needles(lab, planted).items()
                   for where, text in scanned.items() if value in text})
    assert hits == [], hits
    print(f"\nsecrets scan: {len(needles(lab, planted))} planted values, {len(scanned)} outputs and files, "
          f"{sum(len(t) for t in scanned.values())} characters, {len(receiver.bodies)} notifications: no hit")


def test_the_webhook_is_named_by_its_host_only(outputs: dict[str, str], receiver: Receiver) -> None:
    document = json.loads(outputs["up failing --json: stdout"])
    deliveries = document["result"]["notifications"]
    assert {d["channel"] for d in deliveries} >= {f"webhook (http://127.0.0.1:{receiver.port})"}
    assert all(d["ok"] for d in deliveries), deliveries
