"""The typed status document: each value's own logic (a stream's state, a row's health, the verdict with
known drift) and `to_json`, the `result` of `status --json` (schema 1: keys, their order, their values)."""

from __future__ import annotations

from dataclasses import replace

from tests.helpers import make_cloud
from truckctl.config.model import Stage
from truckctl.lifecycle import status_model as model
from truckctl.ops.model import Incident, Kind
from truckctl.target import CloudTier, PublicOutputs


def stream(age: float | None) -> dict[str, object]:
    return {"last_seen": "2027-05-08T10:00:00Z", "age_s": age, "count": 40, "alarm": 1}


def test_a_stream_is_ok_stale_never_seen_or_unknown() -> None:
    assert model.StreamView.at_cloud(stream(20.0), 20.0, answered=True).state == "ok"  # exactly stale_after: not yet
    assert model.StreamView.at_cloud(stream(20.5), 20.0, answered=True).state == "stale"
    assert model.StreamView.at_cloud(stream(None), 20.0, answered=True).state == "none"
    Stream = model.StreamView
    assert Stream.at_cloud(None, 20.0, answered=True) == Stream("none")  # the stand-in knows nothing of it
    assert Stream.at_cloud(None, 20.0, answered=False) == Stream("unknown")  # no stand-in to ask
    assert [Stream(state).silent for state in ("ok", "stale", "none", "unknown")] == [False, True, True, False]


def test_a_stream_keeps_the_standins_values_and_has_an_alarm_only_where_it_was_seen() -> None:
    seen = model.StreamView.at_cloud(stream(2), 20.0, answered=True)
    assert seen.to_json() == {"state": "ok", "last_seen": "2027-05-08T10:00:00Z", "age_s": 2, "count": 40,
                              "alarm": True}
    assert list(model.StreamView("unknown").to_json()) == ["state", "last_seen", "age_s", "count"]


def node(**changes: object) -> model.NodeRow:
    row = model.NodeRow("truck-a-gw", "gateway", "10.31.1.11", True, "ok", {"ssh": "active", "mosquitto": "active"},
                  model.StreamView("ok"))
    return replace(row, **changes)  # type: ignore[arg-type]


def test_a_node_is_healthy_when_reached_with_every_unit_active_and_its_heartbeat_not_silent() -> None:
    assert node().healthy
    assert not node(reachable=False, detail="unreachable").healthy
    assert not node(services={"ssh": "active", "mosquitto": "failed"}).healthy
    assert not node(heartbeat=model.StreamView("none")).healthy
    assert node(heartbeat=model.StreamView("unknown")).healthy  # what cannot be measured is not broken
    assert list(node().to_json()) == ["name", "role", "address", "reachable", "detail", "services", "heartbeat",
                                      "healthy"]


def test_a_truck_is_unhealthy_with_silent_telemetry_a_sick_node_or_an_open_incident() -> None:
    truck = model.TruckRow("truck-a", model.StreamView("ok"), (node(),), model.EvidenceView("absent"))
    assert truck.healthy
    assert not replace(truck, telemetry=model.StreamView("stale")).healthy
    assert not replace(truck, nodes=(node(), node(reachable=False))).healthy
    assert not replace(truck, incident_open=True).healthy
    assert list(truck.to_json()) == ["name", "telemetry", "nodes", "healthy", "evidence"]


def test_evidence_says_what_its_state_has() -> None:
    assert model.EvidenceView("absent").to_json() == {"state": "absent", "source": None}
    assert model.EvidenceView("bad", "cloud", reason="not JSON").to_json() == {"state": "bad", "source": "cloud",
                                                                        "reason": "not JSON"}
    assert model.EvidenceView("ok", "gateway", ts=1000.5, seq=7).to_json() == {"state": "ok", "source": "gateway",
                                                                         "ts": 1000.5, "seq": 7}


def test_the_cloud_tier_shows_only_the_parts_it_has(stage: Stage) -> None:
    outputs = PublicOutputs.of(make_cloud(stage), receiver=None)
    assert CloudTier("unknown", "cannot be read").to_json() == {"state": "unknown", "note": "cannot be read"}
    deployed = CloudTier("deployed", outputs=outputs).to_json()
    assert list(deployed) == ["state", "region", "endpoint", "telemetry_stream", "datalake_bucket", "alert_topic",
                              "alert_receiver", "vpn_endpoint", "trucks"]
    assert deployed["endpoint"] == "100.64.10.2:8883" and deployed["alert_receiver"] is None
    assert set(deployed["trucks"]["truck-a"]) == {"thing", "certificate"}
    lab = CloudTier("offline plan + cloud stand-in", "the offline plan", outputs, "answering").to_json()
    assert list(lab)[:2] == ["state", "note"] and list(lab)[-1] == "standin"
    status = model.CloudStatus(CloudTier("unknown", "n"), "no stand-in here", None).to_json()
    assert status == {"state": "unknown", "note": "n", "last_seen_note": "no stand-in here", "alerts": None}


def measured(unhealthy: tuple[str, ...] = ()) -> model.StageHealth:
    incident = Incident(Kind.UPLINK_DOWN, "truck-a", "truck-a-gw→uplink", resolved=990.0)
    cloud = model.CloudStatus(CloudTier("deployed"), None, 0)
    return model.StageHealth("stage-1", "lab", 20.0, (), cloud, (), (incident,), unhealthy)


def report(health: model.StageHealth, drift: model.LastDrift | None = None) -> model.StatusReport:
    return model.StatusReport(health, lock=None, team_lock=(), last_run=None, shared_runs=(), drift=drift,
                        checked_at=3600.0, took_s=0.4)


def test_drift_found_and_not_fixed_is_unhealthy_and_is_the_verdict_when_alone() -> None:
    found = model.LastDrift("20270508T090000Z-stage-1-drift-0002", 600.0, "changes", 3, True)
    line = "drift found 50 min ago (truckctl runs show 20270508T090000Z-stage-1-drift-0002)"
    assert report(measured()).verdict == "HEALTHY" and report(measured()).healthy
    alone = report(measured(), found)
    assert (alone.unhealthy, alone.healthy, alone.verdict) == ((line,), False, line)
    both = report(measured(("truck-a-gw: dnsmasq failed",)), found)
    assert both.unhealthy == ("truck-a-gw: dnsmasq failed", line) and both.verdict == "UNHEALTHY"
    for not_known in (replace(found, drift=False), replace(found, drift=None)):
        assert report(measured(), not_known).verdict == "HEALTHY"


def test_the_document_keeps_schema_1s_keys_in_their_order() -> None:
    found = model.LastDrift("d1", 600.0, "changes", 3, True)
    document = report(measured(), found).to_json()
    assert list(document) == ["stage", "target", "stale_after_s", "trucks", "cloud", "incidents", "incidents_recent",
                              "unhealthy", "healthy", "lock", "team_lock", "last_run", "shared_runs", "drift",
                              "checked_at", "took_s", "verdict"]
    assert document["unhealthy"] == ["drift found 50 min ago (truckctl runs show d1)"] and document["healthy"] is False
    assert document["drift"] == {"run_id": "d1", "started": 600.0, "status": "changes", "exit_code": 3, "drift": True}
    assert document["incidents_recent"][0]["kind"] == "uplink-down" and document["incidents"] == []
