"""`status` merges its own diagnosis with the incidents the cloud side holds."""

from __future__ import annotations

from truckctl.ops.diagnose import Observations, diagnose
from truckctl.ops.merge import merge
from truckctl.ops.model import Incident, Kind

from .fixtures import NOW, TOPOLOGY, changed, checks, cloud, document, observe, parsed, silent

SILENCE = Incident(Kind.UPLINK_DOWN, "truck-a", "truck-a-gw→uplink", evidence=("the cloud side hears nothing",),
                   opened=NOW - 10, source="cloud")


def test_a_cloud_link_incident_from_silence_takes_the_kind_the_gateways_evidence_implies() -> None:
    """The cloud is blocked, the gateway has not noticed yet: carrier, 'connected'. The cloud hears nothing."""
    obs = observe(view=cloud(evidence={"truck-a": 8.0}), direct=checks())
    local = diagnose(TOPOLOGY, obs)
    assert local.incidents == () and [s.key for s in local.unexplained] == ["evidence/truck-a"]
    merged = merge(TOPOLOGY, local, [SILENCE], {SILENCE.id}, {}, obs.evidence, NOW)
    (incident,) = merged.incidents
    assert (incident.kind, incident.hop, incident.opened) == (Kind.CLOUD_UNREACHABLE,
                                                              "truck-a-gw→uplink→cloud ingest", NOW - 10)
    assert [s.key for s in incident.symptoms] == ["evidence/truck-a"] and merged.unexplained == ()
    pulled = Observations(NOW, {"truck-a": parsed(changed(document(), "uplink.carrier", False))})
    assert merge(TOPOLOGY, diagnose(TOPOLOGY, Observations(NOW)), [SILENCE], {SILENCE.id}, {}, pulled.evidence,
                 NOW).incidents[0].kind is Kind.UPLINK_DOWN


def test_an_incident_both_see_is_one_opened_when_the_cloud_opened_it() -> None:
    doc = changed(changed(document(), "uplink.carrier", False), "cloud.connected", False)
    obs = observe({"truck-a": doc, "truck-b": document("truck-b")}, cloud({"truck-a": 30.0}, silent("truck-a")))
    merged = merge(TOPOLOGY, diagnose(TOPOLOGY, obs), [SILENCE], set(), {}, obs.evidence, NOW)
    assert [(i.kind, i.opened, i.source) for i in merged.incidents] == [(Kind.UPLINK_DOWN, NOW - 10, "diagnosis")]
    alone = merge(TOPOLOGY, diagnose(TOPOLOGY, obs), [], set(), {}, obs.evidence, NOW)
    assert alone.incidents[0].opened is None  # this check alone cannot say since when


def test_a_bridge_reconnecting_after_its_link_came_back_is_not_an_incident() -> None:
    obs = observe({"truck-a": changed(document(), "bridge.connected", False), "truck-b": document("truck-b")},
                  cloud({"truck-a": 30.0}, silent("truck-a")))
    local = diagnose(TOPOLOGY, obs)
    assert [i.kind for i in local.incidents] == [Kind.BRIDGE_DOWN]
    merged = merge(TOPOLOGY, local, [], set(), {("truck-a", Kind.UPLINK_DOWN): NOW - 12}, obs.evidence, NOW)
    assert merged.incidents == () and len(merged.unexplained) == 4
    later = merge(TOPOLOGY, local, [], set(), {("truck-a", Kind.UPLINK_DOWN): NOW - 60}, obs.evidence, NOW)
    assert [i.kind for i in later.incidents] == [Kind.BRIDGE_DOWN]
