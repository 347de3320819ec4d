"""The truck tier on the lab, stage-1 (6 nodes): converge, converge again (0 changed), check mode
(0 changed), then verify from outside the nodes.

Verified live: SSH refuses passwords; no daemon ran with its package's configuration; the nftables
ruleset is loaded with input policy drop and only allowed ports answer; chrony, node exporter,
heartbeat (all nodes), Mosquitto and dnsmasq (gateways) are active, dnsmasq answers DNS for the
truck's names; a message published to a truck's broker reaches the cloud stand-in, also when sent
while the uplink is down; heartbeats of every node arrive every few seconds; no secret in stdout,
runner artifacts, run journal or node journals.
Verified as rendered-and-checked files only: the systemd-networkd LAN/VLAN/WireGuard files (the
lab's kernel has no VLAN or WireGuard module and networkd must not take over the nodes' eth0,
so networkd stays off in the lab: `network_activate` is false on the lab target).
"""

from __future__ import annotations

import functools
import json
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from typer.testing import CliRunner

from tests.lab.harness import STAGE, Lab, wait_for
from truckctl.cli.app import app
from truckctl.config.loader import load_stage
from truckctl.lab import api
from truckctl.target import Tier
from truckctl.targets.lab import LabTarget
from truckctl.truck.tier import UpCallbacks, UpRequest, truck_tier

pytestmark = pytest.mark.lab

NODES = ["truck-a-gw", "truck-a-hv1", "truck-a-hv2", "truck-b-gw", "truck-b-hv1", "truck-b-hv2"]


@dataclass
class Runs:
    first: dict[str, Any]
    second: dict[str, Any]
    check: dict[str, Any]
    stdout: str
    seconds: dict[str, float]


def cli_up(project_dir: str, *extra: str) -> tuple[dict[str, Any], str, float]:
    started = time.monotonic()
    result = CliRunner().invoke(app, ["-C", project_dir, "up", STAGE, "--target", "lab", "--tier", "truck",
                                      "--json", *extra])
    elapsed = time.monotonic() - started
    document = json.loads(result.stdout)
    assert result.exit_code == 0, json.dumps(document["errors"], indent=1)
    return document, result.stdout + result.stderr, elapsed


@pytest.fixture(scope="module")
def runs(lab: Lab) -> Runs:
    first, out1, t1 = cli_up(str(lab.project.root))
    second, out2, t2 = cli_up(str(lab.project.root))
    started = time.monotonic()
    stage = load_stage(lab.project, STAGE)
    target = LabTarget(lab.project)
    check = {"truck": truck_tier(lab.project, stage, UpRequest(STAGE, target.kind, Tier.truck, check=True),
                                 target.connection(stage), target.cloud_outputs(stage), UpCallbacks()).as_dict()}
    t3 = time.monotonic() - started
    seconds = {"first run": round(t1, 1), "idempotent re-run": round(t2, 1), "check mode": round(t3, 1)}
    print(f"\ntruck tier on the lab, {STAGE}, {len(NODES)} nodes: {seconds}")
    return Runs(first["result"], second["result"], check, out1 + out2, seconds)




def gateways(lab: Lab) -> list[api.LabNode]:
    return [n for n in lab.nodes if n.role == "gateway"]


# ---- runs ------------------------------------------------------------------------------------

def test_first_run_converges_every_node(runs: Runs) -> None:
    truck = runs.first["truck"]
    assert truck["ok"] and truck["status"] == "successful"
    assert sorted(truck["hosts"]) == NODES
    for name, stats in truck["hosts"].items():
        assert stats["failed"] == 0 and stats["unreachable"] == 0, name
        assert stats["ok"] > 0, name


def test_second_run_changes_nothing_on_any_node(runs: Runs) -> None:
    hosts = runs.second["truck"]["hosts"]
    assert sorted(hosts) == NODES
    assert {name: stats["changed"] for name, stats in hosts.items()} == dict.fromkeys(NODES, 0)
    assert runs.second["truck"]["changes"] == []


def test_check_mode_after_converging_reports_no_change(runs: Runs) -> None:
    truck = runs.check["truck"]
    assert truck["check"] is True and truck["ok"]
    assert {name: stats["changed"] for name, stats in truck["hosts"].items()} == dict.fromkeys(NODES, 0)
    assert truck["changes"] == []


# ---- hardening -------------------------------------------------------------------------------

