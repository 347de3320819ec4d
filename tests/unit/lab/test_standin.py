"""The cloud stand-in: its broker configuration and its service's logic (the service runs in-process here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from truckctl.config.loader import load_stage
from truckctl.lab import standin
from truckctl.lab.plan import plan_lab
from truckctl.lab.standin_service import MAX_POSTED, Refused, Tracker, move
from truckctl.project import Project


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_broker_requires_client_certificates_and_maps_cn_to_user() -> None:
    conf = standin.mosquitto_conf("100.64.10.2")
    assert "listener 8883 100.64.10.2" in conf
    assert "require_certificate true" in conf and "use_identity_as_username true" in conf
    assert "allow_anonymous false" in conf
    assert "listener 1883 127.0.0.1" in conf  # anonymous only on loopback, for the stand-in service
    assert conf.index("per_listener_settings true") < conf.index("listener")


def test_acl_gives_each_truck_only_its_own_prefix(example_project: Path) -> None:
    plan = plan_lab(load_stage(Project(example_project), "stage-1"), "abc123")
    acl = standin.acl_trucks(plan)
    blocks = [b.strip().splitlines() for b in acl.split("\n\n")[1:]]
    assert blocks == [["user gdf27-truck-a", "topic readwrite gdf27/truck-a/#"],
                      ["user gdf27-truck-b", "topic readwrite gdf27/truck-b/#"]]
    config = standin.service_config(plan)
    assert config["prefixes"] == {"truck-a": "gdf27/truck-a", "truck-b": "gdf27/truck-b"}
    assert config["stale_after_s"] == 20
    assert config["http_host"] == plan.uplink.standin_address  # never 0.0.0.0
    assert config["nodes"]["truck-a"] == ["truck-a-gw", "truck-a-hv1", "truck-a-hv2"]
    assert config["principals"] == {"gdf27-truck-a": "truck-a", "gdf27-truck-b": "truck-b",
                                    "truckctl operator": "truckctl"}


NODES = {"truck-a": ["truck-a-gw", "truck-a-hv1"]}


def test_tracker_counts_and_attributes_heartbeats_to_nodes() -> None:
    tracker = Tracker({"truck-a": "r/truck-a"}, 20, Clock(), NODES)
    tracker.on_message("r/truck-a/telemetry", b'{"rider": 1}')
    tracker.on_message("r/truck-a/heartbeat/truck-a-gw", b"{}")
    tracker.on_message("r/truck-a/heartbeat", b'{"node": "truck-a-hv1"}')
    tracker.on_message("r/truck-b/telemetry", b"{}")  # not a known truck: ignored
    status = tracker.status()["trucks"]["truck-a"]
    assert status["counts"] == {"telemetry": 1, "heartbeat": 2, "heartbeat_dropped": 0}
    assert set(status["heartbeats"]) == {"truck-a-gw", "truck-a-hv1"}
    assert status["telemetry"]["last_payload"] == '{"rider": 1}'
    assert "r/truck-a/telemetry/#" in tracker.topics() and "r/truck-a/heartbeat" in tracker.topics()


def test_lost_telemetry_is_counted_by_the_feed_s_sequence_numbers() -> None:
    """Each source (rider) numbers its readings: a gap is a lost message, a repeat a re-delivery (QoS 1);
    numbering back at 1 is a restarted source, not a loss. Payloads without numbers are only counted."""
    tracker = Tracker({"truck-a": "r/truck-a"}, 20, Clock(), NODES)
    for rider, seq in [(1, 1), (2, 1), (1, 2), (2, 2), (1, 3), (2, 5), (2, 5), (1, 4), (1, 1), (1, 2)]:
        tracker.on_message(f"r/truck-a/telemetry/rider/{rider}", json.dumps({"rider": rider, "seq": seq}).encode())
    for junk in (b"not json", b'{"seq": "7"}', b'{"seq": true}', b"[1, 2]"):
        tracker.on_message("r/truck-a/telemetry/rider/9", junk)
    telemetry = tracker.status()["trucks"]["truck-a"]["telemetry"]
    assert telemetry["sequence"] == {"sources": 2, "missing": 2, "repeated": 2}
    assert telemetry["count"] == 14


def test_stale_streams_raise_one_alarm_then_resolve() -> None:
    clock = Clock()
    tracker = Tracker({"truck-a": "r/truck-a"}, 20, clock, NODES)
    assert tracker.check() == []  # never seen: no alarm
    tracker.on_message("r/truck-a/telemetry", b"{}")
    tracker.on_message("r/truck-a/heartbeat/truck-a-gw", b"{}")
    clock.now += 19
    assert tracker.check() == []
    clock.now += 2
    raised = tracker.check()
    assert sorted(a["body"]["alarm"] for a in raised) == ["heartbeat-missing", "telemetry-stopped"]
    assert next(a for a in raised if a["body"]["alarm"] == "heartbeat-missing")["body"]["node"] == "truck-a-gw"
    assert tracker.check() == []  # raised once, not every second
    tracker.on_message("r/truck-a/telemetry", b"{}")
    assert tracker.alert_list()[-1]["body"]["alarm"] == "telemetry-resumed"
    assert tracker.status()["trucks"]["truck-a"]["telemetry"]["alarm"] is False


def test_invented_heartbeat_nodes_are_dropped_and_counted_and_never_evict_an_alarm() -> None:
    clock = Clock()
    tracker = Tracker({"truck-a": "r/truck-a"}, 20, clock, NODES)
    tracker.on_message("r/truck-a/heartbeat/truck-a-gw", b"{}")
    clock.now += 21
    alarm = tracker.check()[0]
    for i in range(20_000):  # a compromised truck floods invented node names, by topic and by payload
        tracker.on_message(f"r/truck-a/heartbeat/fake-{i}", b"{}")
        tracker.on_message("r/truck-a/heartbeat", json.dumps({"node": f"ghost-{i}"}).encode())
    for i in range(MAX_POSTED * 3):  # and posts alerts of its own
        tracker.receive({"alarm": f"noise-{i}"}, "truck-a")
    status = tracker.status()["trucks"]["truck-a"]
    assert set(status["heartbeats"]) == {"truck-a-gw", "truck-a-hv1"}
    assert status["counts"]["heartbeat_dropped"] == 40_000
    assert alarm in tracker.alert_list() and alarm in tracker.alert_list("truck-a")
    assert len(tracker.alert_list()) == 1 + MAX_POSTED  # the poster's own list is bounded


def test_a_truck_posts_only_about_itself_and_sees_only_its_own() -> None:
    tracker = Tracker({"truck-a": "r/truck-a", "truck-b": "r/truck-b"}, 20, Clock(),
                      {"truck-a": ["truck-a-gw"], "truck-b": ["truck-b-gw"]})
    tracker.receive({"alarm": "x", "truck": "truck-b"})  # truckctl may post about any truck
    with pytest.raises(Refused) as refused:
        tracker.receive({"alarm": "forged", "truck": "truck-b"}, "truck-a")
    assert refused.value.status == 403
    with pytest.raises(Refused):
        tracker.receive("not an object", "truck-a")
    own = tracker.receive({"alarm": "address-conflict"}, "truck-a")
    assert own["body"]["truck"] == "truck-a" and own["poster"] == "truck-a"
    assert [a["body"]["alarm"] for a in tracker.alert_list("truck-a")] == ["address-conflict"]
    assert [a["body"]["alarm"] for a in tracker.alert_list("truck-b")] == []
    assert set(tracker.status("truck-a")["trucks"]) == {"truck-a"}
    assert set(tracker.status()["trucks"]) == {"truck-a", "truck-b"}


def test_the_broker_checks_the_lab_crl_and_revocations_are_written_with_the_config(example_project: Path,
                                                                                  tmp_path: Path) -> None:
    from truckctl.lab.pki import LabPki

    conf = standin.mosquitto_conf("100.64.10.2")
    tls = conf[conf.index("listener 8883"):conf.index("listener 1883")]
    assert "crlfile /etc/mosquitto/certs/crl.pem" in tls  # on the trucks' listener, not the local one
    plan = plan_lab(load_stage(Project(example_project), "stage-1"), "abc123")
    root = tmp_path / "root"
    (root / "etc/mosquitto/certs").mkdir(parents=True)
    standin.write_revocations(root, plan, LabPki(tmp_path / "pki"))
    assert (root / "etc/mosquitto/certs/crl.pem").read_bytes().startswith(b"-----BEGIN X509 CRL-----")
    assert oct((root / "etc/mosquitto/certs/crl.pem").stat().st_mode & 0o777) == "0o644"
    assert (root / "etc/mosquitto/mosquitto.conf").read_text() == standin.mosquitto_conf(plan.uplink.standin_address)


# ---- the stage of the day (the daily move) ----------------------------------------------------

TWO = {"truck-a": ["truck-a-gw"], "truck-b": ["truck-b-gw"]}
PREFIXES = {"truck-a": "r/truck-a", "truck-b": "r/truck-b"}


def moved_to(stage: str, trucks: list[str]) -> dict[str, object]:
    return {"stage": stage, "prefixes": {t: PREFIXES[t] for t in trucks}, "nodes": {t: TWO[t] for t in trucks}}


def test_every_message_is_counted_under_the_stage_of_its_day() -> None:
    clock = Clock()
    tracker = Tracker(PREFIXES, 20, clock, TWO)
    tracker.days.stage = "stage-1"
    tracker.on_message("r/truck-a/telemetry", b'{"marker": "day-1"}')
    tracker.on_message("r/truck-b/heartbeat/truck-b-gw", b"{}")
    assert move(tracker, moved_to("stage-2", ["truck-a"])) == []  # no truck it has not met
    tracker.on_message("r/truck-a/telemetry", b'{"marker": "day-2"}')
    tracker.on_message("r/truck-a/telemetry", b'{"marker": "day-2b"}')
    status = tracker.status()
    assert status["stage"] == "stage-2" and status["expected_trucks"] == ["truck-a"]
    stages = status["stages"]
    assert stages["stage-1"]["truck-a"]["telemetry"] == 1 and stages["stage-1"]["truck-b"]["heartbeat"] == 1
    assert stages["stage-1"]["truck-a"]["recent_telemetry"] == ['{"marker": "day-1"}']
    assert stages["stage-1"]["truck-a"]["markers"] == []
    assert stages["stage-2"]["truck-a"]["telemetry"] == 2 and "truck-b" not in stages["stage-2"]
    assert status["trucks"]["truck-a"]["counts"]["telemetry"] == 3  # nothing received is dropped by a move
    assert set(status["trucks"]) == {"truck-a", "truck-b"}  # an absent truck's data is kept
    # a truck's own certificate sees its own rows only
    own = tracker.status("truck-b")
    assert own["stages"] == {"stage-1": {"truck-b": stages["stage-1"]["truck-b"]}, "stage-2": {}}
    assert own["expected_trucks"] == []


def test_a_days_smoke_markers_are_kept_however_busy_the_feed() -> None:
    tracker = Tracker(PREFIXES, 20, Clock(), TWO)
    move(tracker, moved_to("stage-1", ["truck-a", "truck-b"]))
    tracker.on_message("r/truck-a/telemetry", b'{"smoke": "run-1", "truck": "truck-a"}')
    for i in range(500):
        tracker.on_message("r/truck-a/telemetry", f'{{"rider": {i}}}'.encode())
    row = tracker.status()["stages"]["stage-1"]["truck-a"]
    assert row["telemetry"] == 501 and len(row["recent_telemetry"]) == 50
    assert row["markers"] == ['{"smoke": "run-1", "truck": "truck-a"}']


def test_a_truck_absent_from_the_stage_raises_no_alarm() -> None:
    clock = Clock()
    tracker = Tracker(PREFIXES, 20, clock, TWO)
    for topic in ("r/truck-a/telemetry", "r/truck-b/telemetry", "r/truck-a/heartbeat/truck-a-gw",
                  "r/truck-b/heartbeat/truck-b-gw"):
        tracker.on_message(topic, b"{}")
    move(tracker, moved_to("stage-2", ["truck-a"]))
    clock.now += 5
    tracker.on_message("r/truck-a/telemetry", b"{}")
    tracker.on_message("r/truck-a/heartbeat/truck-a-gw", b"{}")
    clock.now += 60  # everything silent for longer than stale_after_s
    raised = tracker.check()
    assert {(a["body"]["alarm"], a["body"]["truck"]) for a in raised} == {
        ("telemetry-stopped", "truck-a"), ("heartbeat-missing", "truck-a")}


def test_after_a_move_a_stream_alarms_only_once_seen_again() -> None:
    """A re-addressed truck is silent while the truck tier reconverges it: no alarm until it is back."""
    clock = Clock()
    tracker = Tracker(PREFIXES, 20, clock, TWO)
    tracker.on_message("r/truck-a/telemetry", b"{}")
    move(tracker, moved_to("stage-7", ["truck-a", "truck-b"]))
    clock.now += 120
    assert tracker.check() == []
    tracker.on_message("r/truck-a/telemetry", b"{}")
    clock.now += 30
    assert [a["body"]["alarm"] for a in tracker.check()] == ["telemetry-stopped"]


def test_a_truck_new_to_the_standin_is_subscribed_and_tracked() -> None:
    tracker = Tracker({"truck-a": "r/truck-a"}, 20, Clock(), {"truck-a": ["truck-a-gw"]})
    topics = move(tracker, moved_to("stage-3", ["truck-a", "truck-b"]))
    assert topics == ["r/truck-b/telemetry", "r/truck-b/telemetry/#", "r/truck-b/heartbeat", "r/truck-b/heartbeat/#"]
    tracker.on_message("r/truck-b/heartbeat/truck-b-gw", b"{}")
    assert tracker.status()["trucks"]["truck-b"]["counts"]["heartbeat"] == 1
    assert tracker.status()["stages"]["stage-3"]["truck-b"]["heartbeat"] == 1


def test_the_service_config_names_the_stage(example_project: Path) -> None:
    plan = plan_lab(load_stage(Project(example_project), "stage-7"), "abc123")
    assert standin.service_config(plan)["stage"] == "stage-7"
    acl = standin.acl_trucks(plan, also=["truck-b", "truck-c"])
    assert acl.count("user gdf27-truck-b") == 1 and "user gdf27-truck-c" in acl
