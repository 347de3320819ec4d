"""The gateway agent (playbooks/roles/truck_ops_agent/files/truck_ops_agent.py), imported from its path:
its evidence document, the address-conflict logic, the outgoing queue and the error classes.

The agent's live behaviour (raw ARP on the truck LAN, its TLS connection, the drills) is verified on the
lab in tests/lab/test_drills.py; here the pure parts run with fakes (a clock, frames, payloads).
"""

from __future__ import annotations

import errno
import importlib.util
import json
import socket
import ssl
import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

AGENT = Path(__file__).resolve().parents[3] / "playbooks/roles/truck_ops_agent/files/truck_ops_agent.py"


def load_agent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("truck_ops_agent", AGENT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["truck_ops_agent"] = module  # dataclass-free, but keep the module findable by name
    spec.loader.exec_module(module)
    return module


agent = load_agent()

HV1, HV2, GW = "10.31.1.11", "10.31.1.12", "10.31.1.1"
MAC_HV1, MAC_GW, FOREIGN = "02:00:00:00:00:11", "02:00:00:00:00:01", "de:ad:be:ef:00:01"
WATCHED = {GW: "truck-a-gw", HV1: "truck-a-hv1", HV2: "truck-a-hv2"}
CONFIG: dict[str, Any] = {"truck": "truck-a", "node": "truck-a-gw"}


def book() -> Any:
    return agent.ArpBook(WATCHED, {GW: MAC_GW}, ["10.31.1.0/24"])


# ---- the conflict watch --------------------------------------------------------------------------

def test_a_foreign_mac_beside_ours_is_a_conflict_naming_both_macs_and_our_node() -> None:
    b = book()
    assert b.observe(HV1, MAC_HV1, 100.0) is False  # learned: the first single claimant
    assert b.conflicts(100.5) == []
    assert b.observe(HV1, FOREIGN, 101.0) is True  # opens at once: the writer is woken
    [conflict] = b.conflicts(101.2)
    assert conflict == {"address": HV1, "macs": sorted([MAC_HV1, FOREIGN]), "since": 101.0,
                        "owners": {MAC_HV1: "truck-a-hv1"}}


def test_a_foreign_mac_alone_on_a_learned_address_is_a_conflict() -> None:
    b = book()
    b.observe(HV1, MAC_HV1, 100.0)
    b.observe(HV1, FOREIGN, 110.0)  # our node is gone (switched off), the impostor answers alone
    [conflict] = b.conflicts(110.5)
    assert conflict["macs"] == [FOREIGN] and conflict["owners"] == {}


def test_another_mac_claiming_the_gateways_own_address_is_a_conflict() -> None:
    b = book()
    b.observe(GW, FOREIGN, 100.0)
    [conflict] = b.conflicts(100.1)
    assert conflict["address"] == GW and conflict["macs"] == [FOREIGN]


def test_two_macs_for_an_address_that_is_not_ours_is_a_conflict_too() -> None:
    b = book()
    b.observe("10.31.1.200", "02:aa:00:00:00:01", 100.0)
    b.observe("10.31.1.200", "02:aa:00:00:00:02", 100.5)
    assert [c["address"] for c in b.conflicts(101.0)] == ["10.31.1.200"]


def test_a_conflict_resolves_once_the_foreign_claim_is_not_heard_for_the_window() -> None:
    b = book()
    b.observe(HV1, MAC_HV1, 100.0)
    b.observe(HV1, FOREIGN, 101.0)
    for t in range(102, 110):
        b.observe(HV1, MAC_HV1, float(t))  # our node keeps answering the probes
    assert b.conflicts(101.0 + agent.CLAIM_WINDOW_S - 0.5) != []
    assert b.conflicts(101.0 + agent.CLAIM_WINDOW_S + 0.5) == []


def test_the_since_of_a_conflict_stays_while_it_lasts() -> None:
    b = book()
    b.observe(HV1, MAC_HV1, 100.0)
    b.observe(HV1, FOREIGN, 101.0)
    b.observe(HV1, FOREIGN, 103.0)
    assert b.conflicts(103.5)[0]["since"] == 101.0


def test_addresses_outside_the_truck_lans_and_unspecified_senders_are_ignored() -> None:
    b = book()
    assert b.observe("10.99.0.1", FOREIGN, 100.0) is False
    assert b.observe("0.0.0.0", FOREIGN, 100.0) is False  # an ARP probe (RFC 5227) claims nothing
    assert b.neighbours(100.0) == []


def test_neighbours_are_the_claims_of_the_window_in_address_order() -> None:
    b = book()
    b.observe(HV2, "02:00:00:00:00:12", 100.0)
    b.observe(HV1, MAC_HV1, 100.0)
    b.observe("10.31.1.50", "02:00:00:00:00:50", 90.0)  # heard too long ago
    assert b.neighbours(100.5) == [{"address": HV1, "mac": MAC_HV1}, {"address": HV2, "mac": "02:00:00:00:00:12"}]
    assert b.answered(HV1, 100.0 + agent.REACHABLE_WITHIN_S - 0.1)
    assert not b.answered(HV1, 100.0 + agent.REACHABLE_WITHIN_S + 0.1)


def test_the_book_is_bounded() -> None:
    b = agent.ArpBook({}, {}, ["10.0.0.0/8"])
    for i in range(agent.MAX_ADDRESSES + 50):
        b.observe(str(agent.ipaddress.ip_address("10.0.0.1") + i), FOREIGN, 100.0)
    assert len(b.claims) == agent.MAX_ADDRESSES
    assert len(b.neighbours(100.0)) == agent.MAX_NEIGHBOURS
    assert len(b.conflicts(100.0)) == 0


def frame(oper: int, sender_ip: str, sender_mac: str, target_ip: str = HV2) -> bytes:
    sha = bytes.fromhex(sender_mac.replace(":", ""))
    eth = b"\xff" * 6 + sha + struct.pack("!H", 0x0806)
    return eth + struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, oper, sha, socket.inet_aton(sender_ip),
                             b"\0" * 6, socket.inet_aton(target_ip))


