"""The cloud stand-in abused from a truck's seat: commands run inside truck-a's gateway over SSH, holding
what a compromised gateway holds (truck-a's client certificate and key, as its MQTT bridge does).

- no client certificate (or plain HTTP): no service;
- truck-a reads only its own status and alerts, and cannot post an alert about truck-b;
- a negative Content-Length is refused and the service keeps serving;
- a flood of invented heartbeat node names (and of truck-a's own alerts) grows no state and evicts no alarm;
- a slow sender and an idle connection are cut by the connection deadline;
- the API listens on the stand-in's uplink address only;
- a link planted in the stand-in's root is replaced, not followed, when revocation rewrites the CRL.
"""

from __future__ import annotations

import json
import os
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.harness import Lab, wait_for
from tests.lab.runs import ensure_converged
from tests.lab.test_lab import Mqtt
from truckctl.cloud.outputs import heartbeat_topic
from truckctl.lab import faults, standin
from truckctl.lab.node import merged_dir
from truckctl.lab.paths import LabPaths
from truckctl.lab.pki import LabPki
from truckctl.lab.plan import STANDIN_HTTP_PORT
from truckctl.lab.state import load
from truckctl.remote import ssh_run

pytestmark = pytest.mark.lab

SEAT = "/root/standin-abuse"

# Runs on the gateway (Debian's python3, stdlib only): one abuse per argv[1], a JSON answer.
ABUSE = textwrap.dedent('''
    import json, socket, ssl, sys, time
    host, port, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    seat = "/root/standin-abuse"

    def context(cert=True):
        c = ssl.create_default_context(cafile=seat + "/ca.pem")
        if cert:
            c.load_cert_chain(seat + "/truck.pem", seat + "/truck.key")
        return c

    def call(request, cert=True):
        try:
            with socket.create_connection((host, port), timeout=10) as plain, \\
                    context(cert).wrap_socket(plain, server_hostname=host) as conn:
                conn.sendall(request)
                data = b""
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except (OSError, ssl.SSLError) as exc:
            return {"refused": type(exc).__name__}
        head, _, body = data.partition(b"\\r\\n\\r\\n")
        status = int(head.split()[1]) if head.startswith(b"HTTP/") else None
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        return {"status": status, "body": document}

    def get(path, cert=True):
        return call(("GET %s HTTP/1.1\\r\\nHost: s\\r\\n\\r\\n" % path).encode(), cert)

    def post(path, body, length=None):
        raw = json.dumps(body).encode()
        return call(("POST %s HTTP/1.1\\r\\nHost: s\\r\\nContent-Type: application/json\\r\\n"
                     "Content-Length: %s\\r\\n\\r\\n" % (path, len(raw) if length is None else length)).encode() + raw)

    def plain_http():
        try:
            with socket.create_connection((host, port), timeout=10) as conn:
                conn.sendall(b"GET /status HTTP/1.1\\r\\nHost: s\\r\\n\\r\\n")
                return {"answer": conn.recv(100).decode("latin-1")}
        except OSError as exc:
            return {"answer": "", "error": type(exc).__name__}

    def slow(drips):
        with socket.create_connection((host, port), timeout=10) as plain, \\
                context().wrap_socket(plain, server_hostname=host) as conn:
            conn.sendall(b"GET /status HTTP/1.1\\r\\n")
            conn.settimeout(0.5)
            for sent in range(drips):
                try:
                    conn.sendall(b"X")
                    if conn.recv(1) == b"":
                        return {"cut_after_drips": sent}
                except socket.timeout:
                    continue
                except (OSError, ssl.SSLError):
                    return {"cut_after_drips": sent}
        return {"cut_after_drips": None}

    def idle():
        with socket.create_connection((host, port), timeout=60) as conn:
            try:
                return {"closed": conn.recv(1) == b""}
            except OSError as exc:
                return {"closed": True, "error": type(exc).__name__}

    if what == "unauthenticated":
        out = {"no_cert": get("/status", cert=False), "plain_http": plain_http()}
    elif what == "own-data":
        out = {"status": get("/status"), "alerts": get("/alerts"),
               "forged": post("/alerts", {"alarm": "forged-fire", "truck": "truck-b"}),
               "own": post("/alerts", {"alarm": "gateway-own-alert"})}
    elif what == "negative-length":
        out = {"negative": post("/alerts", {"alarm": "x" * 100}, length=-1),
               "after": get("/healthz")}
    elif what == "alert-flood":
        out = {"posted": sum(post("/alerts", {"alarm": "flood-%d" % i}).get("status") == 202 for i in range(400))}
    elif what == "slow":
        out = slow(200)
    elif what == "idle":
        out = idle()
    print(json.dumps(out))
''')


