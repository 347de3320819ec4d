"""The lab, live: nodes reachable over SSH with host-key checking on, the stand-in's TLS MQTT and
alerting, pulling a truck's uplink, and `down` leaving nothing behind (also after a killed
supervisor and after an `up` killed half-way).

Verified live here: SSH, hostnames, addresses, routes, TLS client-certificate checks, ACLs, the
stand-in's status and alerts. The VPN endpoint in CloudOutputs is verified as data only (no
WireGuard in this kernel).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from typer.testing import CliRunner

from tests.helpers import REPO
from tests.lab.harness import STAGE, Lab, leftovers, nspawn_pids, wait_for
from truckctl.cli.app import app
from truckctl.cloud.outputs import CloudOutputs, heartbeat_topic, telemetry_topic
from truckctl.errors import TruckctlError
from truckctl.lab import api
from truckctl.lab import state as lab_state
from truckctl.lab.rootfs import base_path
from truckctl.lab.ssh import ssh_argv
from truckctl.lifecycle.arp import arp_scan, route_to
from truckctl.lifecycle.webhttp import exchange, parse_url
from truckctl.project import Project
from truckctl.remote import control_path

pytestmark = pytest.mark.lab




# ---- nodes -----------------------------------------------------------------------------------

def test_every_node_answers_ssh_with_host_key_checking_and_has_its_name_and_address(lab: Lab) -> None:
    assert len(lab.nodes) == 6
    argv = ssh_argv(lab.connection, "x", "true")
    assert "StrictHostKeyChecking=yes" in argv and f"UserKnownHostsFile={lab.connection.known_hosts}" in argv

    def inspect(node: api.LabNode) -> tuple[api.LabNode, int, str]:
        code, out = lab.ssh(node.address, "hostname; ip -4 -o addr show dev eth0; echo ROUTES; ip -4 route")
        return node, code, out

    with ThreadPoolExecutor(max_workers=6) as pool:
        for node, code, out in pool.map(inspect, lab.nodes):
            assert code == 0, f"{node.name}: {out}"
            hostname, rest = out.split("\n", 1)
            assert hostname == node.name
            assert f"inet {node.address}/24 " in rest
            assert "default" not in rest.split("ROUTES", 1)[1], f"{node.name} has a default route"


def test_known_hosts_names_every_node_by_name_and_address(lab: Lab) -> None:
    lines = lab.connection.known_hosts.read_text().splitlines()
    for node in lab.nodes:
        assert any(line.startswith(f"{node.name},{node.address}") and " ssh-ed25519 " in line for line in lines)
    assert oct(lab.connection.private_key.stat().st_mode & 0o777) == "0o600"


def test_a_node_with_an_unknown_host_key_is_refused(lab: Lab, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    strict = api.LabConnection(lab.connection.user, lab.connection.private_key, empty)
    node = lab.nodes[0]
    proc = subprocess.run(ssh_argv(strict, node.address, "true"), capture_output=True, text=True, timeout=20,
                          check=False)
    assert proc.returncode == 255 and "Host key verification failed" in proc.stderr


def test_only_gateways_are_on_the_uplink_and_nodes_see_only_their_own_interfaces(lab: Lab) -> None:
    for node in lab.nodes:
        code, out = lab.ssh(node.address, "ip -4 -o addr show; echo SYSFS; ls /sys/class/net")
        assert code == 0
        expected = {"lo", "eth0"} | ({"uplink0"} if node.role == "gateway" else set())
        assert set(out.split("SYSFS\n", 1)[1].split()) == expected  # what Ansible's facts read
        if node.role == "gateway":
            assert node.uplink_address and f"inet {node.uplink_address}/24" in out and "uplink0" in out
        else:
            assert node.uplink_address is None and "uplink0" not in out


def test_lab_status_json_reports_every_node_running_and_reachable(lab: Lab) -> None:
    result = CliRunner().invoke(app, ["-C", str(REPO), "lab", "status", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["command"] == "lab status" and document["stage"] == STAGE and document["ok"]
    status = document["result"]
    assert status["healthy"] and status["apt_cache"]["running"]
    assert {(n["truck"], n["name"], n["address"]) for n in status["nodes"]} == \
        {(n.truck, n.name, n.address) for n in lab.nodes}
    for row in [*status["nodes"], status["standin"]]:
        assert row["systemd"] == "running" and row["ssh"], row
    assert status["standin"]["mqtt_tls"] and status["standin"]["http"]


def test_apt_goes_through_the_labs_cache(lab: Lab) -> None:
    node = lab.node("truck-b-hv1")
    code, out = lab.ssh(node.address, "apt-config dump Acquire::http::Proxy")
    assert code == 0 and '"http://10.32.1.254:3142"' in out
    code, out = lab.ssh(node.address, "timeout 20 apt-get -q -o Debug::NoLocking=1 download hello && ls hello_*.deb")
    assert code == 0, out


def test_the_cached_rootfs_has_the_lists_of_every_source_a_node_installs_from(lab: Lab) -> None:
    """roles/common refreshes apt's lists only when they are a day old: on a younger rootfs the first
    converge installs from the rootfs's own lists, so they must cover -security and -updates too."""
    base = base_path()
    wanted = {line.split()[2] for line in (base / "etc/apt/sources.list").read_text().splitlines()
              if line.startswith("deb ")}
    listed = subprocess.run(["apt-get", "-o", f"Dir={base}", "indextargets", "--format", "$(RELEASE)",
                             "Created-By: Packages"], capture_output=True, text=True, check=True).stdout
    assert wanted == {"bookworm", "bookworm-updates", "bookworm-security"}
    assert set(listed.split()) == wanted