def test_sshd_refuses_password_login(lab: Lab, runs: Runs) -> None:
    for node in lab.nodes:
        code, out = lab.ssh(node.address, "sshd -T | grep -E '^(passwordauthentication|kbdinteractiveauthentication|"
                                          "permitrootlogin|authenticationmethods) '")
        assert code == 0, out
        settings = dict(line.split(" ", 1) for line in out.splitlines())
        assert settings == {"passwordauthentication": "no", "kbdinteractiveauthentication": "no",
                            "permitrootlogin": "without-password", "authenticationmethods": "publickey"}, node.name
    node = lab.node("truck-a-hv1")
    proc = subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", "PreferredAuthentications=password,keyboard-interactive",
         "-o", "PubkeyAuthentication=no", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={lab.connection.known_hosts}", "-o", "ConnectTimeout=5",
         f"root@{node.address}", "true"], capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 255
    assert "Permission denied (publickey)" in proc.stderr  # the server offers nothing but keys


def test_firewall_drops_by_default_and_opens_only_the_role_ports(lab: Lab, runs: Runs) -> None:
    for node in lab.nodes:
        code, out = lab.ssh(node.address, "nft -j list chain inet truckctl input")
        assert code == 0, out
        chain = next(item["chain"] for item in json.loads(out)["nftables"] if "chain" in item)
        assert (chain["hook"], chain["policy"]) == ("input", "drop"), node.name
    member, gateway = lab.node("truck-a-hv1"), lab.node("truck-a-gw")
    assert port_state(member.address, 22) == "open" and port_state(member.address, 9100) == "open"
    assert port_state(gateway.address, 1883) == "open" and port_state(gateway.address, 53) == "open"
    # Closed ports do not even refuse: the packet is dropped. 1883 is a gateway-only port.
    assert port_state(member.address, 1883) == "filtered"
    assert port_state(member.address, 8080) == "filtered"
    assert port_state(gateway.address, 9999) == "filtered"


def port_state(address: str, port: int) -> str:
    with socket.socket() as sock:
        sock.settimeout(1.5)
        try:
            sock.connect((address, port))
        except TimeoutError:
            return "filtered"
        except ConnectionRefusedError:
            return "refused"
        return "open"


# ---- services --------------------------------------------------------------------------------

def test_services_are_active(lab: Lab, runs: Runs) -> None:
    for node in lab.nodes:
        units = ["nftables", "chrony", "prometheus-node-exporter", "truck-heartbeat"]
        if node.role == "gateway":
            units += ["mosquitto", "dnsmasq"]
        _, out = lab.ssh(node.address, f"systemctl is-active {' '.join(units)}")
        assert dict(zip(units, out.split(), strict=True)) == dict.fromkeys(units, "active"), node.name


def test_no_daemon_ever_ran_with_its_packages_own_configuration(lab: Lab, runs: Runs) -> None:
    """The packages go in with Debian's policy-rc.d saying no (roles/common): each daemon's first start this
    boot comes after its role wrote its configuration, never with the package's defaults before it."""
    for node in lab.nodes:
        daemons = {"chrony": "/etc/chrony/chrony.conf"}
        if node.role == "gateway":
            daemons |= {"mosquitto": "/etc/mosquitto/mosquitto.conf", "dnsmasq": "/etc/dnsmasq.d/truckctl.conf"}
        for unit, conf in daemons.items():
            code, out = lab.ssh(node.address, f"stat -c %Y {conf} && journalctl -b -u {unit}.service -o short-unix "
                                              "--no-pager | grep -m1 ' Starting '")
            assert code == 0, f"{node.name} {unit}: {out}"
            written, started = int(out.split()[0]), float(out.split()[1])
            assert started >= written, f"{node.name}: {unit} started {written - started:.0f} s before its configuration"


def test_chrony_runs_without_clock_control_and_members_follow_their_gateway(lab: Lab, runs: Runs) -> None:
    for node in lab.nodes:
        code, out = lab.ssh(node.address, "ps -o args= -C chronyd; chronyc -n sources")
        assert code == 0, out
        assert " -x" in out.splitlines()[0], f"{node.name}: chronyd must not steer the lab's clock"
        if node.role != "gateway":
            gateway = next(n for n in gateways(lab) if n.truck == node.truck)
            assert gateway.address in out, f"{node.name} does not use its gateway for time"


