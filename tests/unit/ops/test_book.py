"""Incidents over time: one event when an incident opens, one when it resolves, whatever repeats;
late evidence from the gateway's queue opens and resolves its own incidents on arrival."""

from __future__ import annotations

from dataclasses import replace

from truckctl.ops.book import OPENED, RESOLVED, Book
from truckctl.ops.diagnose import Observations, diagnose
from truckctl.ops.model import Kind

from .fixtures import NOW, TOPOLOGY, changed, cloud, document, observe, parsed, silent

TRUCKS = {"truck-a", "truck-b"}


def cable(at: float) -> Observations:
    doc = changed(changed(document(at=at), "uplink.carrier", False), "cloud.connected", False)
    return observe({"truck-a": doc, "truck-b": document("truck-b", at)},
                   cloud({"truck-a": 30.0}, silent("truck-a"), {"truck-a": 30.0}), at=at)


def test_one_opened_one_resolved_however_often_it_is_seen() -> None:
    book = Book()
    events = []
    for second in range(10):
        events += book.update(diagnose(TOPOLOGY, cable(NOW + second)), NOW + second, TRUCKS)
    events += book.update(diagnose(TOPOLOGY, observe(view=cloud(), at=NOW + 11)), NOW + 11, TRUCKS)
    events += book.update(diagnose(TOPOLOGY, observe(view=cloud(), at=NOW + 12)), NOW + 12, TRUCKS)
    assert [(e.event, e.incident.kind) for e in events] == [(OPENED, Kind.UPLINK_DOWN), (RESOLVED, Kind.UPLINK_DOWN)]
    assert events[1].incident.opened == NOW and events[1].incident.resolved == NOW + 11
    assert book.open == {} and [i.kind for i in book.recent] == [Kind.UPLINK_DOWN]
    assert len(events[0].incident.symptoms) == 5


def test_a_diagnosis_of_other_trucks_resolves_nothing_of_this_one() -> None:
    book = Book()
    book.update(diagnose(TOPOLOGY, cable(NOW)), NOW, TRUCKS)
    assert book.update(diagnose(TOPOLOGY, observe(view=cloud(), at=NOW + 1)), NOW + 1, {"truck-b"}) == []
    assert list(book.open) == ["link/truck-a/-"]


def test_silence_then_the_queued_evidence_refines_the_kind_once_and_resolves() -> None:
    book = Book()
    silence = Observations(NOW + 4, {"truck-b": parsed(document("truck-b", NOW + 4))}, None,
                           cloud({"truck-a": 4.0}, silent("truck-a", 4.0), {"truck-a": 4.0}))
    opened = book.update(diagnose(TOPOLOGY, silence), NOW + 4, TRUCKS)
    assert [(e.event, e.incident.kind) for e in opened] == [(OPENED, Kind.UPLINK_DOWN)]
    # the uplink comes back: the documents queued since NOW arrive in order, each judged at its own time
    blocked = {"connected": False, "error": "unreachable", "detail": ""}
    events = []
    for second in range(1, 20):
        doc = changed(document(at=NOW + second), "cloud", blocked)
        events += book.update(diagnose(TOPOLOGY, Observations(NOW + second, {"truck-a": parsed(doc)},
                                                              evidence_max_age_s=None)),
                              NOW + second, {"truck-a"}, from_evidence=True)
    assert events == [] and book.open["link/truck-a/-"].kind is Kind.CLOUD_UNREACHABLE
    assert book.open["link/truck-a/-"].opened == NOW + 1  # when the evidence says it began
    # a later reconnection glitch does not re-label it
    doc = changed(changed(document(at=NOW + 20), "uplink.carrier", False), "cloud.connected", False)
    book.update(diagnose(TOPOLOGY, Observations(NOW + 20, {"truck-a": parsed(doc)}, evidence_max_age_s=None)),
                NOW + 20, {"truck-a"}, from_evidence=True)
    assert book.open["link/truck-a/-"].kind is Kind.CLOUD_UNREACHABLE
    done = book.update(diagnose(TOPOLOGY, Observations(NOW + 21, {"truck-a": parsed(document(at=NOW + 21))},
                                                       evidence_max_age_s=None)), NOW + 21, {"truck-a"},
                       from_evidence=True)
    assert [(e.event, e.incident.kind) for e in done] == [(RESOLVED, Kind.CLOUD_UNREACHABLE)]


