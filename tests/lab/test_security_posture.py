"""Security posture of the converged nodes, verified from outside, beyond what test_truck_tier already
checks (sshd's effective settings, password login refused, the input policy, a few ports, the
bridge key's mode) and test_lab (the stand-in refuses a client without a certificate, and a truck's
publish outside its prefix).

Verified live, from the host:
- every TCP port (1-65535) of every node, scanned from the truck LAN: exactly the role's allow-list
  answers, all of it open; no other port answers at all (not even a RST: dropped);
- every UDP port of every node: only the role's allowed UDP ports answer (DNS and NTP on gateways);
- from the uplink (the carrier's side) no TCP or UDP port of a gateway answers, though ARP shows it
  is there; nor from an interface the firewall has never heard of (a veth added into a gateway's
  namespace, as a renamed or extra NIC would be): only the truck LAN's interfaces get the allow-list;
- SSH: root logs in with the lab's key; any other key is refused, for root and for the ops user;
- the stand-in's broker refuses a certificate signed by another CA (even one naming a truck), and
  gives a truck's valid certificate nothing of another truck's topics when it subscribes there;
- private keys are 0600 on the nodes (the WireGuard key is 0640, read by systemd-networkd through its
  group) and in the state directory (lab SSH key, host keys, PKI), whose private directories are 0700.
"""

from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.helpers import REPO
from tests.lab.harness import STAGE, Lab
from tests.lab.portscan import tcp_scan, udp_scan
from tests.lab.runs import ensure_converged
from truckctl.config.loader import load_stage
from truckctl.lab import state as lab_state
from truckctl.lab.pki import LabPki
from truckctl.lifecycle.arp import arp_scan, route_to

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def converged(lab: Lab) -> Lab:
    ensure_converged(lab)
    return lab


def allowed(lab: Lab, role: str) -> tuple[set[int], set[int]]:
    spec = load_stage(lab.project, STAGE).roles[role]
    return set(spec.allow_tcp), set(spec.allow_udp)


# ---- ports ---------------------------------------------------------------------------------------

def test_only_the_roles_ports_answer_from_the_truck_lan(converged: Lab) -> None:
    seen: dict[str, Any] = {}
    for node in converged.nodes:
        tcp_allowed, udp_allowed = allowed(converged, node.role)
        tcp = tcp_scan(node.address)
        udp = udp_scan(node.address)
        seen[node.name] = {"tcp": tcp, "udp": udp}
        assert tcp == dict.fromkeys(tcp_allowed, "open"), f"{node.name}: TCP ports answering: {tcp}"
        assert set(udp) <= udp_allowed, f"{node.name}: UDP ports answering outside the allow-list: {udp}"
        if node.role == "gateway":  # the services behind the allowed UDP ports answer proper requests
            assert udp == {53: "reply", 123: "reply"}, f"{node.name}: {udp}"
    print(f"\nports answering from the truck LAN: {json.dumps(seen, default=str)}")


def test_no_port_of_a_gateway_answers_from_the_uplink(converged: Lab) -> None:
    for gateway in [n for n in converged.nodes if n.uplink_address]:
        address = gateway.uplink_address or ""
        route = route_to(address)
        assert route is not None
        assert arp_scan(route[0], route[1], [address])[address], f"{gateway.name} is not on the uplink at all"
        assert tcp_scan(address) == {}, f"{gateway.name}: TCP ports answer on the uplink"
        assert udp_scan(address) == {}, f"{gateway.name}: UDP ports answer on the uplink"


PROBE = "192.0.2.1", "192.0.2.2"  # TEST-NET-1, only inside the gateway's and the probe's namespaces
SCAN = ("import json, sys; from tests.lab.portscan import tcp_scan, udp_scan; "
        "from truckctl.lifecycle.arp import arp_scan; a = sys.argv[1]; "
        "print(json.dumps({'arp': sorted(arp_scan('probe0', sys.argv[2], [a])[a]), "
        "'tcp': tcp_scan(a), 'udp': udp_scan(a)}))")