def test_dnsmasq_answers_for_the_trucks_names(lab: Lab, runs: Runs) -> None:
    for gateway in gateways(lab):
        member = next(n for n in lab.nodes if n.truck == gateway.truck and n.role != "gateway")
        assert dns_a_record(gateway.address, member.name) == member.address


def dns_a_record(server: str, name: str) -> str | None:
    """A minimal DNS A query over UDP (no dig on the host)."""
    query = struct.pack(">HHHHHH", 0x7242, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(query, (server, 53))
        reply = sock.recv(512)
    answers = struct.unpack(">H", reply[6:8])[0]
    if not answers:
        return None
    record = reply[len(query):]  # the answer follows the echoed question: name pointer, type, class, ttl, len
    rdlength = struct.unpack(">H", record[10:12])[0]
    return socket.inet_ntoa(record[12:12 + rdlength]) if rdlength == 4 else None


# ---- telemetry and heartbeats ----------------------------------------------------------------

@pytest.fixture
def publish(lab: Lab) -> Iterator[Callable[[str, str, str], None]]:
    """Publish (QoS 1) to a gateway's broker on the truck LAN, as a transponder would."""
    clients: list[mqtt.Client] = []

    def send(address: str, topic: str, payload: str) -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"transponder-{time.time_ns()}")
        client.connect(address, 1883, keepalive=10)
        client.loop_start()
        clients.append(client)
        client.publish(topic, payload, qos=1).wait_for_publish(5)

    yield send
    for client in clients:
        client.loop_stop()
        client.disconnect()


def telemetry(lab: Lab, truck: str) -> dict[str, Any]:
    return dict(lab.standin("/status")["trucks"][truck]["telemetry"])


def test_telemetry_published_on_the_truck_reaches_the_cloud_standin(lab: Lab, runs: Runs, publish: Any) -> None:
    for gateway in gateways(lab):
        wait_for(functools.partial(bridge_connected, lab, gateway), 30, f"{gateway.name}'s bridge to connect")
        payload = json.dumps({"rider": 42, "speed_kmh": 51.3, "truck": gateway.truck, "ts": time.time()})
        publish(gateway.address, "telemetry/rider/42", payload)

        # The lab's simulated feed publishes beside it: find this reading among the recent ones.
        def arrived(truck: str = gateway.truck, marker: str = payload) -> str | None:
            seen = telemetry(lab, truck)
            return next((topic for topic, body in zip(seen["recent_topics"], seen["recent_payloads"], strict=True)
                         if body == marker), None)

        topic = wait_for(arrived, 20, f"telemetry of {gateway.truck} at the stand-in")
        prefix = lab.cloud_outputs().trucks[gateway.truck].topic_prefix
        assert topic == f"{prefix}/telemetry/rider/42"


def bridge_connected(lab: Lab, gateway: api.LabNode) -> bool:
    code, out = lab.ssh(gateway.address, "ss -Htn state established '( dport = :8883 )' | wc -l")
    return code == 0 and out.strip() != "0"


def test_telemetry_sent_while_the_uplink_is_down_arrives_when_it_is_back(lab: Lab, runs: Runs,
                                                                       publish: Any) -> None:
    gateway = lab.node("truck-b-gw")
    wait_for(lambda: bridge_connected(lab, gateway), 30, "truck-b-gw's bridge to connect")
    before = telemetry(lab, "truck-b")["count"]
    api.set_uplink(lab.project, "truck-b", False)
    try:
        for seq in range(5):
            publish(gateway.address, f"telemetry/rider/{seq}", json.dumps({"rider": seq, "seq": seq}))
        time.sleep(2)
        assert telemetry(lab, "truck-b")["count"] == before, "messages crossed a pulled cable"
    finally:
        api.set_uplink(lab.project, "truck-b", True)
    wait_for(lambda: telemetry(lab, "truck-b")["count"] >= before + 5, 60,
             "the 5 messages queued on truck-b-gw to reach the stand-in")


