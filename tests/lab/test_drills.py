"""Every drill of `truckctl lab fault`, for real on the lab: its effect, the gateway agent's evidence, its undoing.

Verified live, per drill: the drill's real effect (seen from the host, the node or the stand-in, never from
the agent), the evidence the gateway's truck-ops-agent writes to /run/truck-ops/evidence.json (read over SSH)
reflecting it, then `clear` restoring both. Also: the evidence reaches the stand-in over the agent's own
TLS connection (a subscriber on the stand-in's local broker records what arrives); the documents written
while the cable is pulled arrive after it is plugged back, in order; an impostor is in `conflicts` within
2 s (the agent's detection time against the end of the drill command: containers share the host's clock);
a bad target changes nothing; `lab down` removes the active drills (namespaces, links, the CRL entry).

ORDER: the last test takes the lab down and brings it up again (unconverged): later lab tests converge it
with `ensure_converged`.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.harness import STAGE, Lab, wait_for
from tests.lab.runs import ensure_converged, truckctl
from truckctl.lab import api, faults, network
from truckctl.lab import state as lab_state
from truckctl.lab.paths import LabPaths
from truckctl.lab.pki import LabPki
from truckctl.lifecycle.arp import arp_scan
from truckctl.lifecycle.status import status
from truckctl.lifecycle.status_model import StatusReport
from truckctl.remote import KeptConnections
from truckctl.targets import for_kind

pytestmark = pytest.mark.lab

GW_A, HV1_A = "truck-a-gw", "truck-a-hv1"
RECEIVED = "/run/truckctl-test-evidence.jsonl"
# Runs on the stand-in (its python3-paho-mqtt 1.6): every evidence document its broker gets, one JSON line each.
SUBSCRIBER = """
import json, sys, time
import paho.mqtt.client as m
c = m.Client(client_id="truckctl-test-evidence")
c.on_connect = lambda c, u, f, rc: c.subscribe("+/+/evidence/#", 1)
def on_message(c, u, msg):
    print(json.dumps({"t": time.time(), "topic": msg.topic, "doc": json.loads(msg.payload)}), flush=True)