def test_a_certificate_the_cloud_refuses_keeps_its_kind_through_the_queued_evidence_to_resolution() -> None:
    """The revoke-cert drill: the cloud's broker restarts with the CRL, the gateway's connection drops (its
    first queued document says only "connection lost", unreachable), then every handshake is refused."""
    book = Book()
    silence = cloud({"truck-a": 4.0}, silent("truck-a", 4.0), {"truck-a": 4.0})
    refused = replace(silence, refused={"truck-a": "certificate serial 1f revoked"})
    fine = {"truck-b": parsed(document("truck-b", NOW + 4))}
    events = book.update(diagnose(TOPOLOGY, Observations(NOW + 4, fine, None, refused)), NOW + 4, TRUCKS)
    assert [(e.event, e.incident.kind) for e in events] == [(OPENED, Kind.TLS_REFUSED)]
    assert book.held()["open"][0]["provisional"] is False
    # cleared: the cloud refuses it no more, the truck is still silent for a moment (the same incident)
    events += book.update(diagnose(TOPOLOGY, Observations(NOW + 30, fine, None, silence)), NOW + 30, TRUCKS)
    lost = {"connected": False, "error": "unreachable", "detail": "connection lost (paho code 7)"}
    tls = {"connected": False, "error": "tls-refused", "detail": "SSLEOFError"}
    for second in range(1, 30):  # the queued documents, in order, each judged at its own time
        doc = changed(document(at=NOW + second), "cloud", lost if second == 1 else tls)
        events += book.update(diagnose(TOPOLOGY, Observations(NOW + second, {"truck-a": parsed(doc)},
                                                              evidence_max_age_s=None)),
                              NOW + second, {"truck-a"}, from_evidence=True, late=True)
    assert book.open["link/truck-a/-"].kind is Kind.TLS_REFUSED
    events += book.update(diagnose(TOPOLOGY, Observations(NOW + 31, {"truck-a": parsed(document(at=NOW + 31))},
                                                          evidence_max_age_s=None)), NOW + 31, {"truck-a"},
                          from_evidence=True)
    assert [(e.event, e.incident.kind, e.incident.id) for e in events] == [
        (OPENED, Kind.TLS_REFUSED, "link/truck-a/-"), (RESOLVED, Kind.TLS_REFUSED, "link/truck-a/-")]
    assert events[1].incident.hop == "truck-a-gw→cloud ingest (TLS)"


def test_silence_the_cloud_refusal_then_explains_takes_that_kind_once() -> None:
    """Silence seen before the cloud side read its own refusal list: that list then settles the kind."""
    book = Book()
    silence = cloud({"truck-a": 4.0}, silent("truck-a", 4.0), {"truck-a": 4.0})
    fine = {"truck-b": parsed(document("truck-b", NOW + 4))}
    book.update(diagnose(TOPOLOGY, Observations(NOW + 4, fine, None, silence)), NOW + 4, TRUCKS)
    assert book.open["link/truck-a/-"].kind is Kind.UPLINK_DOWN
    refused = replace(silence, refused={"truck-a": "certificate serial 1f revoked"})
    assert book.update(diagnose(TOPOLOGY, Observations(NOW + 5, fine, None, refused)), NOW + 5, TRUCKS) == []
    assert book.open["link/truck-a/-"].kind is Kind.TLS_REFUSED
    assert book.held()["open"][0]["provisional"] is False


def test_late_evidence_of_a_short_incident_sends_the_pair_on_arrival() -> None:
    book = Book()
    events = []
    for second, broker in ((1, True), (2, False), (3, False), (4, True)):
        doc = changed(document(at=NOW + second), "broker.active", broker)
        events += book.update(diagnose(TOPOLOGY, Observations(NOW + second, {"truck-a": parsed(doc)},
                                                              evidence_max_age_s=None)),
                              NOW + second, {"truck-a"}, from_evidence=True)
    assert [(e.event, e.incident.kind, e.incident.opened, e.incident.resolved) for e in events] == [
        (OPENED, Kind.BROKER_DOWN, NOW + 2, None), (RESOLVED, Kind.BROKER_DOWN, NOW + 2, NOW + 4)]


def test_evidence_older_than_an_incident_does_not_resolve_it() -> None:
    book = Book()
    book.update(diagnose(TOPOLOGY, cable(NOW + 10)), NOW + 10, TRUCKS)
    assert book.update(diagnose(TOPOLOGY, observe(view=cloud(), at=NOW + 5)), NOW + 5, TRUCKS) == []
    assert "link/truck-a/-" in book.open