def test_arp_frames_requests_and_replies_give_their_sender() -> None:
    assert agent.parse_arp(frame(2, HV1, FOREIGN)) == (2, HV1, FOREIGN)
    assert agent.parse_arp(frame(1, HV1, FOREIGN)) == (1, HV1, FOREIGN)
    assert agent.parse_arp(frame(2, HV1, FOREIGN)[:30]) is None
    not_arp = frame(2, HV1, FOREIGN)[:12] + b"\x08\x00" + frame(2, HV1, FOREIGN)[14:]
    assert agent.parse_arp(not_arp) is None


def test_the_probe_is_a_broadcast_request_from_our_address() -> None:
    raw = agent.arp_request(bytes.fromhex("020000000001"), GW, HV1)
    assert raw[:6] == b"\xff" * 6
    assert agent.parse_arp(raw) == (1, GW, MAC_GW)


# ---- feed, heartbeats, clock ---------------------------------------------------------------------

def test_the_feed_counts_the_last_ten_seconds_and_the_age_of_the_last_message() -> None:
    feed = agent.FeedMeter()
    assert feed.view(100.0) == {"messages_last_10s": 0, "last_message_age_s": None}
    for t in (85.0, 95.0, 99.0):
        feed.hit(t)
    assert feed.view(100.0) == {"messages_last_10s": 2, "last_message_age_s": 1.0}
    assert feed.view(120.0) == {"messages_last_10s": 0, "last_message_age_s": 21.0}


