"""`status` and `down` on the lab, each a real run of the CLI.

Verified live: status's SSH probes (host keys pinned) and the stand-in's view of telemetry and
heartbeats; a pulled cable going STALE within 30 s with the stand-in's alarm naming the truck, then
recovering with the messages sent during the outage delivered; `down` refusing without --yes (nothing
changed), then tearing down truck tier -> certificates -> cloud tier, the stand-in refusing the old
certificate at the TLS handshake while accepting its replacement, and the data kept.

ORDER: `down` changes the nodes, so its test is the LAST of this module; it ends by converging the
nodes again (`up --tier truck`), so any lab test after this module still finds a converged lab.
The `converged` fixture converges first when this module runs on its own.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.lab.harness import STAGE, Lab, wait_for
from truckctl.cloud.outputs import CloudOutputs, TruckAccess
from truckctl.lab import api
from truckctl.lifecycle.journal import list_runs, show_run
from truckctl.lifecycle.lock import read_holder

pytestmark = pytest.mark.lab

NODES = ["truck-a-gw", "truck-a-hv1", "truck-a-hv2", "truck-b-gw", "truck-b-hv1", "truck-b-hv2"]
STATUS_BUDGET_S = 5.0  # "a few seconds at most", on a shared 2-core machine


def truckctl(lab: Lab, *args: str, timeout: float = 600) -> tuple[int, dict[str, Any], float]:
    """The real CLI in a subprocess, stdin not a terminal; (exit code, JSON envelope, wall seconds)."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "truckctl", "-C", str(lab.project.root), *args, "--json"],
                          capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout), elapsed


def status(lab: Lab) -> tuple[int, dict[str, Any], float]:
    code, document, elapsed = truckctl(lab, "status", STAGE, timeout=30)
    return code, document["result"], elapsed


def converge(lab: Lab) -> None:
    # the feed stopped seconds ago reads as live until stale_after_s: this restores the lab, so it may cut it
    code, document, elapsed = truckctl(lab, "up", STAGE, "--target", "lab", "--tier", "truck", "--interrupt-telemetry")
    assert code == 0, json.dumps(document["errors"], indent=1)
    print(f"\nconverged the truck tier in {elapsed:.1f} s")
    wait_for(lambda: status(lab)[0] == 0, 60, "status to report the converged stage healthy")


@pytest.fixture(scope="module")
def converged(lab: Lab) -> None:
    """Nodes converged by test_truck_tier when the session runs it; else converge them here."""
    if status(lab)[0] != 0:
        converge(lab)