def test_heartbeats_of_every_node_arrive_every_few_seconds(lab: Lab, runs: Runs) -> None:
    interval = 5  # telemetry.heartbeat_interval_s of the example race

    def heartbeats() -> dict[str, dict[str, Any]]:
        trucks = lab.standin("/status")["trucks"]
        return {node: seen for truck in trucks.values() for node, seen in truck["heartbeats"].items()}

    def all_nodes_seen() -> dict[str, dict[str, Any]] | None:
        seen = heartbeats()
        return seen if set(NODES) <= set(seen) else None

    first = wait_for(all_nodes_seen, 30, "a heartbeat from every node")
    time.sleep(2 * interval + 1)
    later = heartbeats()
    for node in NODES:
        assert later[node]["count"] >= first[node]["count"] + 2, f"{node}: heartbeats are not regular"
        assert later[node]["age_s"] <= interval + 2, f"{node}: last heartbeat {later[node]['age_s']} s old"
        assert json.loads(later[node]["last_payload"])["node"] == node


# ---- network and vpn files (rendered and checked, not activated in the lab) ------------------

def test_networkd_vlan_and_vpn_files_are_rendered_and_valid_but_not_active(lab: Lab, runs: Runs) -> None:
    for node in lab.nodes:
        check = "/usr/local/lib/truckctl/networkd-check"
        files = ["10-truckctl-lan.network", *(f"20-truckctl-vlan{v}.{k}" for v in (110, 120, 130)
                                              for k in ("netdev", "network"))]
        if node.role == "gateway":
            files += ["30-truckctl-uplink.network", "90-truckctl-vpn.netdev", "90-truckctl-vpn.network"]
        script = "; ".join(f"{check} /etc/systemd/network/{f} || echo BAD {f}" for f in files)
        code, out = lab.ssh(node.address, f"{script}; cat /etc/systemd/network/20-truckctl-vlan110.*; "
                                          "systemctl is-active systemd-networkd; ip -o link show type vlan | wc -l")
        assert code in (0, 3), out  # is-active exits 3 for inactive
        assert "BAD" not in out, f"{node.name}: {out}"
        assert "Kind=vlan" in out and "Id=110" in out
        lan_prefix = node.address.rsplit(".", 2)[0]
        assert f"Address={lan_prefix}.10.{node.address.rsplit('.', 1)[1]}/24" in out
        # The lab's kernel cannot create VLANs and networkd must not take over eth0: not activated.
        assert out.splitlines()[-2:] == ["inactive", "0"], f"{node.name}: {out}"
    gateway = lab.node("truck-a-gw")
    code, out = lab.ssh(gateway.address, "cat /etc/systemd/network/90-truckctl-vpn.netdev; "
                                         "stat -c '%a %G' /etc/systemd/network/wg-mgmt.key")
    cloud = lab.cloud_outputs()
    assert f"Endpoint={cloud.vpn_endpoint}" in out and f"PublicKey={cloud.vpn_public_key}" in out
    assert out.splitlines()[-1] == "640 systemd-network"


# ---- secrets ---------------------------------------------------------------------------------

def secret_fragments(lab: Lab) -> list[str]:
    """Each private key's base64 body lines: any one of them found anywhere is a leak."""
    fragments = []
    for secret in lab.cloud_outputs().secret_values():
        fragments += [line for line in secret.splitlines() if line and not line.startswith("-----")]
    assert fragments
    return fragments


def test_the_key_on_the_gateway_is_private(lab: Lab, runs: Runs) -> None:
    for gateway in gateways(lab):
        code, out = lab.ssh(gateway.address, "stat -c '%a %U' /etc/mosquitto/bridge/truck.key")
        assert (code, out) == (0, "600 mosquitto")


def test_no_secret_in_stdout_artifacts_journal_or_node_journals(lab: Lab, runs: Runs) -> None:
    fragments = secret_fragments(lab)
    state = lab.project.state_dir
    scanned: dict[str, str] = {"stdout of the runs": runs.stdout}
    places = [state / "truck", state / "runs"]
    for place in places:
        for path in place.rglob("*") if place.exists() else []:
            if path.is_file():
                scanned[str(path)] = path.read_bytes().decode("utf-8", "replace")
    assert any("artifacts" in name and name.endswith("stdout") for name in scanned), "no runner artifacts found"
    assert not list((state / "truck" / "work").iterdir()), "a run's private data dir was left behind"
    for node in lab.nodes:
        code, out = lab.ssh(node.address, "journalctl --no-pager -o cat -q")
        assert code == 0
        scanned[f"journal of {node.name}"] = out
    leaks = sorted({name for name, text in scanned.items() for fragment in fragments if fragment in text})
    assert leaks == [], f"private key material found in: {leaks}"