def test_heartbeats_give_age_and_clock_offset_per_node_of_the_truck_only() -> None:
    beats = agent.Heartbeats(["truck-a-gw", "truck-a-hv1"])
    assert beats.hit("truck-a-hv1", 1000.4, json.dumps({"node": "truck-a-hv1", "ts": 1120}).encode())
    assert not beats.hit("truck-b-hv1", 1000.4, b'{"ts": 1}')  # another truck's node: no stream
    assert beats.ages(1002.0) == {"truck-a-gw": None, "truck-a-hv1": 1.6}
    assert beats.clock() == {"truck-a-gw": {"offset_s": None}, "truck-a-hv1": {"offset_s": 119.6}}


def test_a_late_heartbeat_is_no_clock_reading_but_a_clock_really_off_shows_at_once_or_within_the_window() -> None:
    """CI run 23: an impostor on truck-a-hv2's address delayed its heartbeats (the gateway's TCP replies
    went to the impostor's MAC) and the delay read as a clock 3 s behind, a clock-skew incident of its own."""
    beats = agent.Heartbeats(["truck-a-hv1"])

    def beat(now: float, ts: int) -> float | None:
        beats.hit("truck-a-hv1", now, json.dumps({"ts": ts}).encode())
        return beats.clock()["truck-a-hv1"]["offset_s"]

    assert beat(1000.4, 1000) == -0.4
    assert beat(1010.2, 1005) == -0.4  # 5 s late: the best reading of the last minute stands
    assert beat(1015.3, 1015) == -0.3
    assert beat(1020.1, 1320) == 299.9  # ahead: no delay reads ahead, taken at once (the clock-skew drill)
    assert beat(1025.2, 1025) == -0.2  # back in sync: at once
    for second in range(1030, 1100, 5):  # really behind by 8 s: every reading says so
        offset = beat(second + 0.2, second - 8)
    assert offset == -8.2


@pytest.mark.parametrize("payload", [b"not json", b'{"ts": "soon"}', b'{"ts": true}', b"[1]", b"\xff\xfe"])
def test_a_heartbeat_without_a_usable_timestamp_counts_but_gives_no_offset(payload: bytes) -> None:
    beats = agent.Heartbeats(["truck-a-hv1"])
    beats.hit("truck-a-hv1", 10.0, payload)
    assert beats.ages(11.0) == {"truck-a-hv1": 1.0}
    assert beats.clock() == {"truck-a-hv1": {"offset_s": None}}


def test_the_local_broker_messages_feed_the_right_watchers() -> None:
    state = agent.State()
    feed, beats = agent.FeedMeter(), agent.Heartbeats(["truck-a-hv1"])
    broker = agent.LocalBroker({"node": "truck-a-gw"}, state, feed, beats, clock=lambda: 50.0)
    broker.on_message("telemetry/rider/1", b"{}")
    broker.on_message("heartbeat/truck-a-hv1", b'{"ts": 50}')
    broker.on_message("$SYS/broker/store/messages/count", b"42")
    broker.on_message("$SYS/broker/store/messages/count", b"many")  # kept as it was
    assert feed.view(50.0)["messages_last_10s"] == 1
    assert beats.ages(51.0) == {"truck-a-hv1": 1.0}
    assert state.store_count == 42


# ---- the document --------------------------------------------------------------------------------

def document(**overrides: Any) -> dict[str, Any]:
    beats = agent.Heartbeats(["truck-a-gw", "truck-a-hv1"])
    beats.hit("truck-a-hv1", 99.0, b'{"ts": 99}')
    b = book()
    b.observe(HV1, MAC_HV1, 99.5)
    args: dict[str, Any] = {
        "uplink": {"iface": "uplink0", "carrier": True, "address": "100.64.21.11"},
        "cloud": {"connected": True, "error": None, "detail": "connected"},
        "broker_active": True, "bridge": {"connected": True, "queued": 3},
        "feed": {"messages_last_10s": 15, "last_message_age_s": 0.4},
        "reachable": {"truck-a-gw": True, "truck-a-hv1": True}, "beats": beats, "book": b, **overrides}
    return dict(agent.assemble(CONFIG, 100.0, 7, **args))