def test_up_again_reuses_the_healthy_lab_and_names_the_move_to_another_stage(lab: Lab) -> None:
    """`lab up` of another stage moves the lab (tests/lab/test_daily.py); what reads the lab for another
    stage says how to get there."""
    again = api.up(lab.project, lab.stage)
    assert again["reused"] and again["seconds"] < 5 and "moved" not in again
    with pytest.raises(TruckctlError) as err:
        api.cloud_outputs(lab.project, "stage-2")
    assert err.value.problems[0].code == "lab-other-stage"
    assert "`truckctl lab up stage-2` to move it" in err.value.problems[0].message


# ---- the cloud stand-in ----------------------------------------------------------------------

class Mqtt:
    """A paho client over the stand-in's TLS endpoint; `connected` is True once the broker accepted it."""

    def __init__(self, outputs: CloudOutputs, tmp: Path, truck: str | None) -> None:
        ca = tmp / "ca.pem"
        ca.write_text(outputs.ca_pem)
        context = ssl.create_default_context(cafile=str(ca))
        if truck is not None:
            access = outputs.trucks[truck]
            cert, key = tmp / f"{truck}.pem", tmp / f"{truck}.key"
            cert.write_text(access.certificate_pem)
            key.touch(mode=0o600)
            key.write_text(access.private_key_pem.get_secret_value())
            context.load_cert_chain(str(cert), str(key))
        self.accepted = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=outputs.trucks[truck].client_id if truck else "anonymous-test")
        self.client.tls_set_context(context)
        self.client.on_connect = self._on_connect
        self.outputs = outputs

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason == 0:
            self.accepted.set()

    def connect(self, timeout: float = 5) -> bool:
        try:
            self.client.connect(self.outputs.mqtt_host, self.outputs.mqtt_port, keepalive=10)
        except (OSError, ssl.SSLError):
            return False
        self.client.loop_start()
        return self.accepted.wait(timeout)

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(timeout=5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def truck_a(lab: Lab, tmp_path: Path) -> Iterator[Mqtt]:
    client = Mqtt(lab.cloud_outputs(), tmp_path, "truck-a")
    assert client.connect(), "the stand-in refused truck-a's certificate"
    yield client
    client.close()


def test_standin_accepts_a_truck_certificate_and_refuses_a_client_without_one(lab: Lab, tmp_path: Path,
                                                                                 truck_a: Mqtt) -> None:
    anonymous = Mqtt(lab.cloud_outputs(), tmp_path, None)
    try:
        assert not anonymous.connect(timeout=3)
    finally:
        anonymous.close()


def test_telemetry_under_the_trucks_prefix_shows_in_status_and_other_prefixes_are_denied(lab: Lab,
                                                                                         truck_a: Mqtt) -> None:
    race = lab.cloud_outputs().trucks["truck-a"].topic_prefix.split("/")[0]
    before = lab.standin("/status")["trucks"]
    truck_a.publish(telemetry_topic(race, "truck-a"), {"rider": 42, "speed_kmh": 51.3})
    truck_a.publish(heartbeat_topic(race, "truck-a") + "/truck-a-gw", {"node": "truck-a-gw"})
    truck_a.publish(telemetry_topic(race, "truck-b"), {"spoofed": True})  # not truck-a's prefix: dropped

    def arrived() -> Any:
        trucks = lab.standin("/status")["trucks"]
        a = trucks["truck-a"]
        done = a["counts"]["telemetry"] > before["truck-a"]["counts"]["telemetry"] and "truck-a-gw" in a["heartbeats"]
        return trucks if done else None

    trucks = wait_for(arrived, 10, "truck-a's telemetry at the stand-in")
    assert '"rider": 42' in trucks["truck-a"]["telemetry"]["last_payload"]
    time.sleep(1)  # the spoofed message, had it been allowed, would have arrived with the others
    assert lab.standin("/status")["trucks"]["truck-b"]["counts"]["telemetry"] == \
        before["truck-b"]["counts"]["telemetry"]


def test_alert_receiver_records_a_post(lab: Lab) -> None:
    url = lab.cloud_outputs().alert_webhook_url
    assert url is not None
    marker = f"test-{os.getpid()}-{time.time()}"
    reply = exchange(parse_url(url), "POST", json.dumps({"alarm": marker}).encode(), deadline_s=10,
                     max_bytes=4096, tls=api.operator_tls(lab.project))
    assert reply.status == 202
    alerts = lab.standin("/alerts")["alerts"]
    assert any(a["source"] == "post" and a["body"] == {"alarm": marker} for a in alerts)


def test_a_silent_heartbeat_raises_the_standins_own_alarm(lab: Lab, truck_a: Mqtt) -> None:
    """One of truck-a's nodes (its own heartbeat unit stopped, if a converge installed it) heartbeats once,
    then falls silent: the stand-in raises its alarm. Only configured nodes are streams at all."""
    race = lab.cloud_outputs().trucks["truck-a"].topic_prefix.split("/")[0]
    node = lab.node("truck-a-hv2")
    _, was = lab.ssh(node.address, "systemctl is-active truck-heartbeat; systemctl stop truck-heartbeat; true")
    try:
        after = max([a["index"] for a in lab.standin("/alerts")["alerts"]], default=-1)
        truck_a.publish(f"{heartbeat_topic(race, 'truck-a')}/{node.name}", {"node": node.name})
        stale = lab.standin("/status")["stale_after_s"]

        def alarm() -> Any:
            return [a for a in lab.standin("/alerts")["alerts"]
                    if a["index"] > after and a["source"] == "standin" and a["body"].get("node") == node.name
                    and a["body"]["alarm"] == "heartbeat-missing"]

        raised = wait_for(alarm, stale + 15, f"a heartbeat-missing alarm for {node.name}")
        assert raised[0]["body"]["truck"] == "truck-a" and raised[0]["body"]["silent_for_s"] >= stale
    finally:
        if was.startswith("active"):
            lab.ssh(node.address, "systemctl start truck-heartbeat")


def test_cloud_outputs_for_the_lab_target(lab: Lab) -> None:
    outputs = lab.cloud_outputs()
    assert outputs.target == "lab" and not outputs.placeholder
    assert outputs.mqtt_host == lab.standin_address and outputs.mqtt_port == 8883
    assert set(outputs.trucks) == {"truck-a", "truck-b"}
    access = outputs.trucks["truck-b"]
    assert access.client_id == "gdf27-truck-b" and access.topic_prefix == "gdf27/truck-b"
    assert "PRIVATE KEY" in access.private_key_pem.get_secret_value()
    assert "PRIVATE KEY" not in repr(outputs) and "PRIVATE KEY" not in outputs.model_dump_json()
    assert outputs.alert_webhook_url == f"https://{lab.standin_address}:8080/alerts"
    assert outputs.vpn_endpoint == f"{lab.standin_address}:51820" and len(outputs.vpn_public_key) == 44
    with pytest.raises(TruckctlError, match="stage-2"):
        api.cloud_outputs(lab.project, "stage-2")


# ---- the uplink "cable" ----------------------------------------------------------------------

def _reachable(address: str) -> bool:
    """Does the node answer on that network at all? ARP: a pulled cable silences it, the node's
    firewall does not (no port answers on a converged gateway's uplink)."""
    route = route_to(address)
    return route is not None and bool(arp_scan(route[0], route[1], [address], wait_s=0.6)[address])


def test_pulling_a_trucks_uplink_cuts_only_that_gateway(lab: Lab) -> None:
    gw_a, gw_b = lab.node("truck-a-gw"), lab.node("truck-b-gw")
    assert gw_a.uplink_address and gw_b.uplink_address
    try:
        api.set_uplink(lab.project, "truck-a", up=False)
        assert lab.ssh(gw_a.address, "cat /sys/class/net/uplink0/carrier") == (0, "0")  # the node sees no link
        assert not _reachable(gw_a.uplink_address)
        assert _reachable(gw_b.uplink_address)
    finally:
        api.set_uplink(lab.project, "truck-a", up=True)
    wait_for(lambda: lab.ssh(gw_a.address, "cat /sys/class/net/uplink0/carrier") == (0, "1"), 5, "carrier back")
    assert wait_for(lambda: _reachable(gw_a.uplink_address or ""), 5, "the uplink back")


# ---- down, including after crashes (on a second lab, so the shared one stays up) --------------

@pytest.fixture
def second_project(tmp_path: Path) -> Iterator[Project]:
    """A copy of the example project on other networks: its lab runs beside the shared one."""
    root = tmp_path / "second"
    shutil.copytree(REPO / "inventory", root / "inventory")
    race = root / "inventory" / "race.yaml"
    text = race.read_text().replace("10.31.", "10.41.").replace("10.32.", "10.42.")
    race.write_text(text.replace("uplink_cidr: 100.64.10.0/24", "uplink_cidr: 100.64.20.0/24"))
    project = Project(root)
    yield project
    api.down(project)  # whatever a failing test left


def _assert_all_gone(state: lab_state.LabState) -> None:
    assert leftovers(state) == []
    assert not nspawn_pids(state.lab_id)
    assert lab_state.load(state_dir_of_project(state)) is None
    assert base_path().is_dir(), "down must keep the rootfs cache"


def state_dir_of_project(state: lab_state.LabState) -> Path:
    assert state.path is not None
    return state.path.parent.parent


def ssh_masters(state_dir: Path) -> list[int]:
    """The SSH masters this operator's commands left (`status` keeps one per node for the next one)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            # a master names itself `ssh: SOCKET [mux]` (its ControlPath's directory is in every socket's path)
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if proc.name.isdigit() and str(control_path(state_dir)).encode() in cmdline:
            found.append(int(proc.name))
    return found


def test_down_cleans_up_after_a_nodes_supervisor_was_killed(lab: Lab, second_project: Project) -> None:
    api.up(second_project, STAGE)
    state = lab_state.load(second_project.state_dir)
    assert state is not None and state.complete
    status = subprocess.run([sys.executable, "-m", "truckctl", "-C", str(second_project.root), "status", STAGE,
                             "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert status.returncode in (0, 1), status.stderr  # not converged: its units are not all running
    assert len(ssh_masters(second_project.state_dir)) == 6  # one per node, left for the next status
    victim = next(r for r in state.of_kind(lab_state.PROCESS) if r.name == "truck-a-hv1")
    os.kill(victim.data["pid"], signal.SIGKILL)
    time.sleep(0.5)
    assert nspawn_pids(state.lab_id), "the orphaned systemd-nspawn should still be running"
    status = api.status(second_project)
    assert not status["healthy"]
    result = api.down(second_project)
    assert result["was_up"] and result["seconds"] < 10
    _assert_all_gone(state)
    assert wait_for(lambda: not ssh_masters(second_project.state_dir), 5, "the SSH masters to end")


def test_down_cleans_up_an_up_killed_half_way(lab: Lab, second_project: Project) -> None:
    up = subprocess.Popen([sys.executable, "-m", "truckctl", "-C", str(second_project.root), "lab", "up", STAGE,
                           "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = lab_state.state_file(second_project.state_dir)

    def some_nodes_started() -> bool:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        return sum(r["kind"] == "process" and "pid" in r["data"] for r in data["resources"]) >= 3

    try:
        wait_for(some_nodes_started, 60, "the up to start nodes")
    finally:
        up.send_signal(signal.SIGKILL)
        up.wait()
    state = lab_state.load(second_project.state_dir)
    assert state is not None and not state.complete
    api.down(second_project)
    _assert_all_gone(state)