def test_no_port_of_a_gateway_answers_on_an_interface_it_was_not_configured_with(converged: Lab) -> None:
    gateway = next(n for n in converged.nodes if n.uplink_address)
    state = lab_state.load(converged.project.state_dir)
    assert state is not None
    gateway_ns = next(n.netns for n in state.plan.nodes if n.name == gateway.name)
    probe_ns = f"tlprobe-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", probe_ns], check=True)
    try:
        for argv in (["ip", "-n", probe_ns, "link", "add", "probe0", "type", "veth", "peer", "name", "extra0",
                      "netns", gateway_ns],
                     ["ip", "-n", gateway_ns, "addr", "add", f"{PROBE[0]}/30", "dev", "extra0"],
                     ["ip", "-n", gateway_ns, "link", "set", "extra0", "up"],
                     ["ip", "-n", probe_ns, "addr", "add", f"{PROBE[1]}/30", "dev", "probe0"],
                     ["ip", "-n", probe_ns, "link", "set", "probe0", "up"],
                     ["ip", "-n", probe_ns, "link", "set", "lo", "up"]):
            subprocess.run(argv, check=True)
        scan = subprocess.run(["ip", "netns", "exec", probe_ns, sys.executable, "-c", SCAN, PROBE[0], PROBE[1]],
                              capture_output=True, text=True, check=True, cwd=REPO, timeout=300)
        seen = json.loads(scan.stdout)
    finally:
        subprocess.run(["ip", "netns", "del", probe_ns], check=False)  # takes the veth pair with it
    # the control: the link works (ARP is below the firewall), the gateway is there
    assert seen["arp"], f"{gateway.name} does not answer ARP on extra0: the probe saw nothing at all"
    assert seen["tcp"] == {}, f"{gateway.name}: TCP ports answer on an unconfigured interface: {seen['tcp']}"
    assert seen["udp"] == {}, f"{gateway.name}: UDP ports answer on an unconfigured interface: {seen['udp']}"


# ---- SSH -------------------------------------------------------------------------------------------

def ssh_with(lab: Lab, key: Path, user: str, address: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
         "-o", "BatchMode=yes", "-o", "PasswordAuthentication=no", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={lab.connection.known_hosts}", "-o", "ConnectTimeout=10",
         f"{user}@{address}", "id -un"], capture_output=True, text=True, timeout=60, check=False)