def test_the_document_has_the_contracts_shape() -> None:
    doc = document()
    assert doc == {
        "v": 1, "truck": "truck-a", "node": "truck-a-gw", "ts": 100.0, "seq": 7,
        "uplink": {"iface": "uplink0", "carrier": True, "address": "100.64.21.11"},
        "cloud": {"connected": True, "error": None, "detail": "connected"},
        "broker": {"active": True},
        "bridge": {"connected": True, "queued": 3},
        "feed": {"messages_last_10s": 15, "last_message_age_s": 0.4},
        "nodes": {"truck-a-gw": {"reachable": True, "heartbeat_age_s": None},
                  "truck-a-hv1": {"reachable": True, "heartbeat_age_s": 1.0}},
        "clock": {"truck-a-gw": {"offset_s": None}, "truck-a-hv1": {"offset_s": 0.0}},
        "conflicts": [],
        "neighbours": [{"address": HV1, "mac": MAC_HV1}],
    }
    json.dumps(doc)  # plain JSON


def test_a_node_nobody_saw_is_unreachable_in_the_document() -> None:
    doc = document(reachable={"truck-a-gw": True})
    assert doc["nodes"]["truck-a-hv1"]["reachable"] is False


def test_only_meaningful_changes_count_as_changes() -> None:
    a, b = document(), document(feed={"messages_last_10s": 3, "last_message_age_s": 2.0})
    assert agent.semantic(a) == agent.semantic(b)  # counters and ages move every second
    c = document(uplink={"iface": "uplink0", "carrier": False, "address": "100.64.21.11"})
    assert agent.semantic(a) != agent.semantic(c)


def test_the_document_never_holds_the_key(tmp_path: Path) -> None:
    secret = "truck-key-material-SECRET"
    config = {**CONFIG, "cloud": {"key_file": str(tmp_path / "truck.key")}}
    (tmp_path / "truck.key").write_text(secret)
    doc = agent.assemble(config, 1.0, 1, uplink={}, cloud={"connected": False, "error": "other", "detail": "x"},
                         broker_active=False, bridge={"connected": False, "queued": None},
                         feed={"messages_last_10s": 0, "last_message_age_s": None}, reachable={},
                         beats=agent.Heartbeats([]), book=book())
    assert "SECRET" not in json.dumps(doc) and "truck.key" not in json.dumps(doc)


