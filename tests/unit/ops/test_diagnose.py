"""Diagnosis from evidence fixtures: each kind of CONTRACT-14 told apart, one incident per root
cause, its symptoms under it, nothing else left over; and the combinations."""

from __future__ import annotations

from dataclasses import replace

from truckctl.ops.diagnose import NodeCheck, Observations, diagnose
from truckctl.ops.evidence import BadEvidence
from truckctl.ops.model import Kind
from truckctl.ops.topology import from_stage

from .fixtures import MACS, NOW, TOPOLOGY, changed, checks, cloud, document, nodes, observe, parsed, silent


def keys(incident) -> set[str]:  # type: ignore[no-untyped-def]
    return {s.key for s in incident.symptoms}


def only(obs: Observations):  # type: ignore[no-untyped-def]
    result = diagnose(TOPOLOGY, obs)
    assert len(result.incidents) == 1, [i.summary() for i in result.incidents]
    assert result.unexplained == (), [s.text for s in result.unexplained]
    return result.incidents[0]


TRUCK_A_SILENT = {"telemetry/truck-a", *(f"heartbeat/{n}" for n in nodes("truck-a"))}


def test_the_topology_is_the_configuration(example_stage) -> None:  # type: ignore[no-untyped-def]
    assert from_stage(example_stage) == TOPOLOGY


def test_healthy_is_healthy() -> None:
    result = diagnose(TOPOLOGY, observe(view=cloud(), direct=checks()))
    assert result.healthy and result.incidents == () and result.unexplained == ()


def test_uplink_down_explains_the_telemetry_and_three_heartbeats() -> None:
    docs = {"truck-a": changed(changed(changed(document(), "uplink.carrier", False), "cloud.connected", False),
                               "bridge", {"connected": False, "queued": 120}),
            "truck-b": document("truck-b")}
    incident = only(observe(docs, cloud({"truck-a": 30.0}, silent("truck-a"), {"truck-a": 30.0}), checks()))
    assert (incident.kind, incident.truck, incident.hop) == (Kind.UPLINK_DOWN, "truck-a", "truck-a-gw→uplink")
    assert incident.evidence[0] == "truck-a-gw uplink0: no carrier"
    assert "120 message(s) queued on the gateway" in incident.evidence
    assert keys(incident) == TRUCK_A_SILENT | {"evidence/truck-a"}


def test_cloud_unreachable_with_the_uplink_up() -> None:
    doc = changed(changed(document(), "cloud", {"connected": False, "error": "unreachable", "detail": "timed out"}),
                  "bridge.connected", False)
    incident = only(observe({"truck-a": doc, "truck-b": document("truck-b")},
                            cloud({"truck-a": 30.0}, silent("truck-a"), {"truck-a": 30.0})))
    assert incident.kind is Kind.CLOUD_UNREACHABLE and incident.hop == "truck-a-gw→uplink→cloud ingest"
    assert any("has carrier and address 100.64.43.11" in line for line in incident.evidence)
    assert keys(incident) == TRUCK_A_SILENT | {"evidence/truck-a"}


def test_an_agent_reconnecting_while_the_cloud_side_hears_it_is_no_incident() -> None:
    # the cloud's broker restarted (a drill revoking another truck's certificate): every agent reconnects
    # for a second or two while its evidence still arrives
    doc = changed(changed(document(), "cloud", {"connected": False, "error": "unreachable",
                                                "detail": "connection lost (paho code 7)"}), "bridge.connected", False)
    result = diagnose(TOPOLOGY, observe({"truck-a": doc, "truck-b": document("truck-b")},
                                        cloud({}, {}, {"truck-a": 1.0})))
    assert result.healthy, [i.summary() for i in result.incidents]


def test_tls_refused() -> None:
    doc = changed(changed(document(), "cloud", {"connected": False, "error": "tls-refused",
                                                "detail": "certificate revoked"}), "bridge.connected", False)
    incident = only(observe({"truck-a": doc, "truck-b": document("truck-b")},
                            cloud({"truck-a": 30.0}, silent("truck-a"), {"truck-a": 30.0})))  # refused: nothing arrives
    assert incident.kind is Kind.TLS_REFUSED and "certificate" in incident.evidence[1]
    assert incident.hop == "truck-a-gw→cloud ingest (TLS)"