def test_ssh_takes_the_authorized_key_only_for_root_and_the_ops_user(converged: Lab, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    ops_user = load_stage(converged.project, STAGE).ops_users[0].name
    lab_key = Path(converged.connection.private_key)
    for node in converged.nodes:
        ok = ssh_with(converged, lab_key, "root", node.address)
        assert (ok.returncode, ok.stdout.strip()) == (0, "root"), f"{node.name}: {ok.stderr}"
        for key, user in ((stranger, "root"), (stranger, ops_user), (lab_key, ops_user)):
            refused = ssh_with(converged, key, user, node.address)
            assert refused.returncode == 255, f"{node.name}: {user} got in with {key.name}"
            assert "Permission denied (publickey)" in refused.stderr, refused.stderr


# ---- the stand-in's broker ---------------------------------------------------------------------

class Client:
    """A TLS client of the stand-in with its own client id (never a truck's: that would take over the
    truck's bridge session)."""

    def __init__(self, lab: Lab, tmp: Path, name: str, cert: Path, key: Path) -> None:
        outputs = lab.cloud_outputs()
        ca = tmp / "lab-ca.pem"
        ca.write_text(outputs.ca_pem)
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"posture-{name}-{os.getpid()}")
        self.client.tls_set_context(context)
        self.accepted = threading.Event()
        self.received: list[str] = []
        self.granted: list[Any] = []
        self.client.on_connect = lambda c, u, f, reason, p: self.accepted.set() if reason == 0 else None
        self.client.on_message = lambda c, u, message: self.received.append(message.topic)
        self.client.on_subscribe = lambda c, u, mid, reasons, p: self.granted.extend(reasons)
        self.host, self.port = outputs.mqtt_host, outputs.mqtt_port

    def connect(self, timeout: float = 10) -> bool:
        try:
            self.client.connect(self.host, self.port, keepalive=10)
        except (OSError, ssl.SSLError):
            return False
        self.client.loop_start()
        return self.accepted.wait(timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def truck_client(lab: Lab, tmp: Path, truck: str, made: list[Client], role: str = "") -> Client:
    access = lab.cloud_outputs().trucks[truck]
    cert, key = tmp / f"{truck}.pem", tmp / f"{truck}.key"
    cert.write_text(access.certificate_pem)
    key.touch(mode=0o600)
    key.write_text(access.private_key_pem.get_secret_value())
    client = Client(lab, tmp, f"{truck}{role}", cert, key)
    made.append(client)
    return client


def test_the_broker_refuses_a_certificate_from_another_ca_even_naming_a_truck(converged: Lab, tmp_path: Path,
                                                                           clients: list[Client]) -> None:
    forged = LabPki(tmp_path / "forged-pki")  # a CA of its own, issuing a certificate that names truck-a
    issued = forged.ensure_client("truck-truck-a", converged.cloud_outputs().trucks["truck-a"].client_id)
    impostor = Client(converged, tmp_path, "impostor", issued.cert, issued.key)
    clients.append(impostor)
    assert not impostor.connect(timeout=5), "a certificate from a foreign CA was accepted"
    genuine = truck_client(converged, tmp_path, "truck-a", clients)
    assert genuine.connect(), "the control: truck-a's own certificate is accepted"


def test_a_truck_certificate_reads_nothing_of_another_trucks_topics(converged: Lab, tmp_path: Path,
                                                                   clients: list[Client]) -> None:
    outputs = converged.cloud_outputs()
    spy = truck_client(converged, tmp_path, "truck-a", clients)
    owner = truck_client(converged, tmp_path, "truck-b", clients, "-publisher")
    listener = truck_client(converged, tmp_path, "truck-b", clients, "-listener")  # the control
    assert spy.connect() and owner.connect() and listener.connect()
    topic = f"{outputs.trucks['truck-b'].topic_prefix}/telemetry/posture/{os.getpid()}"
    for client in (spy, listener):
        client.client.subscribe(topic, qos=1)
    deadline = time.monotonic() + 10
    while len(spy.granted) + len(listener.granted) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    owner.client.publish(topic, json.dumps({"seq": 1}), qos=1).wait_for_publish(10)
    deadline = time.monotonic() + 10
    while not listener.received and time.monotonic() < deadline:
        time.sleep(0.1)
    assert listener.received == [topic], "the control: truck-b reads its own topic"
    time.sleep(1)  # had truck-a been allowed to read, its copy would have come with truck-b's
    assert spy.received == [], f"truck-a's certificate read truck-b's telemetry: {spy.received}"
    print(f"\nSUBACK for truck-a on truck-b's topic: {[str(r) for r in spy.granted]}")


# ---- key files ---------------------------------------------------------------------------------

NODE_KEYS = ("{ find /etc/ssh /root/.ssh /home /etc/mosquitto /etc/systemd/network /usr/local/lib/truckctl "
             "-type f \\( -name '*key' -o -name '*.key' -o -name 'id_*' \\) ! -name '*.pub' 2>/dev/null; "
             "grep -rlIE '^-----BEGIN ([A-Z0-9]+ )?PRIVATE KEY-----' /etc /root /home /usr/local/lib/truckctl "
             "/var/lib/mosquitto 2>/dev/null; } "
             "| sort -u | xargs -r stat -c '%a %U %G %n'")
GROUP_READ = {"/etc/systemd/network/wg-mgmt.key": "systemd-network"}  # networkd reads it through its group


def test_private_keys_on_the_nodes_are_0600(converged: Lab) -> None:
    for node in converged.nodes:
        code, out = converged.ssh(node.address, NODE_KEYS)
        assert code == 0, out
        keys = [line.split(" ", 3) for line in out.splitlines()]
        assert any(path.startswith("/etc/ssh/ssh_host_") for *_, path in keys), f"{node.name}: no key found: {out}"
        for mode, owner, group, path in keys:
            expected = ("640", GROUP_READ[path]) if path in GROUP_READ else ("600", group)
            assert (mode, group) == expected, f"{node.name}: {path} is {mode} {owner}:{group}"
        code, out = converged.ssh(node.address, "stat -c '%a %U' /root/.ssh /root/.ssh/authorized_keys")
        assert out.splitlines() == ["700 root", "600 root"], f"{node.name}: {out}"


def test_private_keys_in_the_state_directory_are_0600_in_0700_directories(converged: Lab) -> None:
    state = converged.project.state_dir
    lab_dir = state / "lab"
    skip = {lab_dir / "nodes", lab_dir / "acng"}  # the nodes' own disks, the apt cache's files
    keys: list[Path] = []
    for directory, dirs, files in os.walk(state):
        dirs[:] = [d for d in dirs if Path(directory, d) not in skip]
        for name in files:
            path = Path(directory, name)
            if path.is_symlink() or not path.is_file():
                continue
            with open(path, "rb") as handle:
                head = handle.read(4096)
            pem_key = b"-----BEGIN" in head and b"PRIVATE KEY-----" in head
            if name.endswith((".key", "_key")) or name == "id_ed25519" or pem_key:
                keys.append(path)
    assert {p.name for p in keys} >= {"id_ed25519", "ca.key", "ssh_host_ed25519_key"}, keys
    for path in keys:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path} is {oct(path.stat().st_mode)}"
        assert path.parent.is_relative_to(lab_dir), f"private key material outside lab/: {path}"
    private_dirs = [lab_dir, lab_dir / "ssh", lab_dir / "pki", *(lab_dir / "hostkeys").iterdir(),
                    *(p for p in (state / "runs").iterdir() if p.is_dir()), state / "truck" / "artifacts"]
    for directory in private_dirs:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, f"{directory} is {oct(directory.stat().st_mode)}"