def test_the_evidence_file_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "evidence.json"
    agent.write_atomically(str(path), b'{"v": 1}')
    agent.write_atomically(str(path), b'{"v": 1, "seq": 2}')
    assert json.loads(path.read_text()) == {"v": 1, "seq": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evidence.json"]


# ---- the bridge, the queue, the errors -----------------------------------------------------------

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:075B 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 1 1
   1: 0B154064:A1B2 01154064:22B3 01 00000000:00000000 00:00000000 00000000   999        0 2 1
   2: 0B154064:A1B3 01154064:22B3 01 00000000:00000000 00:00000000 00000000   107        0 3 1
"""


def test_the_bridge_is_the_brokers_established_connection_to_the_cloud_port() -> None:
    assert agent.established_to_port([TCP], 8883, 107)  # the broker's user
    assert agent.established_to_port([TCP], 8883, 999)  # (the agent's own, by its user)
    assert not agent.established_to_port([TCP], 8883, 108)
    assert not agent.established_to_port([TCP], 1883, 107)  # listening, not established
    assert not agent.established_to_port([TCP.replace(" 01 ", " 02 ")], 8883, 107)  # SYN_SENT


def test_the_outbox_keeps_order_bounds_and_resends_what_was_not_acknowledged() -> None:
    box = agent.Outbox(limit=3)
    for n in range(5):
        box.put(b"%d" % n)
    assert box.dropped == 2 and [i[0] for i in box.items] == [b"2", b"3", b"4"]
    first = box.to_send(window=2)
    assert [i[0] for i in first] == [b"2", b"3"]
    box.sent(first[0], 10)
    box.sent(first[1], 11)
    assert box.to_send(window=2) == []  # the window is full
    box.acked(10)
    assert [i[0] for i in box.to_send(window=2)] == [b"4"]
    box.reset()  # a new connection: "3" was never acknowledged, so it goes again, first
    assert [i[0] for i in box.to_send(window=2)] == [b"3", b"4"]
    box.acked(99)  # an unknown ack changes nothing
    assert len(box) == 2


@pytest.mark.parametrize(("exc", "kind"), [
    (ssl.SSLError(1, "[SSL: SSLV3_ALERT_CERTIFICATE_REVOKED] sslv3 alert certificate revoked"), "tls-refused"),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), "tls-refused"),
    (TimeoutError("timed out"), "unreachable"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "unreachable"),
    (OSError(errno.EHOSTUNREACH, "No route to host"), "unreachable"),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), "unreachable"),
    (socket.gaierror(-2, "Name or service not known"), "unreachable"),
    (OSError(errno.EACCES, "Permission denied"), "other"),
    (ValueError("bad"), "other"),
])
def test_connection_errors_are_classified(exc: BaseException, kind: str) -> None:
    assert agent.classify(exc) == kind


def test_a_cloud_state_change_wakes_the_writer_and_details_are_bounded() -> None:
    state = agent.State()
    state.set_cloud(False, "unreachable", "x")
    state.changed.clear()
    state.set_cloud(False, "unreachable", "y" * 1000)  # same state, new detail: no wake-up
    assert not state.changed.is_set() and len(state.cloud["detail"]) == agent.MAX_DETAIL
    state.set_cloud(False, "tls-refused", "revoked")
    assert state.changed.is_set()


# ---- the role --------------------------------------------------------------------------------------

ROLES = AGENT.parents[2]


def test_every_task_that_handles_a_trucks_key_is_no_log() -> None:
    import yaml

    handling = []
    for tasks in sorted(ROLES.glob("*/tasks/*.yml")):
        for task in yaml.safe_load(tasks.read_text()) or []:
            if "cloud_truck_keys[" in json.dumps(task):  # the key itself, not a check that it is there
                handling.append((tasks.parts[-3], task.get("name")))
                assert task.get("no_log") is True, f"{tasks}: {task.get('name')} handles a key without no_log"
    assert ("truck_ops_agent", "Install the truck's private key for the agent") in handling


def test_the_agents_unit_runs_as_its_own_user_with_only_cap_net_raw() -> None:
    unit = (ROLES / "truck_ops_agent/templates/truck-ops-agent.service.j2").read_text()
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["User"] == "{{ truck_ops_agent_user }}" and "DynamicUser" not in settings
    assert settings["CapabilityBoundingSet"] == settings["AmbientCapabilities"] == "CAP_NET_RAW"
    assert settings["NoNewPrivileges"] == "yes" and settings["ProtectSystem"] == "strict"


def test_a_tls_alert_before_the_session_is_accepted_is_tls_refused_not_unreachable() -> None:
    """TLS 1.3: the server checks the client certificate after the handshake, so a revoked one shows
    as a lost connection at the first read; paho logs the SSL error it swallowed."""
    revoked = ["failed to receive on socket: [SSL: SSLV3_ALERT_CERTIFICATE_REVOKED] sslv3 alert certificate revoked"]
    error, detail = agent.lost(revoked, accepted=False, rc=7)
    assert error == "tls-refused" and "CERTIFICATE_REVOKED" in detail
    assert agent.lost(revoked, accepted=True, rc=7)[0] == "unreachable"  # a session that was up and dropped
    assert agent.lost(["failed to receive on socket: [Errno 104] Connection reset by peer"], accepted=False,
                      rc=7)[0] == "unreachable"
    assert agent.lost([], accepted=False, rc=7) == ("unreachable", "connection lost (paho code 7)")