def test_a_silent_truck_whose_certificate_the_cloud_refuses_is_tls_refused_without_the_gateways_word() -> None:
    silence = cloud({"truck-a": 30.0}, silent("truck-a"), {"truck-a": 30.0})
    refused = replace(silence, refused={"truck-a": "certificate serial 1f revoked"})
    result = diagnose(TOPOLOGY, Observations(NOW, {"truck-b": parsed(document("truck-b"))}, None, refused))
    (incident,) = result.incidents
    assert (incident.kind, incident.truck) == (Kind.TLS_REFUSED, "truck-a")
    assert incident.hop == "truck-a-gw→cloud ingest (TLS)"
    assert "refuses truck-a's certificate (certificate serial 1f revoked)" in incident.evidence[0]
    assert {s.key for s in incident.symptoms} >= {"telemetry/truck-a", "heartbeat/truck-a-hv1"}
    assert result.settled == {incident.id}
    # silence alone: the provisional kind, nothing settled
    plain = diagnose(TOPOLOGY, Observations(NOW, {"truck-b": parsed(document("truck-b"))}, None, silence))
    assert [i.kind for i in plain.incidents] == [Kind.UPLINK_DOWN] and plain.settled == frozenset()
    # refused but still heard (its connection predates the revocation): not an incident yet
    heard = replace(cloud(), refused={"truck-a": "certificate serial 1f revoked"})
    assert diagnose(TOPOLOGY, observe(view=heard)).healthy


def test_broker_down_explains_its_unit_and_every_stream_but_not_the_heartbeats_at_the_gateway() -> None:
    doc = document()
    doc = changed(changed(changed(doc, "broker.active", False), "bridge.connected", False),
                  "feed.messages_last_10s", 0)
    doc["nodes"] = {n: {"reachable": True, "heartbeat_age_s": 45.0} for n in nodes("truck-a")}  # none reach it
    direct = checks(truck_a_gw=NodeCheck(True, "ok", {"mosquitto": "inactive", "dnsmasq": "active"}))
    incident = only(observe({"truck-a": doc, "truck-b": document("truck-b")},
                            cloud({"truck-a": 30.0}, silent("truck-a")), direct))
    assert (incident.kind, incident.hop) == (Kind.BROKER_DOWN, "truck-a-gw broker")
    assert keys(incident) == TRUCK_A_SILENT | {"service/truck-a-gw/mosquitto"}


def test_bridge_down_while_the_uplink_is_up() -> None:
    doc = changed(document(), "bridge", {"connected": False, "queued": 40})
    incident = only(observe({"truck-a": doc, "truck-b": document("truck-b")},
                            cloud({"truck-a": 30.0}, silent("truck-a"))))
    assert (incident.kind, incident.hop) == (Kind.BRIDGE_DOWN, "truck-a-gw broker→bridge→cloud")
    assert keys(incident) == TRUCK_A_SILENT


def test_a_bridge_reconnecting_while_its_telemetry_still_arrives_is_no_incident() -> None:
    # the cloud's broker restarted (revoke-cert on another truck): truck-a's bridge is back a few s later
    doc = changed(document(), "bridge", {"connected": False, "queued": 3})
    result = diagnose(TOPOLOGY, observe({"truck-a": doc, "truck-b": document("truck-b")}, cloud({"truck-a": 2.0})))
    assert result.healthy, [i.summary() for i in result.incidents]


def test_feed_silent_explains_the_telemetry_only() -> None:
    doc = changed(document(), "feed", {"messages_last_10s": 0, "last_message_age_s": 31.0})
    incident = only(observe({"truck-a": doc, "truck-b": document("truck-b")}, cloud({"truck-a": 30.0})))
    assert (incident.kind, incident.hop) == (Kind.FEED_SILENT, "transponder feed→truck-a-gw broker")
    assert keys(incident) == {"telemetry/truck-a"} and "31 s ago" in incident.evidence[0]