def test_held_lists_open_then_recent_newest_first() -> None:
    book = Book()
    book.update(diagnose(TOPOLOGY, cable(NOW)), NOW, TRUCKS)
    book.update(diagnose(TOPOLOGY, observe(view=cloud(), at=NOW + 1)), NOW + 1, TRUCKS)
    book.update(diagnose(TOPOLOGY, cable(NOW + 2)), NOW + 2, TRUCKS)
    held = book.held()
    assert [i["id"] for i in held["open"]] == ["link/truck-a/-"] and held["open"][0]["resolved"] is None
    assert [i["resolved"] for i in held["recent"]] == [NOW + 1]


def test_late_evidence_the_gateway_wrote_before_it_noticed_resolves_no_link_incident() -> None:
    """The cloud is blocked: for a few seconds the gateway still believes it is connected. Those documents
    arrive late, which proves the link was not delivering: they close nothing; its error refines the kind."""
    book = Book()
    silence = Observations(NOW + 4, {}, None, cloud({"truck-a": 4.0}, silent("truck-a", 4.0), {"truck-a": 4.0}))
    book.update(diagnose(TOPOLOGY, silence), NOW + 4, TRUCKS)
    events = []
    for second in range(1, 15):
        doc = document(at=NOW + second) if second < 8 else changed(
            document(at=NOW + second), "cloud", {"connected": False, "error": "unreachable", "detail": ""})
        events += book.update(diagnose(TOPOLOGY, Observations(NOW + second, {"truck-a": parsed(doc)},
                                                              evidence_max_age_s=None)),
                              NOW + second, {"truck-a"}, from_evidence=True, late=True)
    assert events == [] and book.open["link/truck-a/-"].kind is Kind.CLOUD_UNREACHABLE
    assert book.held()["open"][0]["provisional"] is False


def test_the_feed_window_refilling_after_the_broker_came_back_is_not_an_incident() -> None:
    book = Book()
    events = []
    for second, (broker, feed) in enumerate([(False, 0), (True, 0), (True, 0), (True, 5)]):
        doc = changed(changed(document(at=NOW + second), "broker.active", broker), "feed.messages_last_10s", feed)
        events += book.update(diagnose(TOPOLOGY, Observations(NOW + second, {"truck-a": parsed(doc)},
                                                              evidence_max_age_s=None)), NOW + second, {"truck-a"})
    assert [(e.event, e.incident.kind) for e in events] == [(OPENED, Kind.BROKER_DOWN), (RESOLVED, Kind.BROKER_DOWN)]


def test_heartbeats_awaiting_their_next_beat_after_the_broker_came_back_are_not_an_incident() -> None:
    # the gateway's heartbeat ages ran on while its broker was down (seen on the lab: three
    # heartbeat-stopped opened in the update that resolved broker-down, and resolved 5 s later)
    book = Book()
    events = []
    for second, (broker, beat_age) in enumerate([(False, 25.0), (True, 26.0), (True, 27.0), (True, 1.0)]):
        doc = changed(document(at=NOW + second), "broker.active", broker)
        doc["nodes"] = {n: {"reachable": True, "heartbeat_age_s": beat_age} for n in doc["nodes"]}
        events += book.update(diagnose(TOPOLOGY, Observations(NOW + second, {"truck-a": parsed(doc)},
                                                              evidence_max_age_s=None)), NOW + second, {"truck-a"})
    assert [(e.event, e.incident.kind) for e in events] == [(OPENED, Kind.BROKER_DOWN), (RESOLVED, Kind.BROKER_DOWN)]


def test_a_node_back_on_its_lan_awaiting_its_next_beat_is_not_heartbeat_stopped() -> None:
    # node-cut cleared (seen on the lab): the gateway reaches truck-a-hv1 again a second before its
    # next heartbeat; another node's heartbeat stopping then is still an incident
    book = Book()
    events = []
    for second, (reachable, beat_age, other_age) in enumerate([(False, 25.0, 1.0), (True, 26.0, 1.0),
                                                               (True, 1.0, 30.0)]):
        doc = document(at=NOW + second)
        doc["nodes"]["truck-a-hv1"] = {"reachable": reachable, "heartbeat_age_s": beat_age}
        doc["nodes"]["truck-a-hv2"] = {"reachable": True, "heartbeat_age_s": other_age}
        events += book.update(diagnose(TOPOLOGY, Observations(NOW + second, {"truck-a": parsed(doc)},
                                                              evidence_max_age_s=None)), NOW + second, {"truck-a"})
    assert [(e.event, e.incident.kind, e.incident.node) for e in events] == [
        (OPENED, Kind.NODE_DOWN, "truck-a-hv1"), (RESOLVED, Kind.NODE_DOWN, "truck-a-hv1"),
        (OPENED, Kind.HEARTBEAT_STOPPED, "truck-a-hv2")]
