"""The cloud stand-in: its broker configuration and its service's logic (the service runs in-process here)."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from truckctl.config.loader import load_stage
from truckctl.lab import standin
from truckctl.lab.plan import plan_lab
from truckctl.lab.standin_service import Tracker, make_handler
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


def test_tracker_counts_and_attributes_heartbeats_to_nodes() -> None:
    tracker = Tracker({"truck-a": "r/truck-a"}, 20, Clock())
    tracker.on_message("r/truck-a/telemetry", b'{"rider": 1}')
    tracker.on_message("r/truck-a/heartbeat/truck-a-gw", b"{}")
    tracker.on_message("r/truck-a/heartbeat", b'{"node": "truck-a-hv1"}')
    tracker.on_message("r/truck-b/telemetry", b"{}")  # not a known truck: ignored
    status = tracker.status()["trucks"]["truck-a"]
    assert status["counts"] == {"telemetry": 1, "heartbeat": 2}
    assert set(status["heartbeats"]) == {"truck-a-gw", "truck-a-hv1"}
    assert status["telemetry"]["last_payload"] == '{"rider": 1}'
    assert "r/truck-a/telemetry/#" in tracker.topics() and "r/truck-a/heartbeat" in tracker.topics()


def test_stale_streams_raise_one_alarm_then_resolve() -> None:
    clock = Clock()
    tracker = Tracker({"truck-a": "r/truck-a"}, 20, clock)
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


@pytest.fixture
def http(tmp_path: Path) -> Iterator[tuple[str, Tracker]]:
    tracker = Tracker({"truck-a": "r/truck-a"}, 20, Clock())
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(tracker))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tracker
    server.shutdown()
    server.server_close()


def test_alert_receiver_records_posts_and_serves_status(http: tuple[str, Tracker]) -> None:
    base, tracker = http
    tracker.on_message("r/truck-a/telemetry", b"{}")
    body = json.dumps({"alarm": "test", "truck": "truck-a"}).encode()
    request = urllib.request.Request(f"{base}/alerts", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 202
    with urllib.request.urlopen(f"{base}/alerts", timeout=5) as response:
        alerts = json.loads(response.read())["alerts"]
    assert [(a["source"], a["body"]) for a in alerts] == [("post", {"alarm": "test", "truck": "truck-a"})]
    with urllib.request.urlopen(f"{base}/status", timeout=5) as response:
        status = json.loads(response.read())
    assert status["alerts"] == 1 and status["trucks"]["truck-a"]["counts"]["telemetry"] == 1


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