def on_gateway(lab: Lab, what: str, timeout: float = 120) -> Any:
    gateway = lab.node("truck-a-gw")
    command = f"python3 {SEAT}/abuse.py {lab.standin_address} {STANDIN_HTTP_PORT} {what}"
    code, out = ssh_run(lab.connection, gateway.address, command, timeout=timeout)
    assert code == 0, out
    return json.loads(out.splitlines()[-1])


def _heredoc(path: str, text: str) -> str:
    marker = "TRUCKCTL_EOF"
    assert marker not in text
    return f"cat > {path} <<'{marker}'\n{text}\n{marker}\n"


@pytest.fixture(scope="module")
def seat(lab: Lab) -> Iterator[None]:
    """truck-a's gateway holds truck-a's certificate and key (as its bridge does) and the abuse script."""
    outputs = lab.cloud_outputs()
    access = outputs.trucks["truck-a"]
    script = (f"umask 077; mkdir -p {SEAT}\n" + _heredoc(f"{SEAT}/ca.pem", outputs.ca_pem.strip())
              + _heredoc(f"{SEAT}/truck.pem", access.certificate_pem.strip())
              + _heredoc(f"{SEAT}/truck.key", access.private_key_pem.get_secret_value().strip())
              + _heredoc(f"{SEAT}/abuse.py", ABUSE))
    code, out = lab.ssh(lab.node("truck-a-gw").address, script)
    assert code == 0, out
    yield
    lab.ssh(lab.node("truck-a-gw").address, f"rm -rf {SEAT}")


def test_no_client_certificate_no_service(lab: Lab, seat: None) -> None:
    answer = on_gateway(lab, "unauthenticated")
    assert "refused" in answer["no_cert"], answer  # the TLS handshake fails without a certificate
    assert not answer["plain_http"]["answer"].startswith("HTTP/1.0 200"), answer


def test_a_truck_sees_and_writes_only_its_own_data(lab: Lab, seat: None) -> None:
    answer = on_gateway(lab, "own-data")
    assert answer["status"]["status"] == 200 and set(answer["status"]["body"]["trucks"]) == {"truck-a"}
    assert "refused" not in answer["status"]["body"]  # truckctl's counters are not the truck's to read
    # an alarm names its truck; an incident notification names it in its incident
    assert all((a["body"].get("incident") or a["body"]).get("truck") == "truck-a"
               for a in answer["alerts"]["body"]["alerts"]), answer["alerts"]
    assert answer["forged"]["status"] == 403
    assert answer["own"]["status"] == 202
    everything = lab.standin("/alerts")["alerts"]
    assert not any(a["body"].get("alarm") == "forged-fire" for a in everything if isinstance(a["body"], dict))
    mine = [a for a in everything if isinstance(a["body"], dict) and a["body"].get("alarm") == "gateway-own-alert"]
    assert mine and mine[-1]["body"]["truck"] == "truck-a" and mine[-1]["poster"] == "truck-a"


def test_a_negative_content_length_is_refused_and_the_service_keeps_serving(lab: Lab, seat: None) -> None:
    answer = on_gateway(lab, "negative-length")
    assert answer["negative"]["status"] == 400, answer
    assert answer["after"]["status"] == 200 and answer["after"]["body"]["ok"] is True
    assert lab.standin("/healthz")["ok"] is True