def test_node_down_explains_its_heartbeat_and_its_unreachable_services() -> None:
    doc = changed(document(), "nodes.truck-a-hv1", {"reachable": False, "heartbeat_age_s": 35.0})
    direct = checks(truck_a_hv1=NodeCheck(False, "no route to host"))
    incident = only(observe({"truck-a": doc, "truck-b": document("truck-b")},
                            cloud(heartbeats={"truck-a-hv1": 35.0}), direct))
    assert (incident.kind, incident.node, incident.hop) == (Kind.NODE_DOWN, "truck-a-hv1",
                                                            "truck-a-hv1→truck-a LAN→truck-a-gw")
    assert keys(incident) == {"heartbeat/truck-a-hv1", "ssh/truck-a-hv1"}
    assert len(incident.evidence) == 2  # truckctl's probe and the gateway both say so


def test_node_down_seen_from_the_cloud_side_only_by_the_gateways_evidence() -> None:
    doc = changed(document(), "nodes.truck-a-hv2", {"reachable": False, "heartbeat_age_s": None})
    incident = only(observe({"truck-a": doc, "truck-b": document("truck-b")}, cloud(heartbeats={"truck-a-hv2": 25.0})))
    assert (incident.kind, incident.node) == (Kind.NODE_DOWN, "truck-a-hv2")


def test_heartbeat_stopped_from_the_direct_check_before_the_cloud_notices() -> None:
    services = dict(checks()["truck-b-hv1"].services, **{"truck-heartbeat": "inactive"})
    incident = only(observe(view=cloud(), direct=checks(truck_b_hv1=NodeCheck(True, "ok", services))))
    assert (incident.kind, incident.truck, incident.node) == (Kind.HEARTBEAT_STOPPED, "truck-b", "truck-b-hv1")
    assert keys(incident) == {"service/truck-b-hv1/truck-heartbeat"}


def test_heartbeat_stopped_from_the_gateway_and_the_cloud() -> None:
    doc = changed(document(), "nodes.truck-a-hv1.heartbeat_age_s", 26.0)
    incident = only(observe({"truck-a": doc, "truck-b": document("truck-b")}, cloud(heartbeats={"truck-a-hv1": 26.0})))
    assert incident.kind is Kind.HEARTBEAT_STOPPED and keys(incident) == {"heartbeat/truck-a-hv1"}
    assert incident.hop == "truck-a-hv1 heartbeat→truck-a-gw broker"


def test_heartbeat_stopped_from_the_cloud_side_alone_while_the_telemetry_flows() -> None:
    incident = only(Observations(NOW, {}, None, cloud(heartbeats={"truck-a-hv2": 30.0})))
    assert (incident.kind, incident.node) == (Kind.HEARTBEAT_STOPPED, "truck-a-hv2")


def test_heartbeats_crossing_stale_after_before_the_telemetry_on_a_silent_truck_are_its_link() -> None:
    # 17 s after a cable is pulled: the telemetry (continuous) is 17 s old, the heartbeats (every few
    # seconds) 21 s, the evidence silent: the link, not three heartbeats stopped (seen on the lab)
    view = cloud({"truck-a": 17.0}, silent("truck-a", 21.0), {"truck-a": 17.0})
    incident = only(Observations(NOW, {"truck-b": parsed(document("truck-b"))}, None, view))
    assert (incident.kind, incident.id) == (Kind.UPLINK_DOWN, "link/truck-a/-")
    assert keys(incident) == {"evidence/truck-a", *(f"heartbeat/{n}" for n in nodes("truck-a"))}


def test_clock_skew_beyond_the_limit_only() -> None:
    doc = changed(document(), "clock.truck-a-hv2.offset_s", -4.5)
    incident = only(observe({"truck-a": doc, "truck-b": document("truck-b")}, cloud()))
    assert (incident.kind, incident.node, incident.hop) == (Kind.CLOCK_SKEW, "truck-a-hv2", "truck-a-hv2 clock")
    assert "-4.5 s" in incident.evidence[0]
    assert diagnose(TOPOLOGY, observe({"truck-a": changed(document(), "clock.truck-a-hv2.offset_s", 0.9),
                                       "truck-b": document("truck-b")}, cloud())).healthy