def publish(address: str, topic: str, payloads: list[str]) -> None:
    """Publish (QoS 1) to a gateway's broker on the truck LAN, as a transponder would."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"transponder-{time.time_ns()}")
    client.connect(address, 1883, keepalive=10)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


def tls_client(cloud: CloudOutputs, access: TruckAccess, directory: Path, client_id: str) -> mqtt.Client:
    """An MQTT client for the stand-in's TLS listener with a truck's certificate (files kept 0600)."""
    directory.mkdir(mode=0o700, exist_ok=True)
    files = {"ca.pem": cloud.ca_pem, "cert.pem": access.certificate_pem,
             "key.pem": access.private_key_pem.get_secret_value()}
    for name, text in files.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o600)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.tls_set(ca_certs=str(directory / "ca.pem"), certfile=str(directory / "cert.pem"),
                   keyfile=str(directory / "key.pem"))
    return client


def stand_in_accepts(cloud: CloudOutputs, access: TruckAccess, directory: Path) -> bool:
    """Whether the stand-in completes an MQTT CONNECT with this certificate within a few seconds."""
    client = tls_client(cloud, access, directory, f"{access.client_id}-probe-{time.time_ns()}")
    accepted = threading.Event()
    client.on_connect = lambda c, u, flags, reason, props: accepted.set() if not reason.is_failure else None
    try:
        client.connect(cloud.mqtt_host, cloud.mqtt_port, keepalive=5)
    except (ssl.SSLError, OSError):
        return False
    client.loop_start()
    try:
        return accepted.wait(5)
    finally:
        client.loop_stop()
        client.disconnect()


def ssh(lab: Lab, node: str, command: str) -> str:
    code, out = lab.ssh(lab.node(node).address, command)
    assert code in (0, 1, 3), out  # is-active/is-enabled/test answer with 1 or 3 for "no"
    return out


# ---- status ----------------------------------------------------------------------------------

def test_status_shows_all_nodes_healthy_with_telemetry_arriving(lab: Lab, converged: None) -> None:
    for gateway in ("truck-a-gw", "truck-b-gw"):
        publish(lab.node(gateway).address, "telemetry/rider/7", [json.dumps({"rider": 7, "ts": time.time()})])
    code, result, elapsed = status(lab)
    print(f"\nstatus of {STAGE} (6 nodes + stand-in): {elapsed:.2f} s wall, {result['took_s']} s measuring")
    assert code == 0, result["unhealthy"]
    assert result["healthy"] is True and result["unhealthy"] == []
    nodes = {n["name"]: n for t in result["trucks"] for n in t["nodes"]}
    assert sorted(nodes) == NODES
    for name, node in nodes.items():
        assert node["reachable"] and node["detail"] == "ok", name
        assert set(node["services"].values()) == {"active"}, name
        assert node["heartbeat"]["state"] == "ok" and node["heartbeat"]["age_s"] < 20, name
    assert set(nodes["truck-a-gw"]["services"]) >= {"mosquitto", "dnsmasq", "truck-heartbeat", "ssh"}
    for truck in result["trucks"]:
        assert truck["telemetry"]["state"] == "ok" and truck["telemetry"]["count"] > 0
    assert result["cloud"]["state"] == "offline plan + cloud stand-in"
    assert result["cloud"]["endpoint"] == f"{lab.standin_address}:8883"
    assert elapsed < STATUS_BUDGET_S


def test_status_plain_output_is_one_readable_view(lab: Lab, converged: None) -> None:
    proc = subprocess.run([sys.executable, "-m", "truckctl", "-C", str(lab.project.root), "status", STAGE],
                          capture_output=True, text=True, timeout=30, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{STAGE} on lab: HEALTHY" in proc.stdout and "telemetry at the cloud side" in proc.stdout
    assert all(node in proc.stdout for node in NODES) and "lock: free" in proc.stdout
    assert "\x1b[" not in proc.stdout and "PRIVATE KEY" not in proc.stdout


@pytest.fixture
def outage_listener(lab: Lab, tmp_path: Path) -> Iterator[list[str]]:
    """Everything of truck-a's telemetry that reaches the stand-in, read there over TLS (truck-a's
    own certificate may read its prefix: the ACL is readwrite on it)."""
    cloud = lab.cloud_outputs()
    access = cloud.trucks["truck-a"]
    received: list[str] = []
    subscribed = threading.Event()
    client = tls_client(cloud, access, tmp_path / "listener", f"{access.client_id}-listener")
    client.on_connect = lambda c, u, flags, reason, props: c.subscribe(f"{access.topic_prefix}/telemetry/#", qos=1)
    client.on_subscribe = lambda c, u, mid, reasons, props: subscribed.set()
    client.on_message = lambda c, u, message: received.append(message.payload.decode())
    client.connect(cloud.mqtt_host, cloud.mqtt_port, keepalive=10)
    client.loop_start()
    assert subscribed.wait(10), "could not subscribe at the stand-in"
    yield received
    client.loop_stop()
    client.disconnect()


def test_pulled_cable_goes_stale_raises_an_alert_and_recovers_losing_nothing(lab: Lab, converged: None,
                                                                            outage_listener: list[str]) -> None:
    alerts_before = len(lab.standin("/alerts")["alerts"])
    marker = f"outage-{time.time_ns()}"
    pulled = time.monotonic()
    api.set_uplink(lab.project, "truck-a", False)
    try:
        publish(lab.node("truck-a-gw").address, "telemetry/rider/9",
                [json.dumps({"rider": 9, "seq": seq, "marker": marker}) for seq in range(5)])

        def truck_a_stale() -> dict[str, Any] | None:
            code, result, _ = status(lab)
            trucks = {t["name"]: t for t in result["trucks"]}
            truck_a = trucks["truck-a"]
            stale = truck_a["telemetry"]["state"] == "stale" and all(
                n["heartbeat"]["state"] == "stale" for n in truck_a["nodes"])
            return {"code": code, "trucks": trucks, "result": result} if stale else None

        seen = wait_for(truck_a_stale, 30 - (time.monotonic() - pulled), "status to show truck-a STALE")
        print(f"\ntruck-a STALE in status {time.monotonic() - pulled:.1f} s after the cable was pulled")
        assert seen["code"] == 1 and seen["result"]["healthy"] is False
        assert seen["trucks"]["truck-b"]["healthy"] is True  # the other truck is unaffected
        # One incident for the root cause (the gateway's evidence: no carrier), the stale telemetry under it.
        [incident] = seen["result"]["incidents"]
        assert (incident["kind"], incident["truck"]) == ("uplink-down", "truck-a"), incident
        assert any(s["text"].startswith("truck-a: telemetry STALE") for s in incident["symptoms"]), incident

        def alarm() -> dict[str, Any] | None:
            alerts = lab.standin("/alerts")["alerts"][alerts_before:]
            return next((a for a in alerts if isinstance(a["body"], dict) and a["body"].get("truck") == "truck-a"
                         and a["body"].get("state") == "ALARM"), None)

        raised = wait_for(alarm, 5, "an alert naming truck-a at the alert receiver")
        assert raised["body"]["alarm"] in ("telemetry-stopped", "heartbeat-missing")
        assert not [m for m in outage_listener if marker in m], "messages crossed a pulled cable"
    finally:
        api.set_uplink(lab.project, "truck-a", True)
    plugged = time.monotonic()
    wait_for(lambda: status(lab)[0] == 0, 60, "status to recover after the cable is plugged back")
    print(f"status healthy again {time.monotonic() - plugged:.1f} s after the cable was plugged back")
    wait_for(lambda: len([m for m in outage_listener if marker in m]) == 5, 30,
             "the 5 messages published during the outage to reach the stand-in")
    delivered = sorted(json.loads(m)["seq"] for m in outage_listener if marker in m)
    assert delivered == [0, 1, 2, 3, 4]  # each exactly once, nothing lost


# ---- down (the LAST tests of this module: they change the nodes) ----------------------------

def test_down_without_yes_in_a_non_interactive_shell_changes_nothing(lab: Lab, converged: None) -> None:
    runs_before = list_runs(lab.project, STAGE)
    code, document, _ = truckctl(lab, "down", STAGE)
    assert code == 2 and document["ok"] is False
    assert document["errors"][0]["code"] == "not-confirmed" and "--yes" in document["errors"][0]["message"]
    assert list_runs(lab.project, STAGE) == runs_before and read_holder(lab.project, STAGE) is None
    assert ssh(lab, "truck-a-gw", "systemctl is-active mosquitto truck-heartbeat").split() == ["active", "active"]
    assert ssh(lab, "truck-a-gw", "test -e /etc/mosquitto/bridge/truck.key && echo present") == "present"


def test_down_tears_down_in_order_revokes_and_keeps_the_data(lab: Lab, converged: None, tmp_path: Path) -> None:
    before = lab.cloud_outputs()
    assert stand_in_accepts(before, before.trucks["truck-a"], tmp_path / "before")
    try:
        code, document, elapsed = truckctl(lab, "down", STAGE, "--yes", "--interrupt-telemetry")
        print(f"\ndown {STAGE} on the lab: {elapsed:.1f} s wall")
        assert code == 0, json.dumps(document["errors"], indent=1)
        result = document["result"]

        # In order: truck tier, then the certificates, then the cloud tier; each step journaled.
        events = show_run(lab.project, result["run_id"])["events"]
        bounds = [(e["kind"], e["step"]) for e in events if e["kind"] in ("step-start", "step-end")]
        assert bounds == [("step-start", "truck"), ("step-end", "truck"), ("step-start", "revoke"),
                          ("step-end", "revoke"), ("step-start", "cloud"), ("step-end", "cloud")]
        summary = show_run(lab.project, result["run_id"])["summary"]
        assert summary["status"] == "ok" and summary["command"] == "down"
        assert sorted(result["truck"]["hosts"]) == NODES and result["truck"]["not_down"] == []

        # The truck tier is down: heartbeats, feed and bridge stopped and disabled, the key gone.
        for node in NODES:
            assert ssh(lab, node, "systemctl is-active truck-heartbeat; systemctl is-enabled truck-heartbeat") \
                .split() == ["inactive", "disabled"], node
        for gateway in ("truck-a-gw", "truck-b-gw"):
            assert ssh(lab, gateway, "systemctl is-active mosquitto truck-transponder-sim").split() == \
                ["inactive", "inactive"]
            assert ssh(lab, gateway, "ls /etc/mosquitto/bridge; test -d /var/lib/mosquitto && echo store") \
                .split() == ["ca.pem", "store"]  # certificate and key gone, the message store kept

        # The cloud side refuses the revoked certificate, and accepts the replacement a later up deploys.
        assert {item["truck"] for item in result["revoke"]["revoked"]} == {"truck-a", "truck-b"}
        assert not stand_in_accepts(before, before.trucks["truck-a"], tmp_path / "revoked")
        after = lab.cloud_outputs()
        assert after.trucks["truck-a"].certificate_pem != before.trucks["truck-a"].certificate_pem
        assert stand_in_accepts(after, after.trucks["truck-a"], tmp_path / "replacement")

        # The data is kept and listed.
        kept = {item["what"]: item for item in result["kept"]}
        assert "truck-a:" in kept["the stand-in's received data (the lab's data lake)"]["detail"]
        assert result["run_id"] in kept["run journal"]["detail"] and result["deleted"] == []
        assert status(lab)[0] == 1  # and status says plainly that the stage is down
    finally:
        converge(lab)  # leave the lab as later tests (and `up`) expect it
    assert stand_in_accepts(lab.cloud_outputs(), lab.cloud_outputs().trucks["truck-a"], tmp_path / "reconverged")