def test_invented_heartbeat_nodes_grow_nothing_and_evict_no_alarm(lab: Lab, seat: None, tmp_path: Path) -> None:
    """A real alarm first (truck-a-hv2 falls silent), then truck-a floods heartbeats of invented nodes and
    alerts of its own: the heartbeat table keeps truck-a's configured nodes, the drops are counted, the
    alarm stays listed."""
    ensure_converged(lab)  # the heartbeats and the gateway's broker and firewall (the drill) must be there
    outputs = lab.cloud_outputs()
    race = outputs.trucks["truck-a"].topic_prefix.split("/")[0]
    hv2 = lab.node("truck-a-hv2")
    _, was = lab.ssh(hv2.address, "systemctl is-active truck-heartbeat; systemctl stop truck-heartbeat; true")
    # The test speaks as truck-a (its certificate and client id): its gateway's bridge, reconnecting, would
    # take the session back and forth with it; the bridge-stop drill keeps the bridge away meanwhile.
    client = Mqtt(outputs, tmp_path, "truck-a")
    faults.start(lab.project, "bridge-stop", "truck-a")
    try:
        assert client.connect(), "the stand-in refused truck-a's certificate"
        after = max([a["index"] for a in lab.standin("/alerts")["alerts"]], default=-1)
        client.publish(f"{heartbeat_topic(race, 'truck-a')}/{hv2.name}", {"node": hv2.name})
        stale = lab.standin("/status")["stale_after_s"]

        def alarm() -> Any:
            return [a for a in lab.standin("/alerts")["alerts"] if a["index"] > after and a["source"] == "standin"
                    and a["body"].get("node") == hv2.name and a["body"]["alarm"] == "heartbeat-missing"]

        raised = wait_for(alarm, stale + 20, f"a heartbeat-missing alarm for {hv2.name}")[0]
        before = lab.standin("/status")["trucks"]["truck-a"]
        for i in range(3000):
            client.client.publish(f"{heartbeat_topic(race, 'truck-a')}/invented-{os.getpid()}-{i}", "{}", qos=0)
        client.publish(heartbeat_topic(race, "truck-a"), {"node": f"payload-invented-{os.getpid()}"})
        flood = on_gateway(lab, "alert-flood")
        assert flood["posted"] == 400

        def dropped() -> Any:
            now = lab.standin("/status")["trucks"]["truck-a"]
            return now if now["counts"]["heartbeat_dropped"] >= before["counts"]["heartbeat_dropped"] + 3001 else None

        now = wait_for(dropped, 60, "the invented heartbeats, dropped and counted")
        assert set(now["heartbeats"]) == set(before["heartbeats"]) == {"truck-a-gw", "truck-a-hv1", "truck-a-hv2"}
        assert raised in lab.standin("/alerts")["alerts"]  # the real alarm outlives the flood
    finally:
        client.close()
        faults.clear(lab.project, "bridge-stop", "truck-a")
        if was.startswith("active"):
            lab.ssh(hv2.address, "systemctl start truck-heartbeat")


def test_a_slow_sender_and_an_idle_connection_are_cut(lab: Lab, seat: None) -> None:
    cut_before = lab.standin("/status")["refused"]["cut"]
    slow = on_gateway(lab, "slow", timeout=180)
    assert slow["cut_after_drips"] is not None, "a slow sender kept its connection for 200 drips"
    assert lab.standin("/status")["refused"]["cut"] > cut_before  # by the whole-connection deadline
    assert on_gateway(lab, "idle", timeout=120)["closed"] is True  # no handshake at all: the socket timeout


def test_the_api_listens_on_the_uplink_address_only(lab: Lab) -> None:
    code, out = lab.ssh(lab.standin_address, f"ss -Htln 'sport = :{STANDIN_HTTP_PORT}'")
    assert code == 0, out
    listening = {line.split()[3] for line in out.splitlines()}
    assert listening == {f"{lab.standin_address}:{STANDIN_HTTP_PORT}"}, listening


def test_the_crl_write_replaces_a_link_planted_in_the_standin_instead_of_writing_through_it(lab: Lab) -> None:
    """A compromised stand-in plants links at the files revocation rewrites (the CRL, the broker's config)
    pointing at a host file (a temp file of this test): the write revocation makes (`truckctl down`,
    `revoke_truck`) replaces the links and leaves that file alone. No truck is revoked here."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("host file: must stay as it is\n")
    host_file = Path(handle.name)
    os.chmod(host_file, 0o600)
    state = load(lab.project.state_dir)
    assert state is not None
    paths = LabPaths(lab.project.state_dir)
    try:
        before = host_file.stat()
        code, out = lab.ssh(lab.standin_address, f"ln -sfn {host_file} /etc/mosquitto/certs/crl.pem && "
                            f"ln -sfn {host_file} /etc/mosquitto/mosquitto.conf")
        assert code == 0, out
        standin.write_revocations(merged_dir(paths.root, state.plan.standin), state.plan, LabPki(paths.pki))
        after = host_file.stat()
        assert host_file.read_text() == "host file: must stay as it is\n"
        assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid, before.st_gid)
        code, out = lab.ssh(lab.standin_address, "test ! -L /etc/mosquitto/mosquitto.conf && "
                            "test ! -L /etc/mosquitto/certs/crl.pem && grep -c crlfile /etc/mosquitto/mosquitto.conf")
        assert code == 0 and out.strip() == "1", out
    finally:
        host_file.unlink()