def test_address_conflict_names_the_address_both_macs_and_whose_they_are() -> None:
    doc = document("truck-b")
    doc["conflicts"] = [{"address": "10.32.1.12", "macs": [MACS["truck-b-hv1"], "0a:bb:cc:dd:ee:ff"],
                         "since": NOW - 1}]
    doc["neighbours"].append({"address": "10.32.1.14", "mac": MACS["truck-b-hv1"]})  # hv1 also answers for .14
    incident = only(observe({"truck-a": document(), "truck-b": doc}, cloud()))
    assert (incident.kind, incident.truck, incident.address, incident.node) == (
        Kind.ADDRESS_CONFLICT, "truck-b", "10.32.1.12", "truck-b-hv1")
    assert "0a:bb:cc:dd:ee:ff (not one of the stage nodes)" in incident.evidence[0]
    assert incident.id == "address-conflict/truck-b/10.32.1.12" and incident.opened == NOW - 1


def test_the_owner_unreachable_through_a_conflicting_address_is_under_the_conflict() -> None:
    # on the lab: truckctl's SSH to truck-a-hv2's address reached the impostor's MAC ("unreachable")
    doc = document()
    doc["conflicts"] = [{"address": "10.31.1.13", "macs": [MACS["truck-a-hv2"], "0a:bb:cc:dd:ee:ff"],
                         "since": NOW - 1}]
    incident = only(observe({"truck-a": doc, "truck-b": document("truck-b")}, cloud(),
                            checks(truck_a_hv2=NodeCheck(False, "unreachable"))))
    assert (incident.kind, incident.node) == (Kind.ADDRESS_CONFLICT, "truck-a-hv2")
    assert keys(incident) == {"ssh/truck-a-hv2"}


def test_one_conflict_seen_by_two_gateways_is_one_incident() -> None:
    docs = {t: document(t) for t in ("truck-a", "truck-b")}
    for doc in docs.values():
        doc["conflicts"] = [{"address": "10.31.1.13", "macs": [MACS["truck-a-hv2"], MACS["truck-b-hv2"]],
                             "since": NOW}]
    incident = only(observe(docs, cloud()))
    assert incident.truck == "truck-a" and incident.address == "10.31.1.13"
    assert "truck-b-hv2 (truck-b)" in incident.evidence[0]


def test_gateway_unreachable_from_truckctl_explains_the_whole_truck() -> None:
    view = cloud({"truck-a": 30.0}, silent("truck-a"), {"truck-a": 30.0})
    incident = only(Observations(NOW, {"truck-b": parsed(document("truck-b"))},
                                 checks(truck_a_gw=NodeCheck(False, "connection timed out")), view))
    assert (incident.kind, incident.node) == (Kind.NODE_DOWN, "truck-a-gw")
    assert keys(incident) == TRUCK_A_SILENT | {"evidence/truck-a", "ssh/truck-a-gw"}
    assert "the cloud side last had its evidence 30 s ago" in incident.evidence


def test_a_silent_truck_seen_from_the_cloud_side_only_has_lost_its_link() -> None:
    view = cloud({"truck-a": 8.0}, silent("truck-a", 8.0), {"truck-a": 4.0})
    incident = only(Observations(NOW, {"truck-b": parsed(document("truck-b"))}, None, view))
    assert incident.kind is Kind.UPLINK_DOWN and incident.id == "link/truck-a/-"
    assert "cannot be told" in incident.evidence[1]
    assert keys(incident) == {"evidence/truck-a"}  # the streams are not stale yet: 5 s, not stale_after_s


def test_before_anything_was_seen_there_is_no_incident_only_symptoms() -> None:
    result = diagnose(TOPOLOGY, Observations(NOW, {}, None, cloud({"truck-a": None}, silent("truck-a", None) | {},
                                                                   {"truck-a": None})))
    assert result.incidents == () and len(result.unexplained) == 4


def test_bad_and_old_evidence_are_symptoms_not_errors() -> None:
    result = diagnose(TOPOLOGY, Observations(NOW, {"truck-a": BadEvidence("v: expected 1"),
                                                   "truck-b": parsed(document("truck-b", NOW - 60))}, None, cloud()))
    assert result.incidents == ()
    assert [s.text for s in result.unexplained] == [
        "truck-a-gw: bad evidence (v: expected 1)",
        "truck-b-gw: its evidence is 60 s old (is truck-ops-agent running?)"]