c.on_message = on_message
c.connect("127.0.0.1", 1883)
c.loop_forever()
"""


def sh(lab: Lab, node: str, command: str) -> tuple[int, str]:
    return lab.ssh(lab.node(node).address if node != "cloud-standin" else lab.standin_address, command)


def evidence(lab: Lab, node: str = GW_A) -> dict[str, Any]:
    code, out = sh(lab, node, "cat /run/truck-ops/evidence.json")
    assert code == 0, out
    return dict(json.loads(out))


def received(lab: Lab, truck: str = "truck-a") -> list[dict[str, Any]]:
    code, out = sh(lab, "cloud-standin", f"cat {RECEIVED}")
    assert code == 0, out
    return [line["doc"] for line in map(json.loads, out.splitlines()) if line["doc"].get("truck") == truck]


def healthy(doc: dict[str, Any]) -> bool:
    return (doc["uplink"]["carrier"] and doc["cloud"]["connected"] and doc["broker"]["active"]
            and doc["bridge"]["connected"] and doc["feed"]["messages_last_10s"] > 0 and not doc["conflicts"]
            and all(n["reachable"] and (n["heartbeat_age_s"] or 99) < 12 for n in doc["nodes"].values())
            and all(abs(c["offset_s"] or 99) < 3 for c in doc["clock"].values()))


@pytest.fixture(scope="module")
def drills(lab: Lab) -> Iterator[Lab]:
    ensure_converged(lab)
    code, pid = sh(lab, "cloud-standin", f"nohup python3 -c '{SUBSCRIBER}' > {RECEIVED} 2>&1 < /dev/null & echo $!")
    assert code == 0 and pid.isdigit(), pid
    wait_for(lambda: healthy(evidence(lab)), 60, "truck-a's evidence to show a healthy truck")
    yield lab
    faults.clear(lab.project)
    sh(lab, "cloud-standin", f"kill {pid}; rm -f {RECEIVED}")


@pytest.fixture(autouse=True)
def no_drill_left(drills: Lab) -> Iterator[None]:
    """A failed test leaves no drill behind for the next one."""
    yield
    faults.clear(drills.project)


def fresh_evidence(lab: Lab, check: Any, timeout: float, what: str, node: str = GW_A) -> dict[str, Any]:
    def matching() -> dict[str, Any] | None:
        doc = evidence(lab, node)
        return doc if check(doc) else None

    return dict(wait_for(matching, timeout, what))


def restored(lab: Lab, kind: str, target: str) -> None:
    result = faults.clear(lab.project, kind, target)
    assert [d.kind for d in result.changed] == [kind] and result.active == []
    fresh_evidence(lab, healthy, 90, f"the evidence healthy again after clearing {kind}")


# ---- truck drills ------------------------------------------------------------------------------------

def test_cable_pulls_the_uplink_and_what_the_agent_wrote_meanwhile_arrives_after_in_order(drills: Lab) -> None:
    lab = drills
    gateway = next(n for n in lab_state.load(lab.project.state_dir).plan.nodes if n.name == GW_A)  # type: ignore[union-attr]
    faults.start(lab.project, "cable", "truck-a")
    assert gateway.uplink_veth is not None and not network.link_is_up(gateway.uplink_veth)
    assert sh(lab, GW_A, "cat /sys/class/net/uplink0/carrier")[1] == "0"  # the node sees no carrier
    doc = fresh_evidence(lab, lambda d: not d["uplink"]["carrier"] and d["cloud"]["error"] == "unreachable", 10,
                         "the evidence to show the cable pulled")
    time.sleep(3)
    during = evidence(lab)
    assert not during["uplink"]["carrier"] and during["seq"] > doc["seq"]
    assert during["seq"] not in {d["seq"] for d in received(lab)}  # not delivered while the cable is out
    restored(lab, "cable", "truck-a")
    wait_for(lambda: during["seq"] in {d["seq"] for d in received(lab)}, 60,
             "the documents written while the cable was out to reach the stand-in")
    seqs = [d["seq"] for d in received(lab)]
    firsts = [s for i, s in enumerate(seqs) if s not in seqs[:i]]  # QoS 1: a resend is a duplicate
    assert firsts == sorted(firsts), "documents arrived out of order"
    assert {doc["seq"], during["seq"]} <= set(firsts)


def test_cloud_block_leaves_the_uplink_up_and_the_cloud_unreachable(drills: Lab) -> None:
    lab = drills
    faults.start(lab.project, "cloud-block", "truck-a")
    cloud = f"/dev/tcp/{lab.standin_address}/8883"
    assert sh(lab, GW_A, f"timeout 3 bash -c '<{cloud}'")[0] != 0  # the endpoint does not answer
    assert sh(lab, GW_A, f"timeout 3 bash -c '</dev/tcp/{lab.standin_address}/8080'")[0] == 0  # the uplink works
    fresh_evidence(lab, lambda d: d["uplink"]["carrier"] and d["cloud"]["error"] == "unreachable", 30,
                   "the evidence to show the cloud unreachable with the uplink up")
    restored(lab, "cloud-block", "truck-a")
    assert sh(lab, GW_A, f"timeout 3 bash -c '<{cloud}'")[0] == 0


def tls_handshake(lab: Lab, truck: str) -> str:
    """A TLS handshake with the stand-in's broker using the truck's certificate: "ok" or the error."""
    pki = LabPki(LabPaths(lab.project.state_dir).pki)
    leaf = pki.leaf(f"truck-{truck}")
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(str(leaf.cert), str(leaf.key))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        with socket.create_connection((lab.standin_address, 8883), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=lab.standin_address) as tls:
            tls.settimeout(2)
            tls.sendall(b"\x10\x00")  # not MQTT: a refused certificate shows as the alert at the first read
            tls.recv(1)
    except (ssl.SSLError, OSError) as exc:
        return str(exc)
    return "ok"


def test_revoke_cert_makes_the_standin_refuse_the_truck_and_the_agent_says_tls(drills: Lab) -> None:
    lab = drills
    faults.start(lab.project, "revoke-cert", "truck-a")
    assert "revoked" in tls_handshake(lab, "truck-a")
    assert "revoked" not in tls_handshake(lab, "truck-b")  # only that truck
    fresh_evidence(lab, lambda d: d["cloud"]["error"] == "tls-refused", 30, "the evidence to show tls-refused")
    restored(lab, "revoke-cert", "truck-a")
    assert "revoked" not in tls_handshake(lab, "truck-a")


@pytest.mark.parametrize(("kind", "unit"), [("broker-stop", "mosquitto"), ("feed-silence", "truck-transponder-sim")])
def test_a_stopped_gateway_unit_shows_in_the_evidence(drills: Lab, kind: str, unit: str) -> None:
    lab = drills
    faults.start(lab.project, kind, "truck-a")
    # stopped: "failed" when the daemon's exit on SIGTERM was not clean (mosquitto's, now and then on a busy host)
    assert sh(lab, GW_A, f"systemctl is-active {unit}")[1] in ("inactive", "failed")
    if kind == "broker-stop":
        doc = fresh_evidence(lab, lambda d: not d["broker"]["active"], 10, "the evidence to show the broker down")
        assert doc["bridge"] == {"connected": False, "queued": None} and doc["cloud"]["connected"]
    else:
        doc = fresh_evidence(lab, lambda d: d["feed"]["messages_last_10s"] == 0, 20, "the evidence to show no feed")
        assert doc["broker"]["active"] and doc["bridge"]["connected"]
    restored(lab, kind, "truck-a")
    assert sh(lab, GW_A, f"systemctl is-active {unit}")[1] == "active"


def test_bridge_stop_cuts_the_bridge_while_the_uplink_and_the_agent_stay_connected(drills: Lab) -> None:
    lab = drills
    faults.start(lab.project, "bridge-stop", "truck-a")
    doc = fresh_evidence(lab, lambda d: not d["bridge"]["connected"], 20, "the evidence to show the bridge down")
    assert doc["uplink"]["carrier"] and doc["broker"]["active"]
    fresh_evidence(lab, lambda d: d["cloud"]["connected"], 20, "the agent's own connection up")
    wait_for(lambda: (lab.standin("/status")["trucks"]["truck-a"]["telemetry"]["age_s"] or 0) > 6, 30,
             "truck-a's telemetry to stop arriving at the stand-in")
    restored(lab, "bridge-stop", "truck-a")
    wait_for(lambda: (lab.standin("/status")["trucks"]["truck-a"]["telemetry"]["age_s"] or 99) < 5, 60,
             "truck-a's telemetry to arrive again")


# ---- node drills -------------------------------------------------------------------------------------

def test_node_off_and_node_cut_make_the_node_unreachable(drills: Lab) -> None:
    lab = drills
    state = lab_state.load(lab.project.state_dir)
    assert state is not None
    hv1 = next(n for n in state.plan.nodes if n.name == HV1_A)
    for kind in ("node-off", "node-cut"):
        faults.start(lab.project, kind, HV1_A)
        if kind == "node-cut":
            assert not network.link_is_up(hv1.veth)
        else:
            assert HV1_A not in [n["name"] for n in api.status(lab.project)["nodes"] if n["supervisor"]]
        assert sh(lab, HV1_A, "true")[0] == 255  # SSH cannot reach it
        fresh_evidence(lab, lambda d: not d["nodes"][HV1_A]["reachable"], 15, f"{HV1_A} unreachable ({kind})")
        restored(lab, kind, HV1_A)
        assert sh(lab, HV1_A, "true")[0] == 0


def test_kept_connections_ride_on_one_master_per_node_and_a_cut_node_still_reads_unreachable(drills: Lab) -> None:
    """What `status --watch` and the portal do: every refresh probes the nodes over one SSH master each.
    A node cut while its master is open reads as a fresh probe reads it (ssh's own reason), and comes
    back once the cable is in again; closing ends every master."""
    lab = drills
    target = for_kind("lab", lab.project)

    def rows(report: StatusReport) -> dict[str, tuple[bool, str]]:
        return {n.name: (n.reachable, n.detail) for t in report.health.trucks for n in t.nodes}

    def masters(directory: Path) -> list[str]:
        # a master names itself after its socket: "ssh: DIR/HASH [mux]"
        found = subprocess.run(["pgrep", "-f", f"{directory}/"], capture_output=True, text=True, check=False)
        return found.stdout.split()

    with KeptConnections() as kept:
        for _ in range(3):
            assert set(rows(status(target, STAGE, kept=kept)).values()) == {(True, "ok")}
        assert len(list(kept.directory.iterdir())) == 6 and len(masters(kept.directory)) == 6  # not 18
        faults.start(lab.project, "node-cut", HV1_A)
        assert rows(status(target, STAGE, kept=kept))[HV1_A] == (False, "unreachable")
        restored(lab, "node-cut", HV1_A)
        assert rows(status(target, STAGE, kept=kept))[HV1_A] == (True, "ok")
        directory = kept.directory
    assert masters(directory) == [] and not directory.exists()


def test_heartbeat_stop_ages_the_heartbeat_of_a_reachable_node(drills: Lab) -> None:
    lab = drills
    faults.start(lab.project, "heartbeat-stop", HV1_A)
    assert sh(lab, HV1_A, "systemctl is-active truck-heartbeat")[1] == "inactive"
    doc = fresh_evidence(lab, lambda d: (d["nodes"][HV1_A]["heartbeat_age_s"] or 0) > 12, 30,
                         "the heartbeat's age to grow")
    assert doc["nodes"][HV1_A]["reachable"]
    restored(lab, "heartbeat-stop", HV1_A)


def test_clock_skew_shows_as_the_nodes_clock_offset(drills: Lab) -> None:
    lab = drills
    faults.start(lab.project, "clock-skew", HV1_A)

    def skewed_at_standin() -> bool:
        beat = lab.standin("/status")["trucks"]["truck-a"]["heartbeats"][HV1_A]["last_payload"]
        return bool(beat) and json.loads(beat)["ts"] - time.time() > faults.CLOCK_SKEW_S - 10

    wait_for(skewed_at_standin, 30, "the stand-in to receive a heartbeat stamped ahead")
    doc = fresh_evidence(lab, lambda d: (d["clock"][HV1_A]["offset_s"] or 0) > faults.CLOCK_SKEW_S - 10, 30,
                         "the evidence to show the clock offset")
    assert abs(doc["clock"][GW_A]["offset_s"]) < 3  # the others are in sync
    restored(lab, "clock-skew", HV1_A)


def test_an_impostor_is_a_conflict_within_2_s_naming_both_macs_and_our_node(drills: Lab) -> None:
    lab = drills
    state = lab_state.load(lab.project.state_dir)
    assert state is not None
    hv1 = next(n for n in state.plan.nodes if n.name == HV1_A)
    ours = next(r["mac"] for r in evidence(lab)["neighbours"] if r["address"] == hv1.address)
    result = faults.start(lab.project, "impostor", hv1.address)
    started = time.time()
    mac = faults.impostor_mac(state.plan, hv1.address)
    truck = next(t for t in state.plan.trucks if t.name == "truck-a")
    answers = arp_scan(truck.bridge, truck.host_address, [hv1.address])  # the host hears both
    assert answers[hv1.address] == {mac, ours}
    doc = fresh_evidence(lab, lambda d: bool(d["conflicts"]), 10, "a conflict in the evidence")
    [conflict] = doc["conflicts"]
    assert conflict["address"] == hv1.address and sorted(conflict["macs"]) == sorted([mac, ours])
    assert conflict["owners"] == {ours: HV1_A}
    assert conflict["since"] - started <= 2.0, f"seen {conflict['since'] - started:.1f} s after the drill"
    assert [d.kind for d in result.changed] == ["impostor"]
    restored(lab, "impostor", hv1.address)
    netns, link, _ = faults._impostor_names(state.plan, hv1.address)
    assert not network.netns_exists(netns) and not network.link_exists(link)


def test_the_evidence_reaches_the_standin_for_both_trucks(drills: Lab) -> None:
    lab = drills
    for truck in ("truck-a", "truck-b"):
        docs = wait_for(lambda t=truck: received(lab, t), 30, f"{truck}'s evidence at the stand-in")
        assert docs[-1]["node"] == f"{truck}-gw" and docs[-1]["v"] == 1
    _, out = sh(lab, "cloud-standin", f"grep -c PRIVATE {RECEIVED} || true")
    assert out.strip() == "0"


# ---- the CLI, refusals, lab down ---------------------------------------------------------------------

def test_the_cli_lists_drills_and_refuses_a_bad_target_changing_nothing(drills: Lab) -> None:
    lab = drills
    code, document, _ = truckctl(lab, "lab", "fault", "node-cut", "truck-a-hv9")
    assert code == 2 and len(document["errors"]) == 1 and "truck-a-hv9" in document["errors"][0]["message"]
    state = lab_state.load(lab.project.state_dir)
    assert state is not None and state.of_kind(lab_state.DRILL) == []
    code, document, _ = truckctl(lab, "lab", "fault", "heartbeat-stop", "truck-b-hv2")
    assert code == 0 and document["result"]["changed"][0]["incident"] == "heartbeat-stopped"
    code, document, _ = truckctl(lab, "lab", "fault", "list")
    assert code == 0 and [(d["kind"], d["target"]) for d in document["result"]["active"]] == \
        [("heartbeat-stop", "truck-b-hv2")]
    code, document, _ = truckctl(lab, "lab", "fault", "clear", "heartbeat-stop", "truck-b-hv2")
    assert code == 0 and document["result"]["active"] == []
    assert sh(lab, "truck-b-hv2", "systemctl is-active truck-heartbeat")[1] == "active"


def test_lab_down_removes_the_active_drills(drills: Lab) -> None:
    lab = drills
    state = lab_state.load(lab.project.state_dir)
    assert state is not None
    address = next(n.address for n in state.plan.nodes if n.name == HV1_A)
    netns, link, _ = faults._impostor_names(state.plan, address)
    faults.start(lab.project, "impostor", address)
    faults.start(lab.project, "revoke-cert", "truck-b")
    state = lab_state.load(lab.project.state_dir)
    assert state is not None
    [serial] = [r.data["undo"]["serial"] for r in state.of_kind(lab_state.DRILL) if r.data["drill"] == "revoke-cert"]
    pki = LabPki(LabPaths(lab.project.state_dir).pki)
    assert serial in pki.revoked()
    api.down(lab.project)
    assert not network.netns_exists(netns) and not network.link_exists(link)
    assert serial not in pki.revoked()  # the lab CA outlives the lab: the held serial is released
    api.up(lab.project, STAGE)  # for lab tests after this module (they converge it again)