def test_uplink_down_and_a_node_down_on_the_same_truck() -> None:
    doc = changed(changed(document(), "uplink.carrier", False), "cloud.connected", False)
    doc = changed(doc, "nodes.truck-a-hv2", {"reachable": False, "heartbeat_age_s": 50.0})
    result = diagnose(TOPOLOGY, observe({"truck-a": doc, "truck-b": document("truck-b")},
                                        cloud({"truck-a": 30.0}, silent("truck-a")),
                                        checks(truck_a_hv2=NodeCheck(False, "no route to host"))))
    assert [(i.kind, i.node) for i in result.incidents] == [(Kind.UPLINK_DOWN, None), (Kind.NODE_DOWN, "truck-a-hv2")]
    assert keys(result.incidents[0]) == {"telemetry/truck-a", "heartbeat/truck-a-gw", "heartbeat/truck-a-hv1"}
    assert keys(result.incidents[1]) == {"heartbeat/truck-a-hv2", "ssh/truck-a-hv2"}
    assert result.unexplained == ()


def test_two_trucks_two_causes_each_on_its_truck() -> None:
    docs = {"truck-a": changed(document(), "uplink.carrier", False),
            "truck-b": changed(document("truck-b"), "broker.active", False)}
    view = cloud({"truck-a": 30.0, "truck-b": 30.0}, silent("truck-a") | silent("truck-b"))
    result = diagnose(TOPOLOGY, observe(docs, view))
    assert [(i.kind, i.truck) for i in result.incidents] == [(Kind.UPLINK_DOWN, "truck-a"),
                                                            (Kind.BROKER_DOWN, "truck-b")]
    assert all(len(i.symptoms) == 4 for i in result.incidents) and result.unexplained == ()


def test_an_unrelated_unit_down_stays_a_problem_of_its_own() -> None:
    services = dict(checks()["truck-a-hv1"].services, chrony="failed")
    result = diagnose(TOPOLOGY, observe(view=cloud(), direct=checks(truck_a_hv1=NodeCheck(True, "ok", services))))
    assert result.incidents == () and [s.text for s in result.unexplained] == ["truck-a-hv1: chrony failed"]


def test_an_ssh_timeout_alone_is_not_a_node_down_when_the_gateway_hears_the_node() -> None:
    """A loaded truckctl host's probe may time out: the gateway's ARP view says the node is on the LAN."""
    result = diagnose(TOPOLOGY, observe(view=cloud(), direct=checks(truck_a_hv1=NodeCheck(False, "no answer"))))
    assert result.incidents == ()
    assert [s.text for s in result.unexplained] == ["truck-a-hv1: not reachable over SSH (no answer)"]


def test_evidence_is_judged_by_its_age_when_it_was_read() -> None:
    obs = Observations(NOW + 30, {"truck-a": parsed(document(at=NOW))}, None, cloud(), evidence_age_s={"truck-a": 1.0})
    assert diagnose(TOPOLOGY, obs).unexplained == ()


def test_an_agent_warming_up_is_not_believed_yet() -> None:
    """Its first documents: no node answered its ARP yet, its broker subscription is connecting."""
    doc = changed(changed(document(), "seq", 2), "broker.active", False)
    doc["nodes"] = {n: {"reachable": False, "heartbeat_age_s": None} for n in nodes("truck-a")}
    assert diagnose(TOPOLOGY, observe({"truck-a": doc, "truck-b": document("truck-b")}, cloud())).healthy


def test_a_probe_that_ran_out_of_time_is_no_proof_a_node_is_down() -> None:
    """A loaded truckctl host: every probe times out and the gateway's evidence cannot be read either."""
    slow = {n: NodeCheck(False, "no answer within 4 s", timed_out=True) for n in checks()}
    result = diagnose(TOPOLOGY, Observations(NOW, {}, slow, cloud()))
    assert result.incidents == () and len(result.unexplained) == 6
    refused = diagnose(TOPOLOGY, Observations(NOW, {}, checks(truck_a_hv1=NodeCheck(False, "unreachable")), cloud()))
    assert [(i.kind, i.node) for i in refused.incidents] == [(Kind.NODE_DOWN, "truck-a-hv1")]
